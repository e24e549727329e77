"""The envelope, request ids, size limits and error mapping, through HTTP."""

import json
import logging

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from app.config import Settings
from app.core.exceptions import Conflict
from app.main import create_app
from tests.conftest import assert_error

pytestmark = pytest.mark.integration

STUDENT = {"academic_scores": {"math": 80}}


def test_success_envelope_has_meta_and_generated_request_id(client: TestClient) -> None:
    response = client.get("/health/live")
    body = response.json()
    assert response.status_code == 200
    assert body == {
        "success": True,
        "data": {"status": "alive"},
        "error": None,
        "meta": body["meta"],
    }
    assert body["meta"]["api_version"] == "v1"
    assert body["meta"]["duration_ms"] >= 0
    assert len(body["meta"]["request_id"]) == 32
    assert response.headers["x-request-id"] == body["meta"]["request_id"]


def test_caller_request_id_is_echoed(client: TestClient) -> None:
    response = client.post(
        "/api/v1/career/predict", json=STUDENT, headers={"X-Request-ID": "gw-123.abc"}
    )
    assert response.headers["x-request-id"] == "gw-123.abc"
    assert response.json()["meta"]["request_id"] == "gw-123.abc"


def test_unsafe_request_id_is_replaced(client: TestClient) -> None:
    response = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


def test_unknown_route_is_404_envelope(client: TestClient) -> None:
    error = assert_error(client.get("/api/v1/nope"), 404, "NOT_FOUND")
    assert "/api/v1/nope" in error["message"]


def test_wrong_method_is_405_envelope(client: TestClient) -> None:
    assert_error(client.get("/api/v1/career/predict"), 405, "METHOD_NOT_ALLOWED")


def test_service_error_maps_to_its_status_and_code(make_settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings())
    router = APIRouter()

    @router.get("/boom-conflict")
    def conflict() -> None:
        raise Conflict("Already running.", details=[{"job": "1"}])

    @router.get("/boom-bug")
    def bug() -> None:
        raise RuntimeError("secret internals")

    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        error = assert_error(client.get("/boom-conflict"), 409, "CONFLICT")
        assert error["details"] == [{"job": "1"}]
        response = client.get("/boom-bug")
        error = assert_error(response, 500, "INTERNAL_ERROR")
        assert "secret internals" not in response.text
        # The server keeps serving after a crash.
        assert client.get("/health/live").status_code == 200


def test_body_over_limit_is_413_by_declared_length(client: TestClient) -> None:
    big = {"academic_scores": {"math": 80}, "padding": "x" * 70_000}
    assert_error(client.post("/api/v1/career/predict", json=big), 413, "PAYLOAD_TOO_LARGE")


def test_body_over_limit_is_413_when_streamed_without_length(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b" " * 1024

    response = client.post(
        "/api/v1/career/predict",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert client.post("/api/v1/career/predict", json=STUDENT).status_code == 200


def test_limit_is_configurable(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(max_json_body_kb=1)
    body = {"academic_scores": {"math": 80}, "interests": {"keywords": ["coding"] * 30}}
    assert len(json.dumps(body)) > 300
    assert_error(
        client.post("/api/v1/career/predict", json={**body, "x": "y" * 2000}),
        413,
        "PAYLOAD_TOO_LARGE",
    )


def test_one_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.request"):
        client.get("/health/live", headers={"X-Request-ID": "log-me"})
    lines = [r for r in caplog.records if r.name == "app.request"]
    assert len(lines) == 1
    record = lines[0]
    assert record.method == "GET"  # type: ignore[attr-defined]
    assert record.path == "/health/live"  # type: ignore[attr-defined]
    assert record.status == 200  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert record.request_id == "log-me"  # type: ignore[attr-defined]


def test_json_log_format(make_settings, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(log_format="json")
    with TestClient(create_app(settings)) as client:
        client.get("/health/live", headers={"X-Request-ID": "json-line"})
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if "json-line" in line
    ]
    assert lines, "no JSON log line for the request"
    line = lines[-1]
    assert line["method"] == "GET"
    assert line["path"] == "/health/live"
    assert line["status"] == 200
    assert line["request_id"] == "json-line"
    assert "duration_ms" in line and "level" in line


def test_cors_allows_configured_origin_only(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(cors_origins="https://app.example")
    allowed = client.options(
        "/api/v1/career/predict",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers.get("access-control-allow-origin") == "https://app.example"
    denied = client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in denied.headers


def test_middleware_errors_carry_cors_headers(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(cors_origins="https://app.example")
    big = {"academic_scores": {"math": 80}, "padding": "x" * 70_000}
    response = client.post(
        "/api/v1/career/predict", json=big, headers={"Origin": "https://app.example"}
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert response.headers.get("access-control-allow-origin") == "https://app.example"
