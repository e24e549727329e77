"""Retraining jobs: check the upload at once, train in a low-priority child process, gate, promote.

A job lives as a JSON file in CAREER_MODEL_DIR/.jobs/ (a `JobRecord`, read and written by
`job_files.py` with the rows it trains on), so every server process sharing the model
directory sees the same jobs, and one lock there (`JobLock`) allows one job at a time
across all of them. The child process runs
`app.services.career.retrain_worker`; it writes the new version through VersionRegistry
(temporary directory, then rename) and moves the ACTIVE pointer only when the candidate
passes the quality gate (or `force` is set) and ACTIVE still names the version the job
started from. Servers notice the new pointer through their model poller.

Jobs outlive their process: a job whose worker is gone without a final word (its pod
killed, evicted or lost with its node) is started again by whichever server sharing the
directory notices first (`sweep`, every RETRAIN_SWEEP_SECONDS; at start-up; on a status
read), from the rows still on disk, up to MAX_ATTEMPTS; else it is recorded as failed with
the reason. A worker on another host counts as gone once its heartbeat stops
(job_lock.FOREIGN_STALE_S), so a job is never left `running` with no one on it for longer
than that plus one sweep.
"""

import contextlib
import logging
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import pandas as pd

from app.config import Settings
from app.core import metrics
from app.core.exceptions import Conflict, NotFound
from app.domain.enums import JobTrigger
from app.domain.records import JobConfig, JobRecord, RetrainJob
from app.services.career.bundle import VersionRegistry
from app.services.career.job_files import (
    ACTIVE_STATES,
    JOB_ID,
    JOBS_DIR,
    RECORD_MODE,
    data_path,
    expire_records,
    idempotency_digest,
    now,
    os_reason,
    read_job,
    write_job,
    write_training_rows,
)
from app.services.career.job_lock import JobLock, is_here, process_start, same_process
from app.services.career.preparation import MIN_ROWS_PER_CLASS, prepare_frame

logger = logging.getLogger(__name__)

# Environment variables the worker does not get: keys, tokens, passwords. Training needs
# none, and a process's environment is readable by its user in /proc.
_SECRET_NAME = re.compile(
    r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL|PRIVATE|DATABASE_URL", re.IGNORECASE
)  # a database URL may hold a password
SHUTDOWN_REASON = "the service shut down during training"
STOP_SECONDS = 10.0
# Processes a job may use up: one whose worker keeps dying (an upload that runs it out of
# memory every time) ends as failed instead of taking down replica after replica.
MAX_ATTEMPTS = 3
LOST_REASON = "its training process was lost (its server stopped without a word)"


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment less anything named like a secret (API_KEYS,
    ADMIN_API_KEYS, *_TOKEN, *_PASSWORD, ...)."""
    source = os.environ if environ is None else environ
    return {
        name: value
        for name, value in source.items()
        # The worker is not a server worker: its (empty) metrics must not join theirs.
        if not _SECRET_NAME.search(name) and name != "PROMETHEUS_MULTIPROC_DIR"
    }


class RetrainJobs:
    """Submits and reports retraining jobs for one model directory."""

    def __init__(self, settings: Settings, store: VersionRegistry) -> None:
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
        self,
        frame: pd.DataFrame,
        *,
        mapping: dict[str, str] | None,
        force: bool,
        source: str,
        trigger: JobTrigger = "upload",
        reason: str | None = None,
        report: dict[str, object] | None = None,
        idempotency_key: str | None = None,
    ) -> RetrainJob:
        """Validate now (422 for unusable tables), then start the job and return it (queued).
        `report`: facts added to the job's row report (and so to the new version's manifest).
        With an Idempotency-Key already used for the same submission: that job, unchanged."""
        data = prepare_frame(frame, mapping=mapping, min_rows_per_class=MIN_ROWS_PER_CLASS)
        data.report.update(report or {})
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.expire()
        except OSError:  # old records staying a while longer must not refuse a job
            logger.exception("could not delete expired retraining job records")
        digest = None if idempotency_key is None else idempotency_digest(idempotency_key)
        if digest is not None and (earlier := self._submitted_with(digest, data.data_hash)):
            return earlier
        job_id = uuid.uuid4().hex[:16]
        try:
            self.lock.take(job_id)
        except Conflict:
            # The first attempt of this very submission may hold the lock.
            if digest is not None and (earlier := self._submitted_with(digest, data.data_hash)):
                return earlier
            raise
        rows = data_path(self.store.root, job_id)
        path = self.dir / f"{job_id}.json"
        job: JobRecord | None = None
        try:
            write_training_rows(rows, data)
            created = now()
            job = JobRecord(
                id=job_id,
                state="queued",
                stage="queued",
                progress=0.0,
                created_at=created,
                updated_at=created,
                source=source,
                trigger=trigger,
                reason=reason,
                force=force,
                mapping=mapping or {},
                rows=data.report,
                metrics=None,
                gate=None,
                reasons=[],
                candidate_version=None,
                base_version=self.store.active_version(),
                activated=False,
                error=None,
                idempotency_key=digest,
                config=JobConfig(
                    min_lift=self.settings.retrain_min_lift,
                    tolerance=self.settings.retrain_tolerance,
                    min_rows_per_class=MIN_ROWS_PER_CLASS,
                    feature_spec=data.spec.to_list(),
                    data_sha256=data.data_hash,
                ),
            )
            write_job(path, job)
            process = self._spawn(job_id)
        except BaseException as exc:
            rows.unlink(missing_ok=True)
            if job is not None:
                job.state = "failed"
                job.error = f"the training process could not start: {os_reason(exc)}"
                _try_write_job(path, job)
            self.lock.release(job_id)
            raise
        self._watch(job_id, process)
        logger.info(
            "retrain job %s started (pid %s, %d rows)",
            job_id,
            process.pid,
            data.report["rows_used"],
        )
        return job.public()

    def _submitted_with(self, digest: str, data_sha256: str) -> RetrainJob | None:
        """The job an earlier submission with this Idempotency-Key created, or None; 409 when
        the key came with other data (a key names one submission)."""
        for path in sorted(self.dir.glob("*.json")):
            job = read_job(path)
            if job is None or job.idempotency_key != digest:
                continue
            if job.config is not None and job.config.data_sha256 != data_sha256:
                raise Conflict(
                    "This Idempotency-Key was used for another upload; use a new key.",
                    details=[{"field": "Idempotency-Key", "job_id": job.id}],
                )
            return self.get(job.id)
        return None

    def _spawn(self, job_id: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
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

    def _watch(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        """The worker runs: the lock is its, and a thread records how it ends."""
        try:
            self.lock.hand_over(job_id, process.pid, process_start(process.pid))
        except OSError:  # the lock stays this process's until the worker ends the job
            logger.exception("retrain job %s: could not hand the lock to its worker", job_id)
        with self._guard:
            self._children[job_id] = process
        threading.Thread(target=self._reap, args=(process, job_id), daemon=True).start()

    def _take_over(self, job: JobRecord, reason: str) -> None:
        """A queued or running job whose process is gone: start it again here from its rows
        on disk, or, when they are gone or its attempts are spent, record it as failed."""
        rows = data_path(self.store.root, job.id)
        if job.config is None or not rows.exists():
            self._fail(job, reason)
            return
        if job.attempts >= MAX_ATTEMPTS:
            self._fail(job, f"{reason}, {job.attempts} times")
            return
        with self._guard:
            if self._closing:
                return
        try:
            self.lock.take(job.id)
        except Conflict:
            return  # another server took it over first (or a new job runs: it waits)
        current = self._read(job.id)
        if current is None or current.state not in ACTIVE_STATES or not rows.exists():
            self.lock.release(job.id)  # it ended (or was taken over and ended) meanwhile
            return
        current.attempts += 1
        current.state, current.stage, current.progress = "queued", "queued", 0.0
        current.pid = current.pid_start = None
        current.reasons = [*current.reasons, f"attempt {current.attempts - 1}: {reason}"]
        path = self.dir / f"{job.id}.json"
        try:
            write_job(path, current)
            process = self._spawn(job.id)
        except Exception as exc:
            logger.exception("retrain job %s: could not start it again", job.id)
            self._fail(current, f"{reason}; starting it again failed: {os_reason(exc)}")
            return
        self._watch(job.id, process)
        logger.warning(
            "retrain job %s taken over (attempt %d of %d, pid %s): %s",
            job.id,
            current.attempts,
            MAX_ATTEMPTS,
            process.pid,
            reason,
        )

    def sweep(self) -> None:
        """Every job whose process is gone is taken over or failed (see the module doc);
        each server runs this every RETRAIN_SWEEP_SECONDS."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            job = self._read(path.stem)
            if job and job.state in ACTIVE_STATES and not self._alive(job):
                self._take_over(job, LOST_REASON)

    def _alive(self, job: JobRecord) -> bool:
        """Does a live process still work on this queued or running job?"""
        if is_here(job.pid_start):  # the worker has started here and said who it is
            return same_process(job.pid, job.pid_start)
        # Queued (the submitter or the new worker holds the lock), running elsewhere (its
        # heartbeat on the lock tells), or recorded by an older version with a bare pid.
        return self.lock.held_for(job.id)

    def _fail(self, job: JobRecord, reason: str) -> None:
        """Record a job whose process is gone as failed, and drop what it left behind."""
        data_path(self.store.root, job.id).unlink(missing_ok=True)
        job.state, job.error = "failed", reason
        _try_write_job(self.dir / f"{job.id}.json", job)
        self.lock.release(job.id)
        logger.warning("retrain job %s failed: %s", job.id, reason)

    def recover(self) -> None:
        """At start-up: fail the jobs whose process is gone, delete every data file no live job
        needs, free a lock whose holder is gone, and delete expired records."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            job = self._read(path.stem)
            if job and job.state in ACTIVE_STATES and not self._alive(job):
                self._take_over(job, "the training process was gone when the service started")
            elif job:  # written by a version that made records 0644
                with contextlib.suppress(FileNotFoundError):  # expired by another process
                    path.chmod(RECORD_MODE)
        for rows in sorted(self.dir.glob("*.csv")):
            job = self._read(rows.stem)
            if job is None and self.lock.held_for(rows.stem):
                continue  # being submitted right now by another process
            if job is not None and job.state in ACTIVE_STATES and self._alive(job):
                continue
            rows.unlink(missing_ok=True)
            logger.warning("deleted the orphaned training data of job %s", rows.stem)
        self.lock.release_if_stale()
        self.expire()

    def expire(self) -> int:
        """Delete the records of jobs over for longer than RETRAIN_JOB_RETENTION_DAYS (by
        their last update); how many went. Queued and running jobs are never touched."""
        return expire_records(self.dir, self.settings.retrain_job_retention_days)

    def _reap(self, process: subprocess.Popen[bytes], job_id: str) -> None:
        """Wait for the worker; if it died without a final state, record that."""
        code = process.wait()
        with self._guard:
            self._children.pop(job_id, None)
            if self._closing:  # close() records it
                return
        job = self._read(job_id)
        if job and job.state in ACTIVE_STATES:
            self._fail(job, f"the training process exited with code {code}")
        _count_end(self._read(job_id))

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
            if job and job.state in ACTIVE_STATES:
                self._fail(job, SHUTDOWN_REASON)
            _count_end(self._read(job_id))

    def _read(self, job_id: str) -> JobRecord | None:
        if not JOB_ID.fullmatch(job_id):
            return None
        return read_job(self.dir / f"{job_id}.json")

    def history(self) -> list[RetrainJob]:
        """Every job on record, newest first."""
        if not self.dir.is_dir():
            return []
        jobs = [self._read(path.stem) for path in self.dir.glob("*.json")]
        found = [job.public() for job in jobs if job is not None]
        return sorted(found, key=lambda job: (job.created_at, job.id), reverse=True)

    def get(self, job_id: str) -> RetrainJob:
        job = self._read(job_id)
        if job is None:
            raise NotFound(f"Retraining job '{job_id}' does not exist.")
        if job.state in ACTIVE_STATES and not self._alive(job):
            job = self._read(job_id) or job  # it may have finished since the first read
            if job.state in ACTIVE_STATES:
                self._take_over(job, LOST_REASON)
                job = self._read(job_id) or job
        return job.public()


def _try_write_job(path: Path, job: JobRecord) -> None:
    try:
        write_job(path, job)
    except OSError:
        logger.exception("could not record the state of retrain job %s", job.id)


def _count_end(job: JobRecord | None) -> None:
    """A job this process started has ended: its final state and duration, for /metrics."""
    if job is None or job.state in ACTIVE_STATES:
        return
    metrics.RETRAIN_JOBS.labels(job.state).inc()
    try:
        took = datetime.fromisoformat(job.updated_at) - datetime.fromisoformat(job.created_at)
    except ValueError:  # a record without times
        return
    metrics.RETRAIN_DURATION.observe(max(0.0, took.total_seconds()))
