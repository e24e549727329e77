"""Health probes, and a service that stays up when its model cannot load."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import assert_error

pytestmark = pytest.mark.integration


def test_health_ok_with_model_details(client: TestClient) -> None:
    response = client.get("/health")
    data = response.json()["data"]
    assert response.status_code == 200
    assert data["status"] == "ok"
    assert data["uptime_seconds"] >= 0
    career = data["models"]["career"]
    assert career["state"] == "loaded"
    assert career["version"].startswith("synthetic-")
    assert career["load_seconds"] >= 0
    assert career["error"] is None


def test_live_and_ready(client: TestClient) -> None:
    assert client.get("/health/live").json()["data"] == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["data"] == {"ready": True, "reasons": []}


def test_missing_model_leaves_service_up_and_degraded(make_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = make_client(career_model_dir=tmp_path / "empty")
    health = client.get("/health").json()["data"]
    assert health["status"] == "degraded"
    assert health["models"]["career"]["state"] == "unavailable"
    assert "No active career model" in health["models"]["career"]["error"]
    error = assert_error(client.get("/health/ready"), 503, "NOT_READY")
    assert "career" in error["details"][0]["reason"]
    error = assert_error(
        client.post("/api/v1/career/predict", json={"academic_scores": {"math": 50}}),
        503,
        "MODEL_UNAVAILABLE",
    )
    assert "No active career model" in error["message"]
    assert client.get("/health/live").status_code == 200
    # Vocabulary does not need a model.
    assert client.get("/api/v1/career/interests").status_code == 200


def test_corrupt_model_is_reported_not_loaded(make_client, career_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    version = (career_model_dir / "ACTIVE").read_text().strip()
    pipeline = career_model_dir / version / "pipeline.joblib"
    pipeline.write_bytes(pipeline.read_bytes()[:-10] + b"tampered!!")
    client: TestClient = make_client()
    career = client.get("/health").json()["data"]["models"]["career"]
    assert career["state"] == "unavailable"
    assert "sha256" in career["error"]
    assert_error(client.get("/api/v1/career/model"), 503, "MODEL_UNAVAILABLE")
