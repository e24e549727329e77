"""The one envelope builder: successes and errors are shaped here and nowhere else."""

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from app.core import openai_format
from app.core.context import elapsed_ms, error_dialect_var, request_id_var
from app.schemas.envelope import Envelope, ErrorBody, Meta

T = TypeVar("T")


def meta() -> Meta:
    return Meta(request_id=request_id_var.get(), duration_ms=elapsed_ms())


# Parametrised once: each Envelope[None] lookup in pydantic's generic cache costs more than
# serialising a small answer.
_NONE = Envelope[None]


def ok(data: T, status_code: int = 200) -> Response:
    """Wrap a route's result in the success envelope, serialised once by orjson: pydantic
    models through their JSON-mode dump, dataclasses and numpy arrays natively (float32
    vectors in their shortest round-trip form, without a list of Python floats between:
    an 8-image embedding answer costs a fraction of pydantic's dump of the same).

    Routes still declare `response_model=Envelope[...]` for OpenAPI; returning a ready
    Response skips FastAPI's dump-validate-encode round trip, which would validate every
    answer a second time.
    """
    body = {"success": True, "data": data, "error": None, "meta": meta()}
    return Response(
        orjson.dumps(body, default=_json_mode, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
    )


def _json_mode(value: Any) -> Any:
    """What orjson cannot write itself: pydantic models, as their JSON-mode dump."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error envelope as a ready response; on the OpenAI-compatible routes, the same
    status, code and message in OpenAI's error shape instead. Every error goes through
    here (domain errors, validation, the request middleware's 401s, 413s and 500s), so
    each route answers its errors in one shape."""
    if error_dialect_var.get() == "openai":
        return openai_format.error_response(status_code, code, message, details, headers)
    body = _NONE(
        success=False,
        error=ErrorBody(code=code, message=message, details=details or []),
        meta=meta(),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code, headers=headers)
