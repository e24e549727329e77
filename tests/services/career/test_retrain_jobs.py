"""Retraining jobs on disk: the data file, the lock, start-up recovery, the worker's life.

These start real worker processes; each test stops its worker (close) or lets it finish.
"""

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from app.config import Settings
from app.core.exceptions import Conflict
from app.domain.records import JobConfig, JobRecord
from app.services.career import job_files, job_lock, retrain
from app.services.career.bundle import VersionRegistry
from app.services.career.catalog import default_catalog
from app.services.career.job_files import data_path, read_training_rows, write_training_rows
from app.services.career.job_lock import JobLock, process_start
from app.services.career.preparation import prepare_frame
from app.services.career.retrain import SHUTDOWN_REASON, RetrainJobs, child_environment
from app.services.career.synthetic import generate_students

pytestmark = pytest.mark.integration

PERSONAL = ("Zebulon", "Quiggley", "@example.test", "+44 7700", "S-0")


def students(n: int = 300, seed: int = 21) -> pd.DataFrame:
    """Synthetic students with the personal columns a real export has."""
    frame = generate_students(default_catalog(), n, seed=seed)
    frame["student_id"] = [f"S-{i:05d}" for i in range(n)]
    frame["first_name"] = "Zebulon"
    frame["last_name"] = "Quiggley"
    frame["email"] = [f"pupil{i}@example.test" for i in range(n)]
    frame["phone"] = [f"+44 7700 9{i:05d}" for i in range(n)]
    return frame


@pytest.fixture
def jobs(make_settings: Callable[..., Settings], career_model_dir: Path) -> Iterator[RetrainJobs]:
    service = RetrainJobs(make_settings(), VersionRegistry(career_model_dir))
    yield service
    service.close(timeout=5)


def job_file(model_dir: Path, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = json.loads((model_dir / ".jobs" / f"{job_id}.json").read_text())
    return job


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.05)


def data_files(model_dir: Path) -> list[Path]:
    return sorted((model_dir / ".jobs").glob("*.csv"))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- the data file -------------------------------------------------------------------------


def test_data_file_holds_features_and_label_only_with_mode_0600(
    jobs: RetrainJobs, career_model_dir: Path
) -> None:
    previous = os.umask(0)  # even a permissive umask gives nobody else a way in
    try:
        job = jobs.submit(students(), mapping=None, force=False, source="csv")
    finally:
        os.umask(previous)
    (path,) = data_files(career_model_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.splitlines()[0].split(",") == [*job.rows["features"], "label", "_group"]
    for personal in PERSONAL:
        assert personal not in text, personal


def test_training_rows_read_back_exactly() -> None:
    frame = students(n=400)
    frame.loc[:30, "label"] = "NA"  # a career named like a missing value stays a career
    frame.loc[5:9, "math"] = np.nan
    data = prepare_frame(frame, min_rows_per_class=10)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"rows-{os.getpid()}.csv"
    try:
        write_training_rows(path, data)
        job = JobRecord(
            id="0123456789abcdef",
            state="queued",
            rows=data.report,
            config=JobConfig(
                min_lift=0,
                tolerance=0,
                min_rows_per_class=10,
                feature_spec=data.spec.to_list(),
                data_sha256=data.data_hash,
            ),
        )
        back = read_training_rows(path, job)
    finally:
        path.unlink(missing_ok=True)
    np.testing.assert_array_equal(back.X, data.X)  # bit for bit, NaN where NaN
    assert back.y.tolist() == data.y.tolist() and "NA" in back.y.tolist()
    assert back.spec.names == data.spec.names and back.data_hash == data.data_hash
    # Without the identities, the grouped split is still the one the upload gives.
    split = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    original = next(split.split(data.X, data.y, data.groups))
    replayed = next(split.split(back.X, back.y, back.groups))
    assert all((a == b).all() for a, b in zip(original, replayed, strict=True))


def test_popen_failure_deletes_the_data_and_frees_the_lock(
    jobs: RetrainJobs, career_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_processes(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(retrain.subprocess, "Popen", no_processes)
    with pytest.raises(OSError):
        jobs.submit(students(), mapping=None, force=False, source="csv")
    assert data_files(career_model_dir) == []
    assert jobs.lock.holder() is None
    (record,) = (career_model_dir / ".jobs").glob("*.json")
    job = json.loads(record.read_text())
    assert job["state"] == "failed" and "could not start" in job["error"]
    assert stat.S_IMODE(record.stat().st_mode) == 0o600


def test_reaper_records_a_killed_worker_and_deletes_its_data(
    jobs: RetrainJobs, career_model_dir: Path
) -> None:
    job_id = jobs.submit(students(n=1500), mapping=None, force=False, source="csv").id
    wait_for(lambda: job_file(career_model_dir, job_id)["state"] == "running")
    os.kill(job_file(career_model_dir, job_id)["pid"], signal.SIGKILL)
    wait_for(lambda: job_file(career_model_dir, job_id)["state"] == "failed")
    assert "code -9" in jobs.get(job_id).error
    assert data_files(career_model_dir) == []
    assert jobs.lock.holder() is None


# --- start-up recovery ---------------------------------------------------------------------


def _leave_job(model_dir: Path, job_id: str, lock: str | dict[str, Any], **job: Any) -> None:
    jobs_dir = model_dir / ".jobs"
    jobs_dir.mkdir(exist_ok=True)
    record = {"id": job_id, "state": "running", "pid": None, "error": None, **job}
    (jobs_dir / f"{job_id}.json").write_text(json.dumps(record))
    (jobs_dir / f"{job_id}.csv").write_text("math,label,email\n90,Doctor,someone@example.test\n")
    (jobs_dir / "LOCK").write_text(lock if isinstance(lock, str) else json.dumps(lock))


@pytest.mark.parametrize(
    "case", ["running, pid reused", "queued without a pid", "left by the previous version"]
)
def test_start_up_fails_dead_jobs_and_recovers_the_lock(
    make_settings: Callable[..., Settings], career_model_dir: Path, case: str
) -> None:
    job_id = "0123456789abcdef"
    me = os.getpid()  # a live process that is not the job's worker: a reused pid
    here = job_lock.namespace_id()  # this boot and pid namespace, where /proc can judge
    if case == "running, pid reused":
        stale = {"job_id": job_id, "pid": me, "start": f"{here}:1"}
        _leave_job(career_model_dir, job_id, stale, pid=me, pid_start=f"{here}:1")
    elif case == "queued without a pid":
        stale = {"job_id": job_id, "pid": dead_pid(), "start": f"{here}:2"}
        _leave_job(career_model_dir, job_id, stale, state="queued")
    else:  # LOCK held the bare job id, the job only a pid
        _leave_job(career_model_dir, job_id, job_id, pid=me)

    jobs = RetrainJobs(make_settings(), VersionRegistry(career_model_dir))

    job = job_file(career_model_dir, job_id)
    assert job["state"] == "failed"
    assert "gone when the service started" in job["error"]
    assert data_files(career_model_dir) == []
    assert jobs.lock.holder() is None
    jobs.lock.take("fedcba9876543210")  # no 409: the next job may start


def test_start_up_leaves_a_live_job_alone(
    make_settings: Callable[..., Settings], career_model_dir: Path
) -> None:
    job_id = "0123456789abcdef"
    me = {"pid": os.getpid(), "start": process_start(os.getpid())}
    _leave_job(
        career_model_dir, job_id, {"job_id": job_id, **me}, pid=me["pid"], pid_start=me["start"]
    )
    orphan = career_model_dir / ".jobs" / "aaaaaaaaaaaaaaaa.csv"
    orphan.write_text("math,label\n1,Doctor\n")

    jobs = RetrainJobs(make_settings(), VersionRegistry(career_model_dir))

    assert job_file(career_model_dir, job_id)["state"] == "running"
    assert data_files(career_model_dir) == [career_model_dir / ".jobs" / f"{job_id}.csv"]
    with pytest.raises(Conflict, match=job_id):
        jobs.lock.take("fedcba9876543210")


def test_taking_over_a_stale_lock_is_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    JobLock(tmp_path).take("0" * 16)
    (tmp_path / "LOCK").write_text(
        json.dumps({"job_id": "0" * 16, "pid": dead_pid(), "start": f"{job_lock.namespace_id()}:9"})
    )
    judge = job_lock.same_process

    def slow_judge(pid: int | None, start: str | None) -> bool:
        time.sleep(0.05)  # widens the gap between "it is stale" and "it is mine"
        return judge(pid, start)

    monkeypatch.setattr(job_lock, "same_process", slow_judge)
    barrier = threading.Barrier(6)
    winners: list[str] = []

    def contend(n: int) -> None:
        job_id = f"{n:016x}"
        barrier.wait()
        try:
            JobLock(tmp_path).take(job_id)
        except Conflict:
            return
        winners.append(job_id)

    threads = [threading.Thread(target=contend, args=(n + 1,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1, winners
    assert JobLock(tmp_path).holder()["job_id"] == winners[0]  # type: ignore[index]


def test_process_start_tells_a_reused_pid_apart() -> None:
    me = process_start(os.getpid())
    assert me is not None and me == process_start(os.getpid())
    assert process_start(dead_pid()) is None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_start(child.pid) not in (None, me)
    finally:
        child.kill()
        child.wait()


# --- the worker process --------------------------------------------------------------------


def test_worker_gets_no_secrets(jobs: RetrainJobs, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "API_KEYS": "gw-secret",
        "ADMIN_API_KEYS": "admin-secret",
        "HF_TOKEN": "hf-secret",
        "DB_PASSWORD": "db-secret",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SKILL_COMPASS_MARKER", "kept")
    job_id = jobs.submit(students(), mapping=None, force=False, source="csv").id
    pid = jobs._children[job_id].pid
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {item.split(b"=", 1)[0].decode() for item in environ if item}
    assert "SKILL_COMPASS_MARKER" in names and "PATH" in names
    assert not names & set(secrets)
    assert not any(value.encode() in b"".join(environ) for value in secrets.values())
    assert set(child_environment({"API_KEYS": "x", "HOME": "/h"})) == {"HOME"}


def test_close_stops_the_worker_and_records_the_job(
    jobs: RetrainJobs, career_model_dir: Path
) -> None:
    job_id = jobs.submit(students(n=1500), mapping=None, force=False, source="csv").id
    process = jobs._children[job_id]
    wait_for(lambda: job_file(career_model_dir, job_id)["state"] == "running")
    started = time.monotonic()
    jobs.close(timeout=10)
    assert time.monotonic() - started < 5
    assert process.returncode == 1  # it recorded the job and exited; no SIGKILL was needed
    job = jobs.get(job_id)
    assert job.state == "failed" and job.error == SHUTDOWN_REASON
    assert data_files(career_model_dir) == []
    assert jobs.lock.holder() is None


def test_repeated_columns_are_found_in_linear_time() -> None:
    """40,000 columns took 21 s on a server thread with a count per column."""
    import pytest

    from app.core.exceptions import MalformedUpload
    from app.services.career.tables import parse_csv

    header = ",".join([f"c{i}" for i in range(40_000)] + ["c7", "c9"])
    started = time.perf_counter()
    with pytest.raises(MalformedUpload) as refused:
        parse_csv((header + "\n" + ",".join(["1"] * 40_002) + "\n").encode(), max_rows=10)
    assert time.perf_counter() - started < 2
    assert "c7" in refused.value.message and "c9" in refused.value.message


def test_a_lock_held_on_another_host_is_respected_until_its_heartbeat_stops(
    make_settings: Callable[..., Settings], career_model_dir: Path
) -> None:
    """Replicas share CAREER_MODEL_DIR: a job running in another container or host cannot
    be checked in this /proc. It holds while its worker touches the lock; it is taken
    over once the lock has not been touched for FOREIGN_STALE_S."""
    job_id = "0123456789abcdef"
    elsewhere = "another-boot/pid:[1]:12345"
    assert not job_lock.is_here(elsewhere) and job_lock.is_here(process_start(os.getpid()))
    holder = {"job_id": job_id, "pid": os.getpid(), "start": elsewhere}
    _leave_job(career_model_dir, job_id, holder, pid=7, pid_start=elsewhere)

    jobs = RetrainJobs(make_settings(), VersionRegistry(career_model_dir))  # start-up recovery

    assert job_file(career_model_dir, job_id)["state"] == "running"
    assert data_files(career_model_dir) == [career_model_dir / ".jobs" / f"{job_id}.csv"]
    with pytest.raises(Conflict, match=job_id):
        jobs.lock.take("fedcba9876543210")
    jobs.lock.beat(job_id)
    old = time.time() - job_lock.FOREIGN_STALE_S - 5
    os.utime(jobs.lock.path, (old, old))  # the heartbeat stopped: that host is gone
    jobs.lock.take("fedcba9876543210")
    assert jobs.lock.holder()["job_id"] == "fedcba9876543210"  # type: ignore[index]


def test_json_records_with_ever_new_keys_are_refused_in_linear_time() -> None:
    """6,000 records with a key each made a 6,000 x 6,000 table (2.4 s, +276 MB)."""
    from app.core.exceptions import InvalidInput
    from app.services.career.tables import MAX_RECORD_COLUMNS, records_frame

    records = [{f"k{i}": 1} for i in range(20_000)]
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match=f"more than {MAX_RECORD_COLUMNS} distinct columns"):
        records_frame(records, max_rows=200_000)
    assert time.perf_counter() - started < 0.5
    frame = records_frame([{"math": 90, "label": "Doctor"}, {"label": "Nurse"}], max_rows=10)
    assert list(frame.columns) == ["math", "label"] and len(frame) == 2


# --- what job records keep, and for how long ---------------------------------------------


def _aged(path: Path, days: float, **record: Any) -> Path:
    when = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")
    if record:
        path.write_text(json.dumps({"created_at": when, "updated_at": when, **record}))
    old = time.time() - days * 86400
    os.utime(path, (old, old))
    return path


def test_expired_records_go_live_and_recent_ones_stay(
    make_settings: Callable[..., Settings], career_model_dir: Path
) -> None:
    jobs_dir = career_model_dir / ".jobs"
    jobs_dir.mkdir()
    me = {"pid": os.getpid(), "start": process_start(os.getpid())}
    live = "1" * 16  # running for 40 days, its worker still alive: never expired
    (jobs_dir / "LOCK").write_text(json.dumps({"job_id": live, **me}))
    kept = [
        _aged(jobs_dir / f"{live}.json", 40, id=live, state="running", pid_start=me["start"], **me),
        _aged(jobs_dir / f"{'2' * 16}.json", 6, id="2" * 16, state="succeeded"),
        _aged(jobs_dir / "notes.json", 40, note="not a job record"),
    ]
    gone = [
        _aged(jobs_dir / f"{'3' * 16}.json", 8, id="3" * 16, state="rejected"),
        _aged(jobs_dir / f"{'4' * 16}.json", 8, id="4" * 16, state="failed", updated_at="?"),
        _aged(jobs_dir / f"{'5' * 16}.json", 8, id="5" * 16, state="succeeded", updated_at=""),
    ]
    garbage = jobs_dir / f"{'6' * 16}.json"
    garbage.write_bytes(b"\x00 not json")
    gone.append(_aged(garbage, 8))
    half_written = jobs_dir / f".{'7' * 16}.json-x1y2z3"
    half_written.write_text("{")
    gone.append(_aged(half_written, 8))

    jobs = RetrainJobs(
        make_settings(retrain_job_retention_days=7), VersionRegistry(career_model_dir)
    )

    assert [p for p in kept if not p.exists()] == []
    assert [p for p in gone if p.exists()] == []
    assert job_file(career_model_dir, live)["state"] == "running"
    assert jobs.expire() == 0  # nothing more to do
    # Records left by versions that wrote them 0644 are made private at start-up.
    assert stat.S_IMODE(kept[1].stat().st_mode) == 0o600


def test_a_failed_job_records_the_kind_of_error_not_its_message(
    jobs: RetrainJobs, career_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.services.career import retrain_worker

    def noisy_training(*args: Any, **kwargs: Any) -> None:
        raise ValueError("y contains previously unseen labels: ['pupil1@example.test']")

    monkeypatch.setattr(retrain.subprocess, "Popen", _no_worker)
    monkeypatch.setattr(retrain_worker, "train_model", noisy_training)
    with pytest.raises(OSError):
        jobs.submit(students(), mapping=None, force=False, source="csv")
    (record,) = (career_model_dir / ".jobs").glob("*.json")
    job_id = record.stem
    # The worker's run, in this process: a record and data file as the server leaves them.
    job = job_files.read_job(record)
    assert job is not None
    job.state, job.error = "queued", None
    job_files.write_job(record, job)
    write_training_rows(
        job_files.data_path(career_model_dir, job_id), prepare_frame(students(), mapping=None)
    )

    retrain_worker.run(career_model_dir, job_id)

    job_data = job_file(career_model_dir, job_id)
    assert job_data["state"] == "failed"
    assert job_data["error"].startswith("ValueError while ")
    assert "example.test" not in record.read_text()
    assert data_files(career_model_dir) == []


def _no_worker(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


CONFIG = {
    "min_lift": 0.05,
    "tolerance": 0.02,
    "min_rows_per_class": 5,
    "feature_spec": [],
    "data_sha256": "0" * 64,
}


@pytest.mark.parametrize("case", ["its rows are gone", "its attempts are spent"])
def test_a_lost_job_that_cannot_be_taken_over_is_failed_with_the_reason(
    jobs: RetrainJobs, career_model_dir: Path, case: str
) -> None:
    """The sweep never leaves a job `running` with no process on it: when it cannot start it
    again, it records why. (The takeover itself: tests/api/test_retrain_faults.py.)"""
    job_id = "00112233445566aa"
    here = job_lock.namespace_id()
    stale = {"job_id": job_id, "pid": dead_pid(), "start": f"{here}:3"}
    attempts = retrain.MAX_ATTEMPTS if case == "its attempts are spent" else 1
    _leave_job(
        career_model_dir, job_id, stale, pid=stale["pid"], pid_start=stale["start"],
        config=CONFIG, attempts=attempts,
    )  # fmt: skip
    if case == "its rows are gone":
        data_path(career_model_dir, job_id).unlink()

    jobs.sweep()

    job = job_file(career_model_dir, job_id)
    assert job["state"] == "failed"
    assert job["error"].startswith(retrain.LOST_REASON)
    if case == "its attempts are spent":
        assert job["error"].endswith(f", {retrain.MAX_ATTEMPTS} times")
    assert data_files(career_model_dir) == [] and jobs.lock.holder() is None


def test_the_sweep_leaves_live_and_foreign_jobs_alone(
    jobs: RetrainJobs, career_model_dir: Path
) -> None:
    """A job on another host whose heartbeat is fresh is that host's: not taken over."""
    job_id = "00112233445566bb"
    foreign = {"job_id": job_id, "pid": 1, "start": "another-boot/pid:[1]:7"}
    _leave_job(career_model_dir, job_id, foreign, pid=1, pid_start=foreign["start"], config=CONFIG)
    jobs.sweep()
    assert job_file(career_model_dir, job_id)["state"] == "running"
    assert jobs.lock.holder() == foreign
