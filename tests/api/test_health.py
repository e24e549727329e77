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


def test_readiness_per_model_keeps_career_serving_when_clip_cannot_load(  # type: ignore[no-untyped-def]
    make_client, tmp_path: Path
) -> None:
    """The pods' probe asks for career: a CLIP that cannot load must not take the career
    routes away (nor stall a rollout), while the bare probe still says not ready."""
    client: TestClient = make_client(
        clip_enabled=True, clip_pretrained=str(tmp_path / "no-such-checkpoint.pt")
    )
    models = client.get("/health").json()["data"]["models"]
    assert (models["career"]["state"], models["clip"]["state"]) == ("loaded", "unavailable")
    ready = client.get("/health/ready", params={"model": "career"})
    assert ready.status_code == 200
    assert ready.json()["data"] == {"ready": True, "reasons": []}
    error = assert_error(client.get("/health/ready"), 503, "NOT_READY")
    assert [d["reason"].split(":")[0] for d in error["details"]] == ["clip"]
    error = assert_error(client.get("/health/ready?model=clip"), 503, "NOT_READY")
    assert error["details"][0]["reason"].startswith("clip: ")
    assert_error(client.get("/health/ready?model=career&model=clip"), 503, "NOT_READY")
    error = assert_error(client.get("/health/ready?model=gpu"), 422, "VALIDATION_ERROR")
    assert "career, clip" in error["message"]


def test_readiness_for_a_model_waits_while_another_still_loads(  # type: ignore[no-untyped-def]
    make_client,
) -> None:
    """A model that is about to arrive is waited for: a pod is not sent CLIP traffic it
    would answer with 503 MODEL_LOADING, only one whose CLIP has settled."""
    client: TestClient = make_client()
    career = client.app.state.models["career"]  # type: ignore[attr-defined]
    original = career.status
    career.status = lambda: original().model_copy(update={"state": "loading"})
    try:
        error = assert_error(client.get("/health/ready?model=clip"), 503, "NOT_READY")
        assert {"reason": "career: still loading"} in error["details"]
        assert_error(client.get("/health/ready?model=career"), 503, "NOT_READY")
    finally:
        career.status = original
    # CLIP disabled here (the tests' default): asked for by name, it is not ready.
    error = assert_error(client.get("/health/ready?model=clip"), 503, "NOT_READY")
    assert error["details"] == [{"reason": "clip: disabled"}]
    assert client.get("/health/ready?model=career").status_code == 200
