"""Retraining jobs: check the upload at once, train in a low-priority child process, gate, promote.

A job lives as a JSON file in CAREER_MODEL_DIR/.jobs/, so every server process sharing the
model directory sees the same jobs, and one lock file there allows one job at a time across
all of them. The child process runs `app.services.career.retrain_worker`; it writes the new
version through ModelStore (temporary directory, then rename) and moves the ACTIVE pointer
only when the candidate passes the quality gate (or `force` is set) and ACTIVE still names
the version the job started from. Servers notice the new pointer through their model poller.

The rows a job trains on are the only copy of uploaded data on disk: the prepared features
and label (no names, emails or ids), mode 0600, deleted however the job ends. A job's
process is identified by pid *and* start time, so a recycled pid never keeps a dead job alive.
"""

import csv
import fcntl
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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
from app.utils.files import atomic_write

if TYPE_CHECKING:  # training imports sklearn, which the server loads only with a model
    from app.services.career.training import PreparedData

logger = logging.getLogger(__name__)

JOBS_DIR = ".jobs"
LOCK = "LOCK"
# Every change of LOCK holds an exclusive flock on this file: judging a lock stale and
# taking it over is one step, whichever processes race for it.
LOCK_GUARD = "LOCK.guard"
# A lock held from another container or host (replicas sharing CAREER_MODEL_DIR) cannot
# be checked in /proc: its worker touches it every HEARTBEAT_S, and it counts as stale
# once untouched for FOREIGN_STALE_S.
HEARTBEAT_S = 10.0
FOREIGN_STALE_S = 120.0
ACTIVE_STATES = ("queued", "running")
_JOB_ID = re.compile(r"[0-9a-f]{16}")
MIN_ROWS_PER_CLASS = 10
LABEL = "label"  # training.LABEL, without importing sklearn here
# In a job's data file: students numbered in the order of their identities, so the
# worker's grouped splits are exactly those the upload gives (the identities stay behind).
GROUP = "_group"
# Environment variables the worker does not get: keys, tokens, passwords. Training needs
# none, and a process's environment is readable by its user in /proc.
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL|PRIVATE", re.IGNORECASE)
SHUTDOWN_REASON = "the service shut down during training"
STOP_SECONDS = 10.0


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
    repeated = sorted(name for name, n in Counter(header).items() if n > 1)  # linear
    if repeated:
        raise MalformedUpload(
            f"The CSV header repeats column names: {', '.join(repeated)}.",
            details=[{"field": "file", "line": 1}],
        )
    return frame


# Most distinct keys across JSON records: N records with N distinct keys would make an
# N x N table (6,000 records of 80 KB took 2.4 s and +276 MB); real data has a few dozen.
MAX_RECORD_COLUMNS = 500


def records_frame(records: list[dict[str, Any]], *, max_rows: int) -> pd.DataFrame:
    if len(records) > max_rows:
        raise PayloadTooLarge(
            f"More than {max_rows} records (MAX_TRAINING_ROWS).", details=[{"field": "records"}]
        )
    columns: dict[str, None] = {}
    for record in records:  # linear, and it stops at the first key too many
        for key in record:
            if key not in columns:
                if len(columns) == MAX_RECORD_COLUMNS:
                    raise InvalidInput(
                        f"The records have more than {MAX_RECORD_COLUMNS} distinct columns.",
                        details=[{"field": "records", "max_columns": MAX_RECORD_COLUMNS}],
                    )
                columns[key] = None
    return pd.DataFrame.from_records(records, columns=list(columns))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_job(path: Path, job: dict[str, Any]) -> None:
    """Replace a job file atomically, so readers never see half a file."""
    job["updated_at"] = _now()
    atomic_write(path, json.dumps(job, indent=2, sort_keys=True).encode(), mode=0o644)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


# -- processes --------------------------------------------------------------------------------


def _boot_id() -> str:
    return _read_text(Path("/proc/sys/kernel/random/boot_id")) or "boot"


def _where() -> str:
    """This kernel boot and pid namespace: where a pid means something. Pods on one node
    share the boot id but not the namespace; other hosts share neither."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "pidns"
    return f"{_boot_id()}/{namespace}"


def is_here(start: str | None) -> bool:
    """Was this process identity recorded in this boot and pid namespace (so /proc can
    tell whether it still runs)?"""
    return start is not None and start.rsplit(":", 1)[0] == _where()


def process_start(pid: int | None) -> str | None:
    """Who a pid is: boot id and start time (/proc/<pid>/stat field 22), or None when no
    such process runs (zombies included). A recycled pid gets another start time."""
    if not pid or pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        if Path("/proc/self/stat").exists():
            return None
        return _start_without_proc(pid)
    fields = stat[stat.rfind(")") + 2 :].split()  # the name in (...) may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return f"{_where()}:{fields[19]}"


def _start_without_proc(pid: int) -> str | None:
    """No /proc (not Linux): the pid alone, the best this platform offers."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"{_where()}:pid{pid}"


def same_process(pid: int | None, start: str | None) -> bool:
    """Is the process that was recorded as (pid, start) still running?"""
    return start is not None and process_start(pid) == start


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment less anything named like a secret (API_KEYS,
    ADMIN_API_KEYS, *_TOKEN, *_PASSWORD, ...)."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items() if not _SECRET_NAME.search(name)}


# -- the one-job lock -------------------------------------------------------------------------


class JobLock:
    """One retraining job at a time across every process sharing the model directory.

    LOCK holds {job_id, pid, start}: the submitting server until the worker starts, then
    the worker. It is stale once that process is gone. A holder this process cannot see
    (another container or host sharing the directory) counts as alive while it touches
    LOCK every HEARTBEAT_S, and as gone once LOCK is FOREIGN_STALE_S old. Every
    read-judge-write of LOCK runs under an exclusive flock on LOCK.guard, which the kernel
    drops if its holder dies.
    """

    def __init__(self, jobs_dir: Path) -> None:
        self.path = jobs_dir / LOCK
        self.guard = jobs_dir / LOCK_GUARD

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.guard, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        """The lock's record; a lock written by an older version (a bare job id) has no pid."""
        text = _read_text(self.path)
        if not text and not self.path.exists():
            return None
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            return {"job_id": text, "pid": None, "start": None}
        return record

    def _live(self, holder: dict[str, Any]) -> bool:
        start = holder.get("start")
        if is_here(start):
            return same_process(holder.get("pid"), start)
        if start is None:  # a bare job id, written by an older version: no way to tell
            return False
        try:
            return time.time() - self.path.stat().st_mtime < FOREIGN_STALE_S
        except OSError:
            return False

    def beat(self, job_id: str) -> None:
        """The holder is alive: refresh LOCK's time (for servers that cannot see it)."""
        with self._guarded():
            holder = self.holder()
            if holder is not None and holder.get("job_id") == job_id:
                os.utime(self.path)

    def _write(self, job_id: str, pid: int, start: str | None) -> None:
        record = {"job_id": job_id, "pid": pid, "start": start}
        atomic_write(self.path, json.dumps(record).encode(), mode=0o644)

    def take(self, job_id: str) -> None:
        """Hold the lock for a new job (this process), or 409 while a live job holds it."""
        with self._guarded():
            holder = self.holder()
            if holder is not None and self._live(holder):
                raise Conflict(
                    f"Retraining job {holder['job_id']} is still running; one job runs at a time.",
                    details=[{"job_id": holder["job_id"]}],
                )
            if holder is not None:
                logger.warning(
                    "taking over the lock of retraining job %s: its process is gone",
                    holder.get("job_id"),
                )
            self._write(job_id, os.getpid(), process_start(os.getpid()))

    def hand_over(self, job_id: str, pid: int, start: str | None) -> None:
        """The worker has started: the lock lives as long as it does."""
        with self._guarded():
            holder = self.holder()
            if holder is not None and holder.get("job_id") == job_id:
                self._write(job_id, pid, start)

    def release(self, job_id: str) -> None:
        """Remove the lock, but only while it is this job's."""
        with self._guarded():
            holder = self.holder()
            if holder is not None and holder.get("job_id") == job_id:
                self.path.unlink(missing_ok=True)

    def release_if_stale(self) -> None:
        with self._guarded():
            holder = self.holder()
            if holder is not None and not self._live(holder):
                self.path.unlink(missing_ok=True)
                logger.warning("removed the stale lock of retraining job %s", holder.get("job_id"))

    def held_for(self, job_id: str) -> bool:
        """Is the lock this job's, held by a live process?"""
        holder = self.holder()
        return holder is not None and holder.get("job_id") == job_id and self._live(holder)


def release_lock(root: Path, job_id: str) -> None:
    """Remove the job lock, but only while it is this job's."""
    JobLock(root / JOBS_DIR).release(job_id)


# -- the rows a job trains on -----------------------------------------------------------------


def data_path(root: Path, job_id: str) -> Path:
    return root / JOBS_DIR / f"{job_id}.csv"


def write_training_rows(path: Path, data: "PreparedData") -> None:
    """The prepared rows only (features, label, a group number), readable by this user only.
    Created with its mode, so it is never readable by others, not even for a moment."""
    frame = pd.DataFrame(data.X, columns=data.spec.names)
    frame[LABEL] = data.y
    frame[GROUP] = np.unique(data.groups.astype(str), return_inverse=True)[1]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False)


def read_training_rows(path: Path, job: dict[str, Any]) -> "PreparedData":
    """The PreparedData a job was submitted with, read back exactly from its data file."""
    from app.services.career.features import FeatureSpec
    from app.services.career.training import PreparedData

    spec = FeatureSpec.from_list(job["config"]["feature_spec"])
    frame = pd.read_csv(
        path,
        dtype={LABEL: str, GROUP: "int64"},
        keep_default_na=False,
        na_values={name: [""] for name in spec.names},
    )
    return PreparedData(
        X=frame[spec.names].to_numpy(dtype="float64"),
        y=frame[LABEL].to_numpy(dtype=object),
        groups=frame[GROUP].to_numpy(),
        spec=spec,
        data_hash=job["config"]["data_sha256"],
        report=job["rows"],
    )


# -- jobs -------------------------------------------------------------------------------------


class RetrainJobs:
    """Submits and reports retraining jobs for one model directory."""

    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self.dir = store.root / JOBS_DIR
        self.lock = JobLock(self.dir)
        self._guard = threading.Lock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._closing = False
        try:
            self.recover()
        except OSError:  # a read-only model directory: serving must still start
            logger.exception("could not recover the retraining jobs")

    def submit(
        self, frame: pd.DataFrame, *, mapping: dict[str, str] | None, force: bool, source: str
    ) -> dict[str, Any]:
        """Validate now (422 for unusable tables), then start the job and return it (queued)."""
        from app.services.career.training import prepare_frame  # sklearn: not at start-up

        data = prepare_frame(frame, mapping=mapping, min_rows_per_class=MIN_ROWS_PER_CLASS)
        self.dir.mkdir(parents=True, exist_ok=True)
        job_id = uuid.uuid4().hex[:16]
        self.lock.take(job_id)
        rows = data_path(self.store.root, job_id)
        path = self.dir / f"{job_id}.json"
        job: dict[str, Any] | None = None
        try:
            write_training_rows(rows, data)
            job = {
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
                "base_version": self.store.active_version(),
                "activated": False,
                "not_activated_reason": None,
                "gate": None,
                "reasons": [],
                "error": None,
                "pid": None,
                "pid_start": None,
                "config": {
                    "min_lift": self.settings.retrain_min_lift,
                    "tolerance": self.settings.retrain_tolerance,
                    "min_rows_per_class": MIN_ROWS_PER_CLASS,
                    "feature_spec": data.spec.to_list(),
                    "data_sha256": data.data_hash,
                },
            }
            write_job(path, job)
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.services.career.retrain_worker",
                    str(self.store.root),
                    job_id,
                    str(os.getpid()),  # the worker stops if this process goes
                ],
                stdin=subprocess.DEVNULL,
                env=child_environment(),
                start_new_session=True,  # a Ctrl-C to the server does not kill the job half-way
            )
        except BaseException as exc:
            rows.unlink(missing_ok=True)
            if job is not None:
                job.update(
                    state="failed", error=f"the training process could not start: {_os_reason(exc)}"
                )
                _try_write_job(path, job)
            self.lock.release(job_id)
            raise
        try:
            self.lock.hand_over(job_id, process.pid, process_start(process.pid))
        except OSError:  # the lock stays this process's until the worker ends the job
            logger.exception("retrain job %s: could not hand the lock to its worker", job_id)
        with self._guard:
            self._children[job_id] = process
        threading.Thread(target=self._reap, args=(process, job_id), daemon=True).start()
        logger.info(
            "retrain job %s started (pid %s, %d rows)",
            job_id,
            process.pid,
            data.report["rows_used"],
        )
        return self._public(job)

    def _alive(self, job: dict[str, Any]) -> bool:
        """Does a live process still work on this queued or running job?"""
        if is_here(job.get("pid_start")):  # the worker has started here and said who it is
            return same_process(job.get("pid"), job["pid_start"])
        # Queued (the submitter or the new worker holds the lock), running elsewhere (its
        # heartbeat on the lock tells), or recorded by an older version with a bare pid.
        return self.lock.held_for(job["id"])

    def _fail(self, job: dict[str, Any], reason: str) -> None:
        """Record a job whose process is gone as failed, and drop what it left behind."""
        data_path(self.store.root, job["id"]).unlink(missing_ok=True)
        job.update(state="failed", error=reason)
        _try_write_job(self.dir / f"{job['id']}.json", job)
        self.lock.release(job["id"])
        logger.warning("retrain job %s failed: %s", job["id"], reason)

    def recover(self) -> None:
        """At start-up: fail the jobs whose process is gone, delete every data file no live job
        needs, and free a lock whose holder is gone."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            job = self._read(path.stem)
            if job and job["state"] in ACTIVE_STATES and not self._alive(job):
                self._fail(job, "the training process was gone when the service started")
        for rows in sorted(self.dir.glob("*.csv")):
            job = self._read(rows.stem)
            if job is None and self.lock.held_for(rows.stem):
                continue  # being submitted right now by another process
            if job is not None and job["state"] in ACTIVE_STATES and self._alive(job):
                continue
            rows.unlink(missing_ok=True)
            logger.warning("deleted the orphaned training data of job %s", rows.stem)
        self.lock.release_if_stale()

    def _reap(self, process: subprocess.Popen[bytes], job_id: str) -> None:
        """Wait for the worker; if it died without a final state, record that."""
        code = process.wait()
        with self._guard:
            self._children.pop(job_id, None)
            if self._closing:  # close() records it
                return
        job = self._read(job_id)
        if job and job["state"] in ACTIVE_STATES:
            self._fail(job, f"the training process exited with code {code}")

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """On shutdown: stop this process's workers and record their jobs as failed."""
        with self._guard:
            self._closing = True
            children = dict(self._children)
        for job_id, process in children.items():
            if process.poll() is None:
                process.terminate()  # the worker records the job itself, then exits
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            job = self._read(job_id)
            if job and job["state"] in ACTIVE_STATES:
                self._fail(job, SHUTDOWN_REASON)

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
        if job["state"] in ACTIVE_STATES and not self._alive(job):
            job = self._read(job_id) or job  # it may have finished since the first read
            if job["state"] in ACTIVE_STATES:
                self._fail(job, "the training process is gone")
        return self._public(job)

    @staticmethod
    def _public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k not in ("pid", "pid_start", "config")}


def _os_reason(exc: BaseException) -> str:
    """An error for the job record: the OS's words, without the host path."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _try_write_job(path: Path, job: dict[str, Any]) -> None:
    try:
        write_job(path, job)
    except OSError:
        logger.exception("could not record the state of retrain job %s", job.get("id"))


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
