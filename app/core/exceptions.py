"""The domain errors services raise. They say what went wrong, never how HTTP shows it:
`app/core/handlers.py` maps each one to its status and error code in one table."""

from typing import Any


class AppError(Exception):
    """Base of every error a service may raise; one handler turns it into the envelope.

    `details` are structured facts about the error (which input, which limit);
    `retry_after` is set when trying again later can succeed, in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.retry_after = retry_after


class InvalidInput(AppError):
    """The input is well-formed but its values are not acceptable."""


class MalformedBody(AppError):
    """The body could not be parsed at all."""


class PayloadTooLarge(AppError):
    """The input is larger than the limit for its use."""


class Unauthorized(AppError):
    """No valid API key was presented."""


class Forbidden(AppError):
    """The key is valid but may not do this."""


class NotFound(AppError):
    """The addressed resource does not exist."""


class Conflict(AppError):
    """The request conflicts with the current state."""


class ModelUnavailable(AppError):
    """The model behind this use case is not loaded; the message says why."""


class ModelLoading(AppError):
    """The model is still loading in the background; retry after `retry_after` seconds."""


class InvalidImage(AppError):
    """The upload claims to be an image but cannot be decoded (empty, truncated, corrupt)."""


class UnsupportedMediaType(AppError):
    """The upload is not an image (or not a table) at all."""


class ImageTooLarge(AppError):
    """The image has more bytes or pixels than the service accepts."""


class ImageTooComplex(AppError):
    """The image is within the byte and pixel limits, but its structure (scans, markers,
    chunks) or its decoding (time, memory) exceeds what any real photo needs."""


class Overloaded(AppError):
    """Too much work is already waiting for the model; retry after `retry_after` seconds."""


class BodyBudgetExceeded(AppError):
    """The process already holds as many request body bytes as MAX_BODY_MB_IN_FLIGHT
    allows; retry after `retry_after` seconds."""


class StorageFull(AppError):
    """The service's own disk is full (the upload spool's volume): not the caller's fault,
    and the same request may succeed on another replica or later."""


class StorageFailed(AppError):
    """The service could not write its own storage (permissions, a missing or read-only
    directory): an operator must fix the volume."""


class MalformedUpload(AppError):
    """An uploaded table cannot be read (not UTF-8, not CSV); the message names the line."""


class ModelInvalid(AppError):
    """A model version exists but fails its checksums or does not load; nothing changed."""


class StoreUnavailable(AppError):
    """The outcome store (the database) cannot be reached or used right now; retry later."""
