"""Faults around retraining, through HTTP: a killed server, a full disk, a corrupt ACTIVE
file, and an activation made while a job trains."""

import json
import os
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.services.career.retrain import LOST_REASON
from tests.api.test_registry import ADMIN, _second_version, start, students_csv, wait
from tests.conftest import serve, wait_for_models

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def training_data(model_dir: Path) -> list[Path]:
    return sorted((model_dir / ".jobs").glob("*.csv"))


def lock_holder(model_dir: Path) -> str | None:
    lock = model_dir / ".jobs" / "LOCK"
    return lock.read_text() if lock.exists() else None


def job_on_disk(model_dir: Path, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = json.loads((model_dir / ".jobs" / f"{job_id}.json").read_text())
    return job


def until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    """No such process, or only its zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


# --- SIGKILL of the server ------------------------------------------------------------------


def test_sigkill_of_the_server_alone_fails_the_job_its_worker_recorded(
    career_model_dir: Path, tmp_path: Path
) -> None:
    """The worker outlives its server by a second: it records why and deletes its rows."""
    active = (career_model_dir / "ACTIVE").read_text()
    server, url = serve(career_model_dir, tmp_path)
    try:
        response = httpx.post(
            f"{url}/api/v1/career/retrain",
            files={"file": ("d.csv", students_csv(n=3000), "text/csv")},
            headers=ADMIN,
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["data"]["id"]
        until(lambda: job_on_disk(career_model_dir, job_id)["state"] == "running")
        worker = job_on_disk(career_model_dir, job_id)["pid"]
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        server.kill()
    until(lambda: _gone(worker), timeout=10)  # alone, the worker stops within a second

    server, url = serve(career_model_dir, tmp_path)
    try:
        job = httpx.get(f"{url}/api/v1/career/retrain/{job_id}", headers=ADMIN).json()["data"]
        assert job["state"] == "failed", job
        assert job["error"] == "the server that started the job stopped"
        assert training_data(career_model_dir) == []
        assert lock_holder(career_model_dir) is None
        assert (career_model_dir / "ACTIVE").read_text() == active
        served = httpx.get(f"{url}/api/v1/career/model").json()["data"]["version"]
        assert served == active.strip()
        # The lock is free: the next job starts (and is stopped with the server).
        again = httpx.post(
            f"{url}/api/v1/career/retrain",
            files={"file": ("d.csv", students_csv(n=300), "text/csv")},
            headers=ADMIN,
        )
        assert again.status_code == 202, again.text
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_job_whose_pod_died_is_taken_over_by_another_server(
    career_model_dir: Path, tmp_path: Path
) -> None:
    """A pod killed whole (server and worker: scale-down past its grace, eviction, OOM):
    another server sharing the model directory, already running, notices within a sweep
    and trains the job again from the rows on disk, to its end."""
    first, url = serve(career_model_dir, tmp_path / "a")
    second, second_url = serve(career_model_dir, tmp_path / "b", RETRAIN_SWEEP_SECONDS="0.2")
    try:
        response = httpx.post(
            f"{url}/api/v1/career/retrain",
            files={"file": ("d.csv", students_csv(n=3000), "text/csv")},
            headers={**ADMIN, "Idempotency-Key": "nightly-2026-12-02"},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["data"]["id"]
        until(lambda: job_on_disk(career_model_dir, job_id)["state"] == "running")
        worker = job_on_disk(career_model_dir, job_id)["pid"]
        os.kill(worker, signal.SIGKILL)  # the container dies whole: worker and server
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        # Within a sweep the second server starts the job again, in a worker of its own.
        until(lambda: job_on_disk(career_model_dir, job_id)["state"] == "running", timeout=30)
        until(lambda: job_on_disk(career_model_dir, job_id)["pid"] not in (None, worker))
        record = job_on_disk(career_model_dir, job_id)
        assert record["attempts"] == 2 and not _gone(record["pid"])
        assert training_data(career_model_dir)  # its rows, still there for the new worker
        job = httpx.get(f"{second_url}/api/v1/career/retrain/{job_id}", headers=ADMIN)
        job = job.json()["data"]
        assert job["state"] in ("queued", "running") and job["error"] is None
        assert job["reasons"] == [f"attempt 1: {LOST_REASON}"]
        # The client's retry of that submission gets the same job, not a 409 or a second job.
        again = httpx.post(
            f"{second_url}/api/v1/career/retrain",
            files={"file": ("d.csv", students_csv(n=3000), "text/csv")},
            headers={**ADMIN, "Idempotency-Key": "nightly-2026-12-02"},
        )
        assert again.status_code == 202 and again.json()["data"]["id"] == job_id
        # The same key with other data is a mistake, not a retry.
        other = httpx.post(
            f"{second_url}/api/v1/career/retrain",
            files={"file": ("d.csv", students_csv(n=3000, seed=5), "text/csv")},
            headers={**ADMIN, "Idempotency-Key": "nightly-2026-12-02"},
        )
        assert other.status_code == 409, other.text
        # The takeover's worker finishes it (a killed pod's job is not lost).
        until(
            lambda: job_on_disk(career_model_dir, job_id)["state"] not in ("queued", "running"),
            timeout=300,
        )
        assert job_on_disk(career_model_dir, job_id)["state"] in ("succeeded", "rejected")
        assert job_on_disk(career_model_dir, job_id)["reasons"][0] == f"attempt 1: {LOST_REASON}"
    finally:
        for server in (first, second):
            server.kill()
            server.wait(timeout=20)


# --- a full disk ----------------------------------------------------------------------------

# Loaded into the worker process through PYTHONPATH: the disk fills up while the model is
# written, and stays full until something is deleted (the job's data file is the candidate).
_FULL_DISK = textwrap.dedent(
    """
    import errno, os
    from pathlib import Path
    import joblib
    from app.services.career import job_files

    full = False
    write_job = job_files.write_job

    def dump(value, filename, *args, **kwargs):
        global full
        Path(filename).write_bytes(b"half a pick")
        full = True
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    def write_job_on_a_full_disk(path, job):
        if full and any(Path(path).parent.glob("*.csv")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write_job(path, job)

    joblib.dump = dump
    job_files.write_job = write_job_on_a_full_disk
    """
)


def test_disk_full_during_a_version_write(
    make_client: Any, career_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_FULL_DISK)
    monkeypatch.setenv("PYTHONPATH", f"{hook}{os.pathsep}{REPO}")
    admin: TestClient = make_client(admin_api_keys="admin-key", model_poll_seconds=0.2)
    before = admin.get("/api/v1/career/model").json()["data"]["version"]
    versions = sorted(p.name for p in career_model_dir.iterdir() if p.is_dir())

    job = wait(admin, start(admin, students_csv(n=300), force="true")["id"])

    assert job["state"] == "failed", job
    assert "No space left on device" in job["error"], job
    assert "the active model is unchanged" in job["error"]
    assert job["activated"] is False
    assert (career_model_dir / "ACTIVE").read_text().strip() == before
    # No new version, and no half-written one in a staging directory.
    assert sorted(p.name for p in career_model_dir.iterdir() if p.is_dir()) == [".jobs", *versions]
    assert training_data(career_model_dir) == []
    assert lock_holder(career_model_dir) is None
    assert admin.get("/api/v1/career/model").json()["data"]["version"] == before


# --- a corrupt ACTIVE file ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x9f\xff\xfe\x13", b"retrain-20990101T000000000000Z-deadbeef\n"],
    ids=["empty", "not-text", "names-a-missing-version"],
)
def test_corrupt_active_file_at_start_up(
    make_client: Any, career_model_dir: Path, content: bytes
) -> None:
    first: TestClient = make_client(admin_api_keys="admin-key")
    good = first.get("/api/v1/career/model").json()["data"]["version"]
    # Every activation (and promotion) also records the version in LAST_GOOD.
    assert first.post(f"/api/v1/career/models/{good}/activate", headers=ADMIN).status_code == 200
    first.__exit__(None, None, None)
    (career_model_dir / "ACTIVE").write_bytes(content)

    client: TestClient = make_client()

    career = client.get("/health").json()["data"]["models"]["career"]
    assert career["state"] == "loaded" and career["version"] == good, career
    assert f"Serving the last good version, {good}" in career["error"]
    assert "ACTIVE" in career["error"] or "cannot be loaded" in career["error"]
    assert client.get("/health/ready").status_code == 200
    student = {"academic_scores": {"math": 80}}
    predicted = client.post("/api/v1/career/predict", json=student).json()["data"]
    assert predicted["model_version"] == good
    assert (career_model_dir / "ACTIVE").read_bytes() == content  # left for a person to see


def test_corrupt_active_file_with_no_version_activated_before(
    make_client: Any, career_model_dir: Path
) -> None:
    (career_model_dir / "ACTIVE").write_bytes(b"")  # and no LAST_GOOD: nothing to fall back on
    client: TestClient = make_client()
    career = client.get("/health").json()["data"]["models"]["career"]
    assert career["state"] == "unavailable"
    assert career["error"] == "The ACTIVE pointer is unusable: ACTIVE is empty"
    assert client.get("/health/ready").status_code == 503


def test_corrupt_active_file_while_serving(make_client: Any, career_model_dir: Path) -> None:
    client: TestClient = make_client(model_poll_seconds=0.05)
    good = client.get("/api/v1/career/model").json()["data"]["version"]
    (career_model_dir / "ACTIVE").write_bytes(b"\x00\x9f\xff")

    def career() -> dict[str, Any]:
        data: dict[str, Any] = wait_for_models(client)["models"]["career"]
        return data

    until(lambda: career()["error"] is not None, timeout=5)
    assert career()["version"] == good
    assert "ACTIVE pointer is unusable" in career()["error"]
    assert client.get("/api/v1/career/model").json()["data"]["version"] == good
    # Repaired (here by hand), the warning goes.
    (career_model_dir / "ACTIVE").write_text(good + "\n")
    until(lambda: career()["error"] is None, timeout=5)


# --- promotion is compare-and-set -----------------------------------------------------------


def test_an_activation_during_training_wins(make_client: Any, career_model_dir: Path) -> None:
    admin: TestClient = make_client(admin_api_keys="admin-key", model_poll_seconds=0.2)
    original = admin.get("/api/v1/career/model").json()["data"]["version"]
    other = _second_version(career_model_dir)
    job_id = start(admin, students_csv(n=300), force="true")["id"]
    # A rollback made while the job trains (the worker needs seconds to import and train).
    response = admin.post(f"/api/v1/career/models/{other}/activate", headers=ADMIN)
    assert response.status_code == 200, response.text

    job = wait(admin, job_id)

    assert job["state"] == "succeeded", job
    assert job["activated"] is False
    assert job["base_version"] == original
    assert other in job["not_activated_reason"] and job["candidate_version"]
    assert (career_model_dir / "ACTIVE").read_text().strip() == other
    assert admin.get("/api/v1/career/model").json()["data"]["version"] == other
    listed = [v["version"] for v in admin.get("/api/v1/career/models").json()["data"]]
    assert job["candidate_version"] in listed  # kept, for activating by hand


# --- shutdown -------------------------------------------------------------------------------


def test_shutdown_stops_the_worker_and_records_the_job(
    make_client: Any, career_model_dir: Path
) -> None:
    admin: TestClient = make_client(admin_api_keys="admin-key")
    job_id = start(admin, students_csv(n=1500))["id"]
    until(lambda: job_on_disk(career_model_dir, job_id)["state"] == "running")
    worker = job_on_disk(career_model_dir, job_id)["pid"]

    admin.__exit__(None, None, None)  # the lifespan ends, as on SIGTERM to the server

    assert _gone(worker)
    job = job_on_disk(career_model_dir, job_id)
    assert job["state"] == "failed" and job["error"] == "the service shut down during training"
    assert training_data(career_model_dir) == []
    assert lock_holder(career_model_dir) is None
