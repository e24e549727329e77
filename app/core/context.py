"""Per-request facts (id, trace id, start time, upload directory, error shape) that the
envelope builder, logs and upload spools read."""

import re
import time
import uuid
from contextvars import ContextVar
from typing import Literal

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
trace_id_var: ContextVar[str] = ContextVar("trace_id", default="-")
request_start_var: ContextVar[float] = ContextVar("request_start", default=0.0)
# The serving app's UPLOAD_DIR; None outside a request (the system temporary directory).
upload_dir_var: ContextVar[str | None] = ContextVar("upload_dir", default=None)
# The shape of this request's error bodies: our envelope, or OpenAI's on the /v1 routes
# (set by `dialect.ErrorDialectMiddleware` before anything can fail).
ErrorDialect = Literal["envelope", "openai"]
error_dialect_var: ContextVar[ErrorDialect] = ContextVar("error_dialect", default="envelope")

# W3C Trace Context: version 00 is `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`;
# later versions may append fields after the flags.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def trace_id_from(traceparent: str) -> str | None:
    """The trace id of a valid `traceparent` header, None for anything else."""
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if (
        version == "ff"
        or (version == "00" and rest)
        or trace_id == "0" * 32
        or parent_id == "0" * 16
    ):
        return None
    return trace_id


def new_request_id() -> str:
    return uuid.uuid4().hex


def elapsed_ms() -> float:
    start = request_start_var.get()
    return round((time.perf_counter() - start) * 1000, 3) if start else 0.0
