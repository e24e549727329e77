"""OpenAPI descriptions of the error envelopes each route may answer with."""

from typing import Any

from app.schemas.envelope import ErrorEnvelope


def _example(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "success": False,
        "data": None,
        "error": {"code": code, "message": message, "details": details or []},
        "meta": {"request_id": "3f1c2a9e6b7d4e0f", "api_version": "v1", "duration_ms": 0.4},
    }


_ERRORS: dict[int, tuple[str, str, str]] = {
    400: (
        "Undecodable input: empty, truncated or corrupt image, or bad base64.",
        "INVALID_IMAGE",
        "image_a is corrupt or truncated.",
    ),
    401: ("Missing or wrong API key.", "UNAUTHORIZED", "A valid API key is required."),
    403: ("The key may not do this.", "FORBIDDEN", "Retraining needs an admin key."),
    404: ("Not found.", "NOT_FOUND", "Model version 'x' does not exist."),
    409: ("Conflicts with current state.", "CONFLICT", "A retraining job is already running."),
    413: (
        "Body or image too large.",
        "PAYLOAD_TOO_LARGE",
        "The request body is larger than this route's limit.",
    ),
    415: ("Unsupported media type.", "UNSUPPORTED_MEDIA_TYPE", "The upload is not an image."),
    422: (
        "Invalid fields; `details` names each one.",
        "VALIDATION_ERROR",
        "The request has 1 invalid field.",
    ),
    429: (
        "Too much work already waiting for the model (CLIP_MAX_WAITING images or texts). "
        "Error code `OVERLOADED`, with a `Retry-After` header.",
        "OVERLOADED",
        "The CLIP model has 64 images or texts in flight (limit 64); retry in 1 s.",
    ),
    503: (
        "The model is not loaded: `MODEL_LOADING` (with `Retry-After`) while it loads at "
        "start-up, `MODEL_UNAVAILABLE` when it failed to load; the message says why.",
        "MODEL_UNAVAILABLE",
        "The career model is not available.",
    ),
}


def documented(
    status: int, description: str, code: str, message: str
) -> dict[int | str, dict[str, Any]]:
    """A `responses=` entry for a status whose description and example a route words itself."""
    return {
        status: {
            "model": ErrorEnvelope,
            "description": description,
            "content": {"application/json": {"example": _example(code, message)}},
        }
    }


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the given statuses, each with its envelope and an example."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message = _ERRORS[status]
        details = (
            [
                {
                    "field": "academic_scores.math",
                    "message": "Input should be less than or equal to 100",
                    "type": "less_than_equal",
                }
            ]
            if status == 422
            else None
        )
        out[status] = {
            "model": ErrorEnvelope,
            "description": description
            if "`" in description
            else f"{description} Error code `{code}`.",
            "content": {"application/json": {"example": _example(code, message, details)}},
        }
    return out
