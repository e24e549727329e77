"""The request middleware's body deadline and budget of body bytes, with a fake client."""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from app.config import Settings
from app.core.middleware import BodyBudget, RequestContextMiddleware
from app.main import create_app
from tests.conftest import CAREER_MODELS

pytestmark = pytest.mark.unit

LIMIT = 1000


def scope_for(method: str = "POST", headers: dict[str, str] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/api/v1/career/predict",
        "raw_path": b"/api/v1/career/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }


def trickle(chunks: list[bytes], then_wait: float = 3600) -> Callable[[], Awaitable[Message]]:
    """A client that sends these chunks at once, then nothing for `then_wait` seconds."""
    pending = list(chunks)

    async def receive() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": True}
        await asyncio.sleep(then_wait)
        return {"type": "http.request", "body": b"", "more_body": False}

    return receive


def run(app: Any, scope: Scope, receive: Receive) -> tuple[int, dict[bytes, bytes], Any]:
    """(status, headers, parsed body) of one request."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], dict(sent[0]["headers"]), json.loads(body) if body else None


# --- the deadline, through the whole app (FastAPI reads the body) --------------------------


@pytest.fixture
def slow_app(tmp_path: Path) -> Any:
    return create_app(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            career_model_dir=CAREER_MODELS,
            upload_dir=tmp_path,
            clip_enabled=False,
            body_timeout_seconds=0.3,
        )
    )


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closed(slow_app: Any) -> None:
    started = time.monotonic()
    status, headers, body = run(
        slow_app, scope_for(headers={"content-length": "100"}), trickle([b'{"acad'])
    )
    assert 0.3 <= time.monotonic() - started < 2
    assert status == 408
    assert headers[b"connection"] == b"close"
    assert body["success"] is False and body["error"]["code"] == "REQUEST_TIMEOUT"
    assert body["error"]["message"] == "The request body did not arrive in time."
    assert body["meta"]["request_id"] == headers[b"x-request-id"].decode()


def test_the_deadline_counts_from_the_request_not_from_each_chunk(slow_app: Any) -> None:
    """A byte every 0.1 s never leaves one receive waiting 0.3 s, yet the body is late."""

    async def one_byte_every_tenth() -> Message:
        await asyncio.sleep(0.1)
        return {"type": "http.request", "body": b" ", "more_body": True}

    started = time.monotonic()
    status, _, _ = run(slow_app, scope_for(headers={"content-length": "100"}), one_byte_every_tenth)
    assert status == 408
    assert time.monotonic() - started < 1


# --- around an app that reads the whole body ---------------------------------------------


def reading_app(reads: list[int]) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            reads.append(len(message.get("body", b"")))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def middleware(inner: Any, budget: BodyBudget, timeout: float = 30) -> RequestContextMiddleware:
    return RequestContextMiddleware(
        inner,
        upload_dir=Path("uploads"),
        body_limit=lambda _: LIMIT,
        body_budget=budget,
        body_timeout=timeout,
        key_check=lambda _: None,
        route_name=lambda _: "route",
    )


def one_shot(body: bytes) -> Callable[[], Awaitable[Message]]:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def test_a_body_in_time_is_not_cut_short_nor_is_waiting_after_it() -> None:
    """Chunks 0.05 s apart, complete well before the 0.4 s deadline; then the app waits
    past the deadline for the client to disconnect, which is no longer the body's business."""
    chunks = [b"a" * 10, b"b" * 10, b"c" * 10]

    async def receive() -> Message:
        await asyncio.sleep(0.05)
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        await asyncio.sleep(0.5)
        return {"type": "http.disconnect"}

    reads: list[int] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await reading_app(reads)(scope, receive, lambda _: asyncio.sleep(0))
        assert (await receive())["type"] == "http.disconnect"  # at 0.7 s, past the deadline
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    status, _, _ = run(
        middleware(inner, BodyBudget(LIMIT), timeout=0.4),
        scope_for(headers={"content-length": "30"}),
        receive,
    )
    assert status == 200 and reads == [10, 10, 10]


def test_a_body_the_budget_cannot_hold_is_refused_unread() -> None:
    budget = BodyBudget(LIMIT)
    assert budget.reserve(700)  # another request's body, still in flight
    reads: list[int] = []
    status, headers, body = run(
        middleware(reading_app(reads), budget),
        scope_for(headers={"content-length": "400"}),
        one_shot(b"x" * 400),
    )
    assert status == 429 and reads == []
    assert headers[b"retry-after"] == b"1"
    assert body["error"]["code"] == "BODY_BUDGET_EXCEEDED"
    assert budget.reserved == 700  # nothing kept for the refused request

    budget.release(700)  # the other request ended: the same body now goes through
    status, _, _ = run(
        middleware(reading_app(reads), budget),
        scope_for(headers={"content-length": "400"}),
        one_shot(b"x" * 400),
    )
    assert status == 200 and reads == [400]
    assert budget.reserved == 0


def test_requests_without_a_body_never_touch_the_budget() -> None:
    budget = BodyBudget(LIMIT)
    assert budget.reserve(LIMIT)  # full
    for method, headers in (("GET", {}), ("POST", {"content-length": "0"})):
        status, _, _ = run(
            middleware(reading_app([]), budget), scope_for(method, headers), one_shot(b"")
        )
        assert status == 200, method


def test_a_chunked_body_reserves_the_route_limit() -> None:
    budget = BodyBudget(LIMIT + 10)
    seen: list[int] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(budget.reserved)
        await reading_app([])(scope, receive, send)

    status, _, _ = run(
        middleware(inner, budget),
        scope_for(headers={"transfer-encoding": "chunked"}),
        one_shot(b"x" * 10),
    )
    assert status == 200 and seen == [LIMIT] and budget.reserved == 0


def test_the_reservation_is_returned_when_the_request_fails() -> None:
    budget = BodyBudget(LIMIT)

    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("boom")

    async def disconnecting() -> Message:
        return {"type": "http.disconnect"}

    for receive in (one_shot(b"x" * 300), disconnecting):
        status, _, _ = run(
            middleware(crashing, budget), scope_for(headers={"content-length": "300"}), receive
        )
        assert status == 500
        assert budget.reserved == 0
