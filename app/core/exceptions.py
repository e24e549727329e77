"""The project's error types: each carries its HTTP status and stable error code."""

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error a service may raise; one handler turns it into the envelope."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class InvalidInput(AppError):
    """The request is well-formed JSON but its values are not acceptable."""

    status_code = 422
    code = "VALIDATION_ERROR"


class MalformedBody(AppError):
    """The body could not be parsed at all."""

    status_code = 400
    code = "MALFORMED_BODY"


class PayloadTooLarge(AppError):
    """The body is larger than the limit for its route."""

    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class Unauthorized(AppError):
    """No valid API key was presented."""

    status_code = 401
    code = "UNAUTHORIZED"


class Forbidden(AppError):
    """The key is valid but may not do this."""

    status_code = 403
    code = "FORBIDDEN"


class NotFound(AppError):
    """The addressed resource does not exist."""

    status_code = 404
    code = "NOT_FOUND"


class Conflict(AppError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "CONFLICT"


class ModelUnavailable(AppError):
    """The model behind this route is not loaded; the message says why."""

    status_code = 503
    code = "MODEL_UNAVAILABLE"


class ModelLoading(AppError):
    """The model is still loading in the background; retry after the `Retry-After` seconds."""

    status_code = 503
    code = "MODEL_LOADING"


class InvalidImage(AppError):
    """The upload claims to be an image but cannot be decoded (empty, truncated, corrupt)."""

    status_code = 400
    code = "INVALID_IMAGE"


class UnsupportedMediaType(AppError):
    """The upload is not an image at all."""

    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class ImageTooLarge(AppError):
    """The image has more bytes or pixels than the service accepts."""

    status_code = 413
    code = "IMAGE_TOO_LARGE"


class Overloaded(AppError):
    """Too many requests are already waiting for the model."""

    status_code = 429
    code = "OVERLOADED"


class MalformedUpload(AppError):
    """An uploaded table cannot be read (not UTF-8, not CSV); the message names the line."""

    status_code = 400
    code = "MALFORMED_CSV"


class ModelInvalid(AppError):
    """A model version exists but fails its checksums or does not load; nothing changed."""

    status_code = 409
    code = "MODEL_INVALID"
