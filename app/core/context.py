"""Per-request facts (id, start time) that the envelope builder and logs read."""

import time
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
request_start_var: ContextVar[float] = ContextVar("request_start", default=0.0)


def new_request_id() -> str:
    return uuid.uuid4().hex


def elapsed_ms() -> float:
    start = request_start_var.get()
    return round((time.perf_counter() - start) * 1000, 3) if start else 0.0
