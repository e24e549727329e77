"""Request middleware: request and trace ids, body size limits, one log line, HTTP metrics,
last-resort 500s.

Written as plain ASGI (not BaseHTTPMiddleware) so it adds microseconds, not a task hop,
and so the request id context is visible to the handlers it wraps.
"""

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

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
from app.core.exceptions import AppError, PayloadTooLarge
from app.core.handlers import app_error_response
from app.core.routes import route_path

logger = logging.getLogger("app.request")

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

BodyLimit = Callable[[str], int]
KeyCheck = Callable[[Scope], AppError | None]
RouteName = Callable[[Scope], str]


class RequestContextMiddleware:
    """Per request: id in and out, the API key and the body's byte limit checked before any
    body byte is read, timing log, envelope for crashes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        upload_dir: Path,
        body_limit: BodyLimit,
        key_check: KeyCheck,
        route_name: RouteName,
    ) -> None:
        self.app = app
        self.upload_dir = str(upload_dir)
        self.body_limit = body_limit
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
        try:
            refused = self.key_check(scope)
            if refused is not None:
                raise refused
            if declared > limit:
                raise PayloadTooLarge(_too_large_message(limit))
            await self.app(scope, _limited(receive, limit), send_with_id)
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


def _limited(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive, so a chunked upload cannot dodge the limit."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # An HTTPException, because FastAPI turns other errors raised while it
                # reads the body into a generic 400.
                raise HTTPException(413, detail=_too_large_message(limit))
        return message

    return receive_limited
