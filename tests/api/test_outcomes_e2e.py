"""The closed loop end to end through HTTP: from the synthetic fixture model, a shifted
population's outcomes and requests arrive; drift crosses the threshold on /monitoring and
/metrics; under RETRAIN_POLICY=auto a job starts by itself (saying why), passes the gate
and is activated; the new model does better on the shifted population than the old one."""

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.shifted import as_outcome, as_request, shifted_students

pytestmark = pytest.mark.integration

ADMIN = {"X-API-Key": "admin-key"}
WINDOW = 400


def outcomes(client: TestClient, frame: Any, tag: str) -> None:
    when = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    rows = [
        as_outcome(row, when, idempotency_key=f"{tag}-{i}", subject_id=f"{tag}-s{i}")
        for i, (_, row) in enumerate(frame.iterrows())
    ]
    for start in range(0, len(rows), 100):
        response = client.post(
            "/api/v1/career/outcomes", json={"outcomes": rows[start : start + 100]}
        )
        assert response.status_code == 200, response.text


def live(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/api/v1/career/monitoring").json()["data"]["live_quality"])


def gauge(client: TestClient, name: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout} s")


def test_drift_starts_a_job_that_passes_the_gate_and_serves_better(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        admin_api_keys="admin-key",
        model_poll_seconds=0.2,
        retrain_policy="auto",
        retrain_check_seconds=0.2,
        # Drift alone must start it here: the outcome count never reaches this.
        retrain_min_new_outcomes=1_000_000,
        retrain_min_interval_seconds=3600,
        # The shifted population alone, so the new model learns its mix of careers.
        retrain_include_base_rows=False,
        monitoring_window=WINDOW,
        drift_psi_threshold=0.2,
        # Students are grouped by their keyed subject hash, so the key picks the held-out
        # split. With a per-install random key the gate's margin over the active model
        # moved by +-0.03 from run to run, and a CI run once fell below the tolerance.
        outcome_hash_key="e2e-closed-loop",
    )
    old_version = client.get("/api/v1/career/model").json()["data"]["version"]

    # Outcomes first: scored by the old model on arrival. Nothing starts yet (no drift).
    outcomes(client, shifted_students(1500, seed=31), "train")
    stats = client.get("/api/v1/career/outcomes/stats").json()["data"]
    assert stats["total"] == 1500 and stats["new_since_active"] == 1500
    before = live(client)
    assert before["model_version"] == old_version and before["outcomes"] == 1500
    time.sleep(0.5)  # a few scheduler rounds
    assert client.get("/api/v1/career/retrain", headers=ADMIN).json()["data"] == []

    # Requests from the shifted population: drift crosses the threshold.
    for _, row in shifted_students(WINDOW, seed=32).iterrows():
        assert client.post("/api/v1/career/predict", json=as_request(row)).status_code == 200
    monitoring = client.get("/api/v1/career/monitoring").json()["data"]
    drift = monitoring["drift"]
    assert monitoring["window"]["requests"] >= WINDOW // 2
    assert drift["drifting"] is True and drift["max_psi"] > 0.2, drift
    assert drift["max_feature"] in ("math", "physics", "chemistry", "computer_science")
    assert gauge(client, "skill_compass_ml_career_drift_max_psi") > 0.2
    assert (
        gauge(client, f'skill_compass_ml_career_drift_psi{{feature="{drift["max_feature"]}"}}')
        > 0.2
    )

    # The scheduler starts a job by itself, and says why.
    def auto_job() -> dict[str, Any] | None:
        jobs = client.get("/api/v1/career/retrain", headers=ADMIN).json()["data"]
        return next((job for job in jobs if job["trigger"] == "auto"), None)

    job = wait_for(auto_job, 30, "no automatic job")
    assert "drift" in job["reason"] and job["source"] == "store" and job["force"] is False
    assert job["rows"]["outcomes"] == 1500 and "base_rows" not in job["rows"]

    def finished() -> dict[str, Any] | None:
        state = client.get(f"/api/v1/career/retrain/{job['id']}", headers=ADMIN).json()["data"]
        return state if state["state"] not in ("queued", "running") else None

    done = wait_for(finished, 400, "the automatic job did not finish")
    assert done["state"] == "succeeded", (done["reasons"], done["gate"], done["metrics"])
    assert done["gate"]["passed"] is True and done["activated"] is True
    new_version = done["candidate_version"]
    assert "outcome store" in client.get("/api/v1/career/models").json()["data"][0]["description"]
    wait_for(
        lambda: client.get("/api/v1/career/model").json()["data"]["version"] == new_version,
        20,
        "the new version is not served",
    )
    # Only one job: the interval holds the next one back although drift is still recorded.
    time.sleep(0.5)
    assert len(client.get("/api/v1/career/retrain", headers=ADMIN).json()["data"]) == 1

    # New outcomes from the same shifted population, scored by the new model on arrival.
    outcomes(client, shifted_students(400, seed=33), "after")
    after = live(client)
    assert after["model_version"] == new_version and after["outcomes"] == 400
    assert after["top1_accuracy"] > before["top1_accuracy"] + 0.1, (before, after)
    assert after["log_loss"] < before["log_loss"], (before, after)
    stats = client.get("/api/v1/career/outcomes/stats").json()["data"]
    assert stats["total"] == 1900 and stats["new_since_active"] == 400
