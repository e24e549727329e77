"""Outcomes, their statistics, erasure and monitoring through HTTP, as the gateway and an
admin call them, on SQLite and on PostgreSQL."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import assert_error
from tests.shifted import as_outcome, usual_students

pytestmark = pytest.mark.integration

OUTCOMES = "/api/v1/career/outcomes"
STATS = "/api/v1/career/outcomes/stats"
MONITORING = "/api/v1/career/monitoring"
ADMIN = {"X-API-Key": "admin-key"}
NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.isoformat().replace("+00:00", "Z")
STUDENT = {
    "academic_scores": {"math": 95, "computer_science": 97, "physics": 85},
    "interests": {"keywords": ["coding"]},
}


def record(**changes: Any) -> dict[str, Any]:
    return {"student": STUDENT, "career": "software_engineer", "observed_at": TODAY, **changes}


@pytest.fixture
def loop(make_client: Callable[..., TestClient], database_url: str) -> TestClient:
    client: TestClient = make_client(admin_api_keys="admin-key", database_url=database_url)
    return client


def post(client: TestClient, *records: dict[str, Any]) -> dict[str, Any]:
    response = client.post(OUTCOMES, json={"outcomes": list(records)})
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


# --- storing ---------------------------------------------------------------------------------


def test_outcomes_are_stored_counted_and_scored(loop: TestClient) -> None:
    frame = usual_students(40, seed=5)
    batch = [as_outcome(row, TODAY) for _, row in frame.iterrows()]
    answer = post(loop, *batch, record(career="Doctor"), record(career="teacher"))
    version = loop.get("/api/v1/career/model").json()["data"]["version"]
    assert answer == {"stored": 42, "duplicates": 0, "model_version": version}
    stats = loop.get(STATS).json()["data"]
    assert stats["total"] == 42 and stats["new_since_active"] == 42
    assert sum(stats["by_career"].values()) == 42
    assert stats["by_career"]["Doctor"] >= 1 and "Teacher" in stats["by_career"]
    monday = (NOW.date() - timedelta(days=NOW.weekday())).isoformat()
    assert stats["by_week"] == [{"week": monday, "count": 42}]
    assert stats["active_version"] == version and stats["retention_days"] == 730
    live = loop.get(MONITORING).json()["data"]["live_quality"]
    assert live["model_version"] == version and live["outcomes"] == 42
    assert 0 <= live["top1_accuracy"] <= 1 and live["log_loss"] > 0


def test_a_retried_batch_is_not_counted_twice(loop: TestClient) -> None:
    batch = [record(idempotency_key=f"k-{i}") for i in range(5)]
    assert post(loop, *batch)["stored"] == 5
    again = post(loop, *batch[2:], record(idempotency_key="k-new"), record())
    assert (again["stored"], again["duplicates"]) == (2, 3)
    assert loop.get(STATS).json()["data"]["total"] == 7


def test_nothing_that_identifies_a_person_is_stored(
    make_client: Callable[..., TestClient], career_model_dir: Path
) -> None:
    client = make_client(outcome_hash_key="k" * 32)
    post(client, record(subject_id="student-4242@example.org", idempotency_key="key-77"))
    raw = (career_model_dir / "outcomes.sqlite3").read_bytes()
    wal = career_model_dir / "outcomes.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"student-4242" not in raw and b"key-77" not in raw
    assert not (career_model_dir / ".outcome-hash-key").exists()  # the configured key is used


def test_without_a_configured_key_a_private_per_install_key_is_made(
    client: TestClient, career_model_dir: Path
) -> None:
    post(client, record(subject_id="s-1"))
    key = career_model_dir / ".outcome-hash-key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(bytes.fromhex(key.read_text().strip())) == 32


# --- erasure -----------------------------------------------------------------------------------


def test_erasure_deletes_a_subjects_outcomes_and_an_unknown_id_deletes_nothing(
    loop: TestClient,
) -> None:
    post(loop, record(subject_id="s-1"), record(subject_id="s-1"), record(subject_id="s-2"))
    erased = loop.delete(OUTCOMES, params={"subject_id": "s-1"}, headers=ADMIN)
    assert erased.status_code == 200 and erased.json()["data"] == {"deleted": 2}
    unknown = loop.delete(OUTCOMES, params={"subject_id": "never-seen"}, headers=ADMIN)
    assert unknown.status_code == 200 and unknown.json()["data"] == {"deleted": 0}
    assert loop.get(STATS).json()["data"]["total"] == 1


def test_erasure_needs_an_admin_key_and_a_subject(loop: TestClient) -> None:
    assert_error(loop.delete(OUTCOMES, params={"subject_id": "s"}), 401, "UNAUTHORIZED")
    assert_error(loop.delete(OUTCOMES, headers=ADMIN), 422, "VALIDATION_ERROR")
    assert_error(
        loop.delete(OUTCOMES, params={"subject_id": ""}, headers=ADMIN), 422, "VALIDATION_ERROR"
    )
    # The gateway's routes on the same path need no admin key.
    assert loop.post(OUTCOMES, json={"outcomes": [record()]}).status_code == 200


def test_erasure_is_forbidden_without_admin_keys(client: TestClient) -> None:
    assert_error(client.delete(OUTCOMES, params={"subject_id": "s"}), 403, "FORBIDDEN")


# --- bad input ---------------------------------------------------------------------------------

BAD_STUDENTS = [
    ({"academic_scores": {"math": 101}}, "academic_scores.math"),
    ({"academic_scores": {"math": -1}}, "academic_scores.math"),
    ({"academic_scores": {"math": "ninety"}}, "academic_scores.math"),
    ({"academic_scores": {"math": "90"}}, "academic_scores.math"),
    ({"academic_scores": {"math": True}}, "academic_scores.math"),
    ({"academic_scores": {"math": None}}, "academic_scores.math"),
    ({"academic_scores": {}}, "academic_scores"),
    ({"academic_scores": [90, 80]}, "academic_scores"),
    ({}, "academic_scores"),
    ({"academic_scores": {"math": 90}, "interests": {"riasec": {"artistic": 120}}}, "interests.riasec.artistic"),
    ({"academic_scores": {"math": 90}, "interests": {"riasec": {"sporty": 50}}}, "interests.riasec.sporty.[key]"),
    ({"academic_scores": {"math": 90}, "habits": {"absence_days": -3}}, "habits.absence_days"),
    ({"academic_scores": {"math": 90}, "habits": {"part_time_job": "yes"}}, "habits.part_time_job"),
    ({"academic_scores": {"math": 90}, "habits": {"sleep": 8}}, "habits.sleep"),
    ({"academic_scores": {"math": 90}, "surprise": 1}, "surprise"),
    ({"academic_scores": {"math": 90}, "top_k": 0}, "top_k"),
    ({"academic_scores": {"math": 90, "Potions": 80}}, "academic_scores.potions"),
    ({"academic_scores": {"math": 90}, "interests": {"keywords": ["quidditch"]}}, "interests.keywords.0"),
]  # fmt: skip


@pytest.mark.parametrize(("student", "field"), BAD_STUDENTS)
def test_every_rule_of_predict_applies_to_each_student(
    client: TestClient, student: dict[str, Any], field: str
) -> None:
    batch = {"outcomes": [record(), record(student=student)]}
    error = assert_error(client.post(OUTCOMES, json=batch), 422, "VALIDATION_ERROR")
    assert [d["row"] for d in error["details"]] == [1] * len(error["details"])
    assert f"outcomes.1.student.{field}" in [d["field"] for d in error["details"]], error
    assert "none was stored" in error["message"]
    assert client.get(STATS).json()["data"]["total"] == 0  # the good row was not stored either


def test_nan_and_infinity_are_refused(client: TestClient) -> None:
    raw = (
        '{"outcomes": [{"student": {"academic_scores": {"math": NaN}}, '
        f'"career": "Doctor", "observed_at": "{TODAY}"}}]}}'
    )
    response = client.post(OUTCOMES, content=raw, headers={"content-type": "application/json"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "outcomes.0.student.academic_scores.math"


def test_one_422_lists_every_bad_row_by_index(client: TestClient) -> None:
    future = (NOW + timedelta(days=2)).isoformat()
    ancient = (NOW - timedelta(days=731)).isoformat()
    batch = [
        record(),
        record(career="Astronaut"),
        record(observed_at=future),
        record(observed_at="2026-11-30T09:00:00"),  # no time zone
        record(),
        record(observed_at=ancient),
        record(student={"academic_scores": {"math": 101}}),
        record(idempotency_key="same"),
        record(idempotency_key="same"),
        record(career="Teacher", student={"academic_scores": {"potions": 3}}),
        record(surprise=1),
    ]
    error = assert_error(client.post(OUTCOMES, json={"outcomes": batch}), 422, "VALIDATION_ERROR")
    by_row = {d["row"]: d for d in error["details"]}
    assert sorted(by_row) == [1, 2, 3, 5, 6, 8, 9, 10]
    assert by_row[1]["type"] == "unknown_career" and by_row[1]["field"] == "outcomes.1.career"
    assert by_row[2]["type"] == "future_timestamp"
    assert by_row[3]["type"] == "timezone_aware"
    assert by_row[5]["type"] == "too_old"
    assert by_row[8]["type"] == "duplicate_idempotency_key"
    assert by_row[9]["field"] == "outcomes.9.student.academic_scores.potions"
    assert by_row[10]["field"] == "outcomes.10.surprise"
    assert error["message"] == "8 of 11 outcomes are invalid; none was stored."
    assert client.get(STATS).json()["data"]["total"] == 0


def test_careers_of_the_catalog_by_id_or_name_are_accepted(client: TestClient) -> None:
    answer = post(client, record(career="Software Engineer"), record(career=" DATA_SCIENTIST "))
    assert answer["stored"] == 2
    assert set(client.get(STATS).json()["data"]["by_career"]) == {
        "Software Engineer",
        "Data Scientist",
    }


@pytest.mark.parametrize(
    "body",
    [{}, {"outcomes": []}, {"outcomes": "x"}, {"outcomes": [record()], "extra": 1}, [record()]],
)
def test_malformed_batches(client: TestClient, body: Any) -> None:
    assert_error(client.post(OUTCOMES, json=body), 422, "VALIDATION_ERROR")


@pytest.mark.parametrize("raw", ["", "not json", "{", "null"])
def test_non_json_bodies(client: TestClient, raw: str) -> None:
    response = client.post(OUTCOMES, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, "VALIDATION_ERROR")


def test_oversized_batches_are_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_outcome_batch=3)
    error = assert_error(
        client.post(OUTCOMES, json={"outcomes": [record()] * 4}), 413, "PAYLOAD_TOO_LARGE"
    )
    assert error["details"] == [{"field": "outcomes", "max_items": 3, "items": 4}]
    assert post(client, *[record()] * 3)["stored"] == 3
    # The byte limit holds as well: MAX_OUTCOME_BATCH x 2 KiB + 64 KiB.
    huge = {"outcomes": [record(subject_id="x" * 200)] * 400}
    assert_error(client.post(OUTCOMES, json=huge), 413, "PAYLOAD_TOO_LARGE")


# --- the store down ----------------------------------------------------------------------------


def test_store_down_answers_503_and_predict_is_unaffected(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        database_url="postgresql+psycopg://postgres@127.0.0.1:9/none", admin_api_keys="admin-key"
    )
    for response in (
        client.post(OUTCOMES, json={"outcomes": [record()]}),
        client.get(STATS),
        client.delete(OUTCOMES, params={"subject_id": "s"}, headers=ADMIN),
    ):
        error = assert_error(response, 503, "STORE_UNAVAILABLE")
        assert response.headers["retry-after"] == "5" and "127.0.0.1" not in error["message"]
    assert client.post("/api/v1/career/predict", json=STUDENT).status_code == 200
    assert client.post("/api/v1/career/analyze", json=STUDENT).status_code == 200
    monitoring = client.get(MONITORING)
    assert monitoring.status_code == 200
    assert monitoring.json()["data"]["live_quality"]["error"]
    assert client.get("/health/ready").status_code == 200


# --- monitoring and jobs -------------------------------------------------------------------------


def test_monitoring_counts_predict_and_analyze_and_can_be_off(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(monitoring_window=20)
    for _ in range(3):
        client.post("/api/v1/career/predict", json=STUDENT)
    client.post("/api/v1/career/analyze", json={**STUDENT, "careers": ["Doctor"]})
    data = client.get(MONITORING).json()["data"]
    assert data["enabled"] is True and data["window"] == {
        "size": 20,
        "requests": 4,
        "min_samples": 10,
    }
    assert data["drift"]["max_psi"] is None  # not enough requests yet
    off = make_client(monitoring_enabled=False)
    off.post("/api/v1/career/predict", json=STUDENT)
    data = off.get(MONITORING).json()["data"]
    assert data["enabled"] is False and data["window"]["requests"] == 0


def test_jobs_are_listed_newest_first_for_admins(loop: TestClient) -> None:
    assert_error(loop.get("/api/v1/career/retrain"), 401, "UNAUTHORIZED")
    assert loop.get("/api/v1/career/retrain", headers=ADMIN).json()["data"] == []


def test_a_store_retrain_needs_outcomes(loop: TestClient) -> None:
    response = loop.post(
        "/api/v1/career/retrain/store", json={"include_base_rows": False}, headers=ADMIN
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "no outcomes" in error["message"]
    assert_error(loop.post("/api/v1/career/retrain/store", json={}), 401, "UNAUTHORIZED")
