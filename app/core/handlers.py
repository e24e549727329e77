"""Maps every error (ours, FastAPI's validation, Starlette's HTTP errors) to the envelope."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core import exceptions as domain
from app.core.envelope import error_response
from app.core.exceptions import AppError

# The one place where a domain error becomes HTTP: its status and stable error code.
ERROR_STATUS: dict[type[AppError], tuple[int, str]] = {
    domain.InvalidInput: (422, "VALIDATION_ERROR"),
    domain.MalformedBody: (400, "MALFORMED_BODY"),
    domain.PayloadTooLarge: (413, "PAYLOAD_TOO_LARGE"),
    domain.Unauthorized: (401, "UNAUTHORIZED"),
    domain.Forbidden: (403, "FORBIDDEN"),
    domain.NotFound: (404, "NOT_FOUND"),
    domain.Conflict: (409, "CONFLICT"),
    domain.ModelUnavailable: (503, "MODEL_UNAVAILABLE"),
    domain.ModelLoading: (503, "MODEL_LOADING"),
    domain.InvalidImage: (400, "INVALID_IMAGE"),
    domain.UnsupportedMediaType: (415, "UNSUPPORTED_MEDIA_TYPE"),
    domain.ImageTooLarge: (413, "IMAGE_TOO_LARGE"),
    domain.ImageTooComplex: (422, "IMAGE_TOO_COMPLEX"),
    domain.Overloaded: (429, "OVERLOADED"),
    domain.BodyBudgetExceeded: (429, "BODY_BUDGET_EXCEEDED"),
    domain.MalformedUpload: (400, "MALFORMED_CSV"),
    domain.ModelInvalid: (409, "MODEL_INVALID"),
    domain.StoreUnavailable: (503, "STORE_UNAVAILABLE"),
    domain.StorageFull: (507, "STORAGE_FULL"),
    domain.StorageFailed: (500, "STORAGE_ERROR"),
}

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def validation_details(errors: list[dict[str, Any]] | Any) -> list[dict[str, Any]]:
    """Pydantic errors as `{field, message, type}`; the rejected input is never echoed back."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        message = err.get("msg", "invalid value")
        if err.get("type") == "json_invalid":
            field, message = "body", "The body is not valid JSON."
        elif err.get("type") == "missing" and field == "body":
            message = "A JSON body is required."
        details.append({"field": field, "message": message, "type": err.get("type", "invalid")})
    return details


def app_error_response(exc: AppError) -> JSONResponse:
    """A domain error as its envelope; an unmapped one is a bug, answered as a 500."""
    status, code = next(
        (ERROR_STATUS[kind] for kind in type(exc).__mro__ if kind in ERROR_STATUS),
        (500, "INTERNAL_ERROR"),
    )
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return error_response(status, code, exc.message, exc.details, headers)


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return app_error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    noun = "field" if len(details) == 1 else "fields"
    return error_response(
        422, "VALIDATION_ERROR", f"The request has {len(details)} invalid {noun}.", details
    )


# FastAPI's answer when a body cannot be decoded at all (not UTF-8, a broken form): the
# same documented 422 as a body that is not JSON, instead of an undocumented 400.
_UNPARSABLE = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # FastAPI wraps any error while it reads a form into that 400: one of ours (the upload
    # spool could not be written: the service's fault, not the body's) keeps its own answer.
    if exc.status_code == 400 and isinstance(exc.__cause__, AppError):
        return app_error_response(exc.__cause__)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE:
        kind = request.headers.get("content-type", "").split(";")[0].strip() or "unknown"
        details = [
            {
                "field": "body",
                "message": f"The body could not be decoded as {kind} (UTF-8 expected).",
                "type": "body_invalid",
            }
        ]
        return error_response(422, "VALIDATION_ERROR", "The request has 1 invalid field.", details)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"No route matches {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=exc.headers)


def register_exception_handlers(app: FastAPI) -> None:
    """Install the handlers; unexpected exceptions are handled by the request middleware."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
