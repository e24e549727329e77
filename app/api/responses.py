"""OpenAPI descriptions of the error bodies each route may answer with: our envelope, or
OpenAI's error shape on the OpenAI-compatible routes."""

from typing import TYPE_CHECKING, Any

from app.core.openai_format import error_type
from app.schemas.envelope import ErrorEnvelope
from app.schemas.openai import OpenAIError

if TYPE_CHECKING:
    from fastapi import FastAPI


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


# Routes that decode images may also refuse one whose structure or decoding is over budget.
IMAGE_422 = (
    "Invalid fields (`VALIDATION_ERROR`; `details` names each one), or an image within the "
    "byte and pixel limits whose structure or decoding exceeds what a real photo needs: "
    "too many progressive scans, markers or chunks, or over the decode deadline or memory "
    "limit (`IMAGE_TOO_COMPLEX`).",
    "IMAGE_TOO_COMPLEX",
    "image has more JPEG scans than a real image does (limit 64, IMAGE_MAX_SCANS).",
)


def errors(
    *statuses: int, described: dict[int, tuple[str, str, str]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the given statuses, each with its envelope and an example;
    `described` replaces the default description, code and message of a status."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message = (described or {}).get(status, _ERRORS[status])
        details = (
            [
                {
                    "field": "academic_scores.math",
                    "message": "Input should be less than or equal to 100",
                    "type": "less_than_equal",
                }
            ]
            if code == "VALIDATION_ERROR"
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


# Where the OpenAI-compatible routes' errors read differently from the envelope routes':
# status -> (description or None for the same, code, example message, example param).
_OPENAI: dict[int, tuple[str | None, str, str, str | None]] = {
    400: (
        "Undecodable image: empty, truncated or corrupt, or bad base64. "
        "Error code `INVALID_IMAGE`.",
        "INVALID_IMAGE",
        "input.0 is not valid base64.",
        "input.0",
    ),
    404: (
        "Unknown model (or route). Error code `NOT_FOUND`.",
        "NOT_FOUND",
        "The model `gpt-4` does not exist; this service serves `ViT-B-32/openai`.",
        "model",
    ),
    413: (
        "Body over the route's limit (`PAYLOAD_TOO_LARGE`) or an image over the byte or "
        "pixel limit (`IMAGE_TOO_LARGE`).",
        "IMAGE_TOO_LARGE",
        "input.0 is larger than the 10485760-byte limit.",
        "input.0",
    ),
    415: (
        None,
        "UNSUPPORTED_MEDIA_TYPE",
        "input.0 is not an image in a supported format.",
        "input.0",
    ),
    422: (
        "Invalid fields (missing, unknown, too many inputs, a text too long, a URL instead "
        "of an image, `dimensions` other than the model's): the message names each one, "
        "`param` the first. Error code `VALIDATION_ERROR`.",
        "VALIDATION_ERROR",
        "The request has 1 invalid field. (input: Field required)",
        "input",
    ),
    503: (None, "MODEL_LOADING", "The CLIP model is still loading; retry shortly.", None),
}


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries of a `/v1` route: the same statuses and codes as the envelope
    routes, in OpenAI's error shape, each with an example."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message = _ERRORS[status]
        param = None
        if status in _OPENAI:
            own, code, message, param = _OPENAI[status]
            description = own or description
        example = {
            "error": {"message": message, "type": error_type(status), "param": param, "code": code}
        }
        out[status] = {
            "model": OpenAIError,
            "description": description
            if "`" in description
            else f"{description} Error code `{code}`.",
            "content": {"application/json": {"example": example}},
        }
    return out


def drop_unused_validation_bodies(app: "FastAPI") -> None:
    """FastAPI documents a 422 `HTTPValidationError` on every route with parameters that
    does not document its own. This service never answers in that shape (validation errors
    are envelopes, documented per route where they can happen), so those entries, and the
    components they used, are left out."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            fastapi_422 = {"$ref": "#/components/schemas/HTTPValidationError"}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.get("responses", {})
                    body = responses.get("422", {}).get("content", {}).get("application/json")
                    if body is not None and body.get("schema") == fastapi_422:
                        del responses["422"]
            components = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" not in str(schema.get("paths")):
                components.pop("HTTPValidationError", None)
                components.pop("ValidationError", None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
