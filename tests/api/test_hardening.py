"""Hostile requests: each test first makes the attack, then checks it costs nothing."""

import asyncio
import io
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.tags import parse_tags
from app.config import Settings
from app.main import create_app
from tests.conftest import CAREER_MODELS, TINY_CLIP, assert_error, serve

pytestmark = pytest.mark.integration

STUDENT = {"academic_scores": {"math": 80}}


# --- the key is checked before the body is read -----------------------------------------------


def call_asgi(
    app: Any, method: str, path: str, headers: dict[str, str], body: bytes = b"{}"
) -> tuple[int, int]:
    """One request straight through the ASGI app: (status, body messages the app read)."""
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], reads


def test_keyless_requests_are_refused_before_any_body_byte_is_read(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        career_model_dir=CAREER_MODELS,
        upload_dir=tmp_path,
        clip_enabled=False,
        api_keys=["user-key"],
        admin_api_keys=["admin-key"],
    )
    app = create_app(settings)
    body = b'{"images": ["' + b"A" * 100_000 + b'"]}'
    embed = "/api/v1/clip/json/embed/image"
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        assert call_asgi(app, "POST", embed, headers, body) == (401, 0)
    # Admin routes: an API key is not enough; nor is an admin key when none is configured.
    assert call_asgi(app, "POST", "/api/v1/career/retrain", {"X-API-Key": "user-key"}) == (401, 0)
    activate = "/api/v1/career/models/v1/activate"
    assert call_asgi(app, "POST", activate, {}) == (401, 0)
    # The check can fail: with the right key the app goes on to read the body.
    status, reads = call_asgi(app, "POST", embed, {"X-API-Key": "user-key"}, body)
    assert reads >= 1 and status != 401
    no_admin = create_app(settings.model_copy(update={"admin_api_keys": []}))
    assert call_asgi(no_admin, "POST", "/api/v1/career/retrain", {"X-API-Key": "user-key"}) == (
        403,
        0,
    )


def test_a_keyless_huge_upload_is_answered_before_it_is_sent(tmp_path: Path) -> None:
    """The real server, a 224 MB body declared and 64 KB of it sent: the 401 comes back
    at once, without waiting for (or reading) the rest."""
    server, base = serve(CAREER_MODELS, tmp_path, API_KEYS="user-key")
    try:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /api/v1/clip/json/embed/image HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 234881024\r\n\r\n"
            )
            conn.sendall(b'{"images": ["' + b"A" * 65_536)
            started = time.monotonic()
            answer = b""
            while b'"meta"' not in answer:  # the head, then the envelope
                chunk = conn.recv(65_536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b'"UNAUTHORIZED"' in answer
        assert time.monotonic() - started < 5
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_list_in_a_request_body_has_a_length_limit(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    unbounded: list[str] = []

    def walk(node: Any, where: str, seen: frozenset[str]) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref:
                name = ref.rsplit("/", 1)[-1]
                if name not in seen:
                    walk(schemas[name], f"{where}>{name}", seen | {name})
                return
            if node.get("type") == "array" and "maxItems" not in node:
                unbounded.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}", seen)
        elif isinstance(node, list):
            for item in node:
                walk(item, where, seen)

    bodies = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for kind, content in operation.get("requestBody", {}).get("content", {}).items():
                bodies += 1
                walk(content["schema"], f"{method.upper()} {path} {kind}", frozenset())
    assert bodies >= 9
    assert unbounded == []


# --- text: linear and bounded -----------------------------------------------------------------


def test_forty_thousand_tags_are_refused_in_linear_time() -> None:
    raw = [",".join(f"tag {i}" for i in range(40_000))]
    started = time.perf_counter()
    with pytest.raises(Exception) as refused:
        parse_tags(raw, max_tags=32, max_length=200, required=True)
    assert time.perf_counter() - started < 0.5
    assert "more than 32 tags" in str(refused.value.details)  # type: ignore[attr-defined]
    many_repeats = [",".join(["same tag"] * 200_000)]
    started = time.perf_counter()
    assert parse_tags(many_repeats, max_tags=32, max_length=200, required=True) == ["same tag"]
    assert time.perf_counter() - started < 1


@pytest.fixture(scope="module")
def clip_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("clip")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        career_model_dir=CAREER_MODELS,
        upload_dir=tmp / "uploads",
        clip_model_cache_dir=tmp / "cache",
        **TINY_CLIP,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        from tests.conftest import wait_for_models

        wait_for_models(client)
        yield client


def test_a_huge_word_is_refused_before_tokenising(clip_client: TestClient) -> None:
    started = time.perf_counter()
    response = clip_client.post("/api/v1/clip/embed/text", json={"texts": ["ok", "a" * 32_000]})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"] == [{"field": "texts.1", "message": "32000 characters, limit 300"}]
    assert time.perf_counter() - started < 1
    assert clip_client.post("/api/v1/clip/embed/text", json={"texts": ["a" * 300]}).status_code == (
        200
    )


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["TGA", "PCX", "SGI", "ICO", "QOI", "PPM", "DDS"])
def test_only_the_six_documented_formats_are_decoded(clip_client: TestClient, fmt: str) -> None:
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    out = io.BytesIO()
    image.save(out, format=fmt)
    Image.open(io.BytesIO(out.getvalue())).load()  # Pillow itself would decode it
    response = clip_client.post(
        "/api/v1/clip/embed/image", files={"images": (f"a.{fmt.lower()}", out.getvalue())}
    )
    error = assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "JPEG, PNG, GIF, WebP, BMP, TIFF" in error["message"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_the_six_formats_are_accepted(clip_client: TestClient, fmt: str) -> None:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, format=fmt)
    response = clip_client.post("/api/v1/clip/embed/image", files={"images": ("a", out.getvalue())})
    assert response.status_code == 200, response.text


# --- bodies that are not UTF-8 --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/career/predict", "/api/v1/career/analyze", "/api/v1/clip/embed/text"]
)
def test_a_body_that_is_not_utf8_gets_the_documented_422(client: TestClient, path: str) -> None:
    response = client.post(
        path, content=b'{"texts": ["\xff\xfe"]}', headers={"content-type": "application/json"}
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "body"
    spec = client.get("/openapi.json").json()
    assert "422" in spec["paths"][path]["post"]["responses"]


# --- logs and public endpoints ------------------------------------------------------------------


def test_a_newline_in_the_path_cannot_forge_a_log_line(
    make_client: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    client: TestClient = make_client()  # its log handler writes to the captured stderr
    capfd.readouterr()
    client.get("/x%0A2026-01-01 00:00:00,000 INFO app.request [-] POST /activate 200 1.0ms")
    client.get("/x%0D%E2%80%A8y")
    log = capfd.readouterr().err
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())
    forged = [line for line in log.splitlines() if " app.request " in line and "GET /x" in line]
    assert len(forged) == 2 and "\\n2026-01-01" in forged[0], forged
    assert "\\r\\u2028y" in forged[1]


def test_a_request_id_with_a_trailing_newline_is_replaced(tmp_path: Path) -> None:
    app = create_app(
        Settings(  # type: ignore[call-arg]
            _env_file=None, career_model_dir=CAREER_MODELS, upload_dir=tmp_path, clip_enabled=False
        )
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/health/live",
        "raw_path": b"/health/live",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"x-request-id", b"abc\n")],
        "scheme": "http",
        "http_version": "1.1",
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }
    asyncio.run(app(scope, receive, send))
    echoed = dict(sent[0]["headers"])[b"x-request-id"]
    assert echoed != b"abc\n" and b"\n" not in echoed


def test_docs_can_be_turned_off(make_client: Any) -> None:
    client: TestClient = make_client(docs_enabled=False, admin_api_keys="admin")
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert_error(client.get(path), 404, "NOT_FOUND")
    assert client.post("/api/v1/career/predict", json=STUDENT).status_code == 200
    # The admin routes are still known without a public OpenAPI document.
    assert_error(client.post("/api/v1/career/retrain", json={}), 401, "UNAUTHORIZED")
