"""Retraining jobs: check the upload at once, train in a low-priority child process, gate, promote.

A job lives as a JSON file in CAREER_MODEL_DIR/.jobs/, so every server process sharing the
model directory sees the same jobs, and one lock file there allows one job at a time across
all of them. The child process runs `app.services.career.retrain_worker`; it writes the new
version through ModelStore (temporary directory, then rename) and moves the ACTIVE pointer
only when the candidate passes the quality gate (or `force` is set). Servers notice the new
pointer through their model poller.
"""

import csv
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from app.config import Settings
from app.core.exceptions import (
    Conflict,
    InvalidInput,
    MalformedUpload,
    NotFound,
    PayloadTooLarge,
)
from app.services.career.bundle import ModelStore

logger = logging.getLogger(__name__)

JOBS_DIR = ".jobs"
LOCK = "LOCK"
ACTIVE_STATES = ("queued", "running")
_JOB_ID = re.compile(r"[0-9a-f]{16}")
# A lock whose job file is not written yet is live for this long (the submitter is
# still writing the uploaded rows), not stale.
LOCK_GRACE_SECONDS = 120
MIN_ROWS_PER_CLASS = 10


def parse_csv(data: bytes, *, max_rows: int) -> pd.DataFrame:
    """A CSV upload as a table of strings; 400 with the line for anything unreadable."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MalformedUpload(
            f"The file is not UTF-8 text (first bad byte on line {line}).",
            details=[{"field": "file", "line": line}],
        ) from exc
    if not text.strip():
        raise MalformedUpload("The file is empty.", details=[{"field": "file"}])
    if text.count("\n") > max_rows + 1:
        raise PayloadTooLarge(
            f"The file has more than {max_rows} rows (MAX_TRAINING_ROWS).",
            details=[{"field": "file", "max_rows": max_rows}],
        )
    try:
        frame = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=True, skipinitialspace=True
        )
    except pd.errors.ParserError as exc:
        raise MalformedUpload(
            f"The CSV is malformed: {exc}".strip(), details=[{"field": "file"}]
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise MalformedUpload("The CSV has no columns.", details=[{"field": "file"}]) from exc
    header = next(csv.reader(io.StringIO(text.lstrip("\n"))), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise MalformedUpload(
            f"The CSV header repeats column names: {', '.join(repeated)}.",
            details=[{"field": "file", "line": 1}],
        )
    return frame


def records_frame(records: list[dict[str, Any]], *, max_rows: int) -> pd.DataFrame:
    if len(records) > max_rows:
        raise PayloadTooLarge(
            f"More than {max_rows} records (MAX_TRAINING_ROWS).", details=[{"field": "records"}]
        )
    return pd.DataFrame.from_records(records)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_job(path: Path, job: dict[str, Any]) -> None:
    """Replace a job file atomically, so readers never see half a file."""
    job["updated_at"] = _now()
    fd, tmp = tempfile.mkstemp(prefix=".job-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(job, fh, indent=2, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def release_lock(root: Path, job_id: str) -> None:
    """Remove the job lock, but only while it is this job's."""
    lock = root / JOBS_DIR / LOCK
    if _read_text(lock) == job_id:
        lock.unlink(missing_ok=True)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RetrainJobs:
    """Submits and reports retraining jobs for one model directory."""

    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self.dir = store.root / JOBS_DIR
        self._lock = threading.Lock()

    def submit(
        self, frame: pd.DataFrame, *, mapping: dict[str, str] | None, force: bool, source: str
    ) -> dict[str, Any]:
        """Validate now (422 for unusable tables), then start the job and return it (queued)."""
        from app.services.career.training import prepare_frame  # sklearn: not at start-up

        data = prepare_frame(frame, mapping=mapping, min_rows_per_class=MIN_ROWS_PER_CLASS)
        self.dir.mkdir(parents=True, exist_ok=True)
        job_id = uuid.uuid4().hex[:16]
        with self._lock:
            self._take_lock(job_id)
            try:
                data_path = self.dir / f"{job_id}.csv"
                frame.to_csv(data_path, index=False)
                job: dict[str, Any] = {
                    "id": job_id,
                    "state": "queued",
                    "stage": "queued",
                    "progress": 0.0,
                    "created_at": _now(),
                    "source": source,
                    "force": force,
                    "mapping": mapping or {},
                    "rows": data.report,
                    "metrics": None,
                    "candidate_version": None,
                    "activated": False,
                    "gate": None,
                    "reasons": [],
                    "error": None,
                    "pid": None,
                    "config": {
                        "min_lift": self.settings.retrain_min_lift,
                        "tolerance": self.settings.retrain_tolerance,
                        "min_rows_per_class": MIN_ROWS_PER_CLASS,
                    },
                }
                path = self.dir / f"{job_id}.json"
                write_job(path, job)
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "app.services.career.retrain_worker",
                        str(self.store.root),
                        job_id,
                    ],
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C to the server does not kill the job half-way
                )
            except BaseException:
                (self.dir / LOCK).unlink(missing_ok=True)
                raise
        job["pid"] = process.pid
        threading.Thread(target=self._reap, args=(process, job_id), daemon=True).start()
        logger.info(
            "retrain job %s started (pid %s, %d rows)",
            job_id,
            process.pid,
            data.report["rows_used"],
        )
        return self._public(job)

    def _take_lock(self, job_id: str) -> None:
        lock = self.dir / LOCK
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not self._lock_is_stale(lock):
                holder = _read_text(lock)
                raise Conflict(
                    f"Retraining job {holder} is still running; one job runs at a time.",
                    details=[{"job_id": holder}],
                ) from None
            lock.unlink(missing_ok=True)  # left by a job whose process died
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:  # another process took it over first
                raise Conflict("Another retraining job has just started.") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(job_id)

    def _lock_is_stale(self, lock: Path) -> bool:
        holder = _read_text(lock)
        current = self._read(holder)
        if current is None:  # no job file yet: the submitter may still be writing it
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > LOCK_GRACE_SECONDS
        if current["state"] not in ACTIVE_STATES:
            return True
        return current.get("pid") is not None and not _pid_alive(current["pid"])

    def _reap(self, process: subprocess.Popen[bytes], job_id: str) -> None:
        """Wait for the worker; if it died without a final state, record that."""
        code = process.wait()
        job = self._read(job_id)
        if job and job["state"] in ACTIVE_STATES:
            job.update(state="failed", error=f"the training process exited with code {code}")
            write_job(self.dir / f"{job_id}.json", job)
            release_lock(self.store.root, job_id)

    def _read(self, job_id: str) -> dict[str, Any] | None:
        if not _JOB_ID.fullmatch(job_id):
            return None
        try:
            job: dict[str, Any] = json.loads(
                (self.dir / f"{job_id}.json").read_text(encoding="utf-8")
            )
        except (OSError, ValueError):
            return None
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        job = self._read(job_id)
        if job is None:
            raise NotFound(f"Retraining job '{job_id}' does not exist.")
        if job["state"] in ACTIVE_STATES and job.get("pid") and not _pid_alive(job["pid"]):
            job.update(state="failed", error="the training process is gone")
        return self._public(job)

    @staticmethod
    def _public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k not in ("pid", "config")}


def check_mapping(raw: object) -> dict[str, str] | None:
    """A mapping from a form field or JSON: an object of column name -> feature or 'label'."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                "mapping is not valid JSON.", details=[{"field": "mapping", "message": str(exc)}]
            ) from exc
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise InvalidInput(
            "mapping must be a JSON object of column name -> feature name or 'label'.",
            details=[{"field": "mapping", "message": "expected an object of strings"}],
        )
    return raw
