"""OpenAI's wire format: the bodies of the `/v1` routes' answers, successes and errors, are
built here and nowhere else (our envelope has its own builder, `envelope.py`).

Bodies are serialised by orjson straight from the numpy vectors: float32 values are
written in their shortest round-trip form, which keeps a float body about 40% smaller than
writing them as the float64 numbers `tolist()` makes, and takes a sixth of the time.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from fastapi.responses import JSONResponse

from app.schemas.clip import EncodingFormat
from app.schemas.openai import ModelCard
from app.utils.vectors import encode_rows

# OpenAI's error `type` for a status; every other 4xx is an `invalid_request_error`.
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
# Field problems folded into the message: OpenAI's shape has no room for a list of them.
_MAX_FIELDS_IN_MESSAGE = 5


class OpenAIResponse(JSONResponse):
    """A JSON body serialised by orjson, numpy arrays included."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def embeddings_response(
    vectors: np.ndarray, *, encoding_format: EncodingFormat, model: str, prompt_tokens: int
) -> JSONResponse:
    """`{"object": "list", "data": [...], "model", "usage"}`; with `base64`, each vector is
    its little-endian float32 bytes in base64, which is what OpenAI's clients decode."""
    embeddings = encode_rows(vectors, encoding_format)
    return OpenAIResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": embedding}
                for i, embedding in enumerate(embeddings)
            ],
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )


def models_response(models: list[ModelCard]) -> JSONResponse:
    return OpenAIResponse({"object": "list", "data": [model.model_dump() for model in models]})


def error_type(status_code: int) -> str:
    if status_code >= 500:
        return "server_error"
    return _ERROR_TYPES.get(status_code, "invalid_request_error")


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """`{"error": {"message", "type", "param", "code"}}`: `code` is the envelope's stable
    code, `param` the first field at fault, and the fields' own problems join the message
    (the only part most clients show)."""
    details = details or []
    fields = [d for d in details if d.get("field") and d["field"] != "body"]
    problems = [f"{d['field']}: {d['message']}" for d in details if d.get("message")]
    if problems:
        shown = "; ".join(problems[:_MAX_FIELDS_IN_MESSAGE])
        more = len(problems) - _MAX_FIELDS_IN_MESSAGE
        message = f"{message} ({shown}{f'; {more} more' if more > 0 else ''})"
    body = {
        "error": {
            "message": message,
            "type": error_type(status_code),
            "param": str(fields[0]["field"]) if fields else None,
            "code": code,
        }
    }
    return OpenAIResponse(body, status_code, headers)
