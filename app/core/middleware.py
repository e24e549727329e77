"""Request middleware: request and trace ids, body size limits, the body deadline, the
budget of body bytes in flight, one log line, HTTP metrics, last-resort 500s.

Written as plain ASGI (not BaseHTTPMiddleware) so it adds microseconds, not a task hop,
and so the request id context is visible to the handlers it wraps.
"""

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import metrics
from app.core.context import (
    new_request_id,
    request_id_var,
    request_start_var,
    trace_id_from,
    trace_id_var,
    upload_dir_var,
)
from app.core.envelope import error_response
from app.core.exceptions import AppError, BodyBudgetExceeded, PayloadTooLarge
from app.core.handlers import app_error_response
from app.core.routes import route_path

logger = logging.getLogger("app.request")

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

BodyLimit = Callable[[str], int]
KeyCheck = Callable[[Scope], AppError | None]
RouteName = Callable[[Scope], str]

# Seconds a client refused for want of body budget is asked to wait: the bodies in flight
# are read at network speed, so room usually frees up within a second or two.
BODY_BUDGET_RETRY_AFTER = 1


class BodyBudget:
    """Bytes of request bodies this process may hold at once.

    Every request reserves its body's size before the body is read and returns it when it
    ends, so N slow or huge uploads cannot add up to more memory than the budget. All
    requests of a process run on one event loop, and a reservation never awaits between
    its check and its update, so a plain counter is enough.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.reserved = 0

    def reserve(self, size: int) -> bool:
        if self.reserved + size > self.total:
            return False
        self.reserved += size
        return True

    def release(self, size: int) -> None:
        self.reserved -= size


class RequestContextMiddleware:
    """Per request: id in and out; the API key, the body's byte limit and the budget of body
    bytes in flight checked before any body byte is read; a deadline for the body; timing
    log; envelope for crashes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        upload_dir: Path,
        body_limit: BodyLimit,
        body_budget: BodyBudget,
        body_timeout: float,
        key_check: KeyCheck,
        route_name: RouteName,
    ) -> None:
        self.app = app
        self.upload_dir = str(upload_dir)
        self.body_limit = body_limit
        self.body_budget = body_budget
        self.body_timeout = body_timeout
        self.key_check = key_check
        self.route_name = route_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        supplied = headers.get("x-request-id", "")
        request_id = supplied if _SAFE_REQUEST_ID.fullmatch(supplied) else new_request_id()
        request_id_var.set(request_id)
        trace_id_var.set(trace_id_from(headers.get("traceparent", "")) or "-")
        start = time.perf_counter()
        metrics.HTTP_IN_FLIGHT.inc()
        request_start_var.set(start)
        upload_dir_var.set(self.upload_dir)
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        limit = self.body_limit(route_path(scope))
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        # A chunked body declares no size: it may grow to the route's limit. Without either
        # header an HTTP/1.1 request has no body.
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        expected = limit if chunked else declared
        reserved = 0
        try:
            refused = self.key_check(scope)
            if refused is not None:
                raise refused
            if declared > limit:
                raise PayloadTooLarge(_too_large_message(limit))
            if expected:
                if not self.body_budget.reserve(expected):
                    raise BodyBudgetExceeded(
                        "The server is receiving as many request bodies as it can hold; "
                        f"retry in {BODY_BUDGET_RETRY_AFTER} s.",
                        retry_after=BODY_BUDGET_RETRY_AFTER,
                    )
                reserved = expected
                receive = _limited(receive, limit, start + self.body_timeout)
            await self.app(scope, receive, send_with_id)
        except AppError as exc:  # raised outside the routes' handlers (limits, body reads)
            if not started:
                await app_error_response(exc)(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error")
            if not started:
                await error_response(
                    500, "INTERNAL_ERROR", "An unexpected error occurred; it has been logged."
                )(scope, receive, send_with_id)
        finally:
            self.body_budget.release(reserved)
            seconds = time.perf_counter() - start
            metrics.HTTP_IN_FLIGHT.dec()
            route = self.route_name(scope)
            metrics.HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            metrics.HTTP_DURATION.labels(route, scope["method"]).observe(seconds)
            logger.info(
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )


def _too_large_message(limit: int) -> str:
    return f"The request body is larger than this route's limit of {limit} bytes."


def _limited(receive: Receive, limit: int, deadline: float) -> Receive:
    """Count body bytes as they arrive, so a chunked upload cannot dodge the limit, and
    give up on a body still incomplete at `deadline` (a perf_counter time): a client
    sending a byte a second would otherwise hold its connection and reservation forever.
    Once the body is complete, receive is passed through untouched (it then only waits
    for the client to disconnect)."""
    received = 0
    complete = False

    async def receive_limited() -> Message:
        nonlocal received, complete
        if complete:
            return await receive()
        with anyio.move_on_after(max(deadline - time.perf_counter(), 0)) as waited:
            message = await receive()
        # Errors raised here are HTTPExceptions, because FastAPI turns other errors raised
        # while it reads the body into a generic 400.
        if waited.cancelled_caught:
            raise HTTPException(
                408,
                detail="The request body did not arrive in time.",
                # uvicorn closes the connection after this answer, so the rest of the body
                # is never waited for.
                headers={"Connection": "close"},
            )
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, detail=_too_large_message(limit))
            complete = not message.get("more_body", False)
        else:  # http.disconnect
            complete = True
        return message

    return receive_limited
