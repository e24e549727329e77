"""API keys between the gateway and the service."""

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import assert_error, wait_for_models

pytestmark = pytest.mark.integration

STUDENT = {"academic_scores": {"math": 80}}


def test_open_when_no_keys_configured(client: TestClient) -> None:
    assert client.post("/api/v1/career/predict", json=STUDENT).status_code == 200


def test_keys_required_when_configured(make_client) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = make_client(api_keys="k-one, k-two")
    url = "/api/v1/career/predict"
    error = assert_error(client.post(url, json=STUDENT), 401, "UNAUTHORIZED")
    assert "X-API-Key" in error["message"]
    assert_error(
        client.post(url, json=STUDENT, headers={"X-API-Key": "wrong"}), 401, "UNAUTHORIZED"
    )
    assert_error(
        client.post(url, json=STUDENT, headers={"Authorization": "Basic k-one"}),
        401,
        "UNAUTHORIZED",
    )
    assert client.post(url, json=STUDENT, headers={"X-API-Key": "k-one"}).status_code == 200
    assert (
        client.post(url, json=STUDENT, headers={"Authorization": "Bearer k-two"}).status_code == 200
    )
    assert client.get("/api/v1/career/careers", headers={"X-API-Key": "k-two"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer"},  # no token
        {"Authorization": "Bearer "},
        {"Authorization": "k-one"},  # no scheme
        {"Authorization": "Token k-one"},
        {"X-API-Key": ""},
        {"X-API-Key": "k-one "},  # keys are compared exactly
    ],
)
def test_malformed_credentials_are_refused(make_client, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = make_client(api_keys="k-one")
    assert_error(
        client.post("/api/v1/career/predict", json=STUDENT, headers=headers), 401, "UNAUTHORIZED"
    )


def test_bearer_scheme_is_case_insensitive(make_client) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = make_client(api_keys="k-one")
    response = client.post(
        "/api/v1/career/predict", json=STUDENT, headers={"Authorization": "bearer k-one"}
    )
    assert response.status_code == 200


def test_health_and_docs_stay_open(make_client) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = make_client(api_keys="secret")
    for path in ("/health", "/health/live", "/health/ready", "/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_keys_and_limits_are_judged_on_the_route_behind_a_root_path(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Behind a proxy that mounts the service under a prefix (`uvicorn --root-path /ml`),
    the key is still checked before the body is read, admin routes still need an admin
    key, and each route keeps its own body limit."""
    settings = make_settings(api_keys="k-one", admin_api_keys="a-one")
    app = create_app(settings)
    with TestClient(app, root_path="/ml", raise_server_exceptions=False) as client:
        wait_for_models(client)
        oversized = b"x" * (settings.max_json_body_bytes + 1)
        json_type = {"content-type": "application/json"}
        # Refused for the key, not for the size: the body was never read.
        assert_error(
            client.post("/ml/api/v1/career/predict", content=oversized, headers=json_type),
            401,
            "UNAUTHORIZED",
        )
        key = {"X-API-Key": "k-one"}
        assert (
            client.post("/ml/api/v1/career/predict", json=STUDENT, headers=key).status_code == 200
        )
        error = assert_error(
            client.post("/ml/api/v1/career/models/any-version/activate", headers=key),
            401,
            "UNAUTHORIZED",
        )
        assert "admin key" in error["message"]
        # The retrain route's limit is the training upload's, far above the JSON limit: a
        # body just over the JSON limit is judged as a (bad) upload, not refused as too large.
        response = client.post(
            "/ml/api/v1/career/retrain",
            files={"file": ("students.csv", oversized, "text/csv")},
            headers={"X-API-Key": "a-one"},
        )
        assert response.status_code != 413
        assert response.json()["success"] is False
