"""Child process of one retraining job:
`python -m app.services.career.retrain_worker DIR JOB [SERVER_PID]`.

Runs at low priority so serving keeps its CPU; reports progress into the job file. It lives
no longer than the server that started it: on SIGTERM (the server's shutdown) or once that
server is gone (a crash), it records the job as failed, deletes its data and exits.
"""

import signal

if __name__ == "__main__":
    # SIGTERM is taken by the watchdog thread (sigtimedwait), so every thread must block
    # it, numpy's and BLAS's too: block it before the imports below start them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.core.exceptions import AppError
from app.domain.records import JobRecord
from app.services.career.bundle import BundleError, VersionRegistry
from app.services.career.catalog import Career
from app.services.career.gate import quality_gate
from app.services.career.job_files import (
    JOBS_DIR,
    data_path,
    read_job,
    read_training_rows,
    takeover_notes,
    write_job,
)
from app.services.career.job_lock import HEARTBEAT_S, JobLock, process_start
from app.services.career.retrain import SHUTDOWN_REASON
from app.services.career.training import TrainedModel, TrainingConfig, train_model

logger = logging.getLogger("app.retrain")

WRITING = "writing the version"


class JobRun:
    """One job's record as this process writes it. The lock orders the training thread's
    writes against the watchdog's: a job stopped half-way is recorded once, and a
    promotion under way is never cut in two."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.root = root
        self.job_id = job_id
        self.path = root / JOBS_DIR / f"{job_id}.json"
        self.data = data_path(root, job_id)
        job = read_job(self.path)
        if job is None or job.config is None:
            raise RuntimeError(f"retrain job {job_id} has no readable record")
        self.job: JobRecord = job
        self.lock = threading.Lock()
        self.finished = False

    def save(self, **changes: Any) -> None:
        with self.lock:
            self._update(changes)
            write_job(self.path, self.job)

    def _update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self.job, name, value)

    def finish(self, **changes: Any) -> None:
        """The job's last word: its data goes first (it frees the space a full disk needs
        for the record), then the record, then the lock, each whatever the others do."""
        if self.finished:
            return
        self.finished = True
        self._update(changes)
        try:
            self.data.unlink(missing_ok=True)
        except OSError:
            logger.exception("retrain job %s: could not delete its data", self.job_id)
        try:
            write_job(self.path, self.job)
        except OSError:  # the server's reaper or the next start-up records it instead
            logger.exception("retrain job %s: could not record its end", self.job_id)
        try:
            JobLock(self.root / JOBS_DIR).release(self.job_id)
        except OSError:
            logger.exception("retrain job %s: could not release the lock", self.job_id)

    def stop(self, reason: str) -> None:
        """Called from the watchdog: end the job now unless it has already ended."""
        with self.lock:
            if not self.finished:
                self.finish(state="failed", error=reason)
                logger.warning("retrain job %s stopped: %s", self.job_id, reason)
                os._exit(1)


def run(root: Path, job_id: str, job_run: JobRun | None = None) -> int:
    store = VersionRegistry(root)
    job_run = job_run or JobRun(root, job_id)
    job = job_run.job
    job_run.save(
        state="running",
        stage="preparing data",
        progress=0.05,
        pid=os.getpid(),
        pid_start=process_start(os.getpid()),
    )
    config = job.config
    assert config is not None  # JobRun refuses a record without one
    try:
        data = read_training_rows(job_run.data, job)

        def progress(stage: str, fraction: float) -> None:
            job_run.save(stage=stage, progress=round(fraction, 2))

        trained = train_model(data, config=TrainingConfig(), progress=progress)
        job.metrics = trained.metrics
        progress("quality gate", 0.95)
        gate = quality_gate(trained, store, min_lift=config.min_lift, tolerance=config.tolerance)
        job.gate = gate
        job.reasons = [*takeover_notes(job), *gate.reasons]
        if gate.passed or job.force:
            with job_run.lock:  # a shutdown waits for the version and the pointer
                _promote(store, job_run, trained, data, gate_passed=gate.passed)
        else:
            with job_run.lock:
                job_run.finish(state="rejected", stage="done", progress=1.0)
    except AppError as exc:
        with job_run.lock:
            job_run.finish(
                state="failed",
                error=exc.message,
                reasons=[*takeover_notes(job), *(d.get("message", "") for d in exc.details)],
            )
    except OSError as exc:
        logger.exception("retrain job %s failed", job_id)
        with job_run.lock:
            job_run.finish(state="failed", error=_os_error(exc, job))
    except Exception as exc:  # the kind is recorded; the traceback goes to the log
        logger.exception("retrain job %s failed", job_id)
        # Only the kind: a library's message may quote the data (a label, a value), and
        # the record outlives the job.
        with job_run.lock:
            job_run.finish(
                state="failed",
                error=f"{type(exc).__name__} while {job.stage} (the traceback is in the log)",
            )
    finally:
        with job_run.lock:
            job_run.finish(state="failed", error="the training process ended unexpectedly")
    return 0


def _promote(
    store: VersionRegistry, job_run: JobRun, trained: TrainedModel, data: Any, *, gate_passed: bool
) -> None:
    """Write the version, then activate it only if ACTIVE still names the version the job
    started from: an activation or rollback made during training wins."""
    job = job_run.job
    origin = "the outcome store" if job.source == "store" else "an upload"
    description = (
        f"Retrained from {origin}: {data.report['rows_received']} rows "
        f"({data.report['unique_students']} unique students)"
        + (" with force despite the quality gate." if not gate_passed else ".")
    )
    job.stage = WRITING
    version = store.write(
        trained, data, catalog=_catalog(store), source="retrain", description=description
    )
    job.candidate_version = version
    store.load(version)  # only a version that loads is activated (and becomes LAST_GOOD)
    base = job.base_version
    if store.compare_and_set_active(base, version):
        job_run.finish(activated=True, state="succeeded", stage="done", progress=1.0)
        return
    now = store.active_version()
    job_run.finish(
        activated=False,
        not_activated_reason=(
            f"the active version changed during training (from {base or 'none'} to "
            f"{now or 'none'}); that choice stands. Activate {version} to use the new model."
        ),
        state="succeeded",
        stage="done",
        progress=1.0,
    )


def _os_error(exc: OSError, job: JobRecord) -> str:
    """What the OS refused (a full disk, a read-only directory), in its words, no paths."""
    reason = exc.strerror or type(exc).__name__
    if job.candidate_version:
        return (
            f"version {job.candidate_version} was written but could not be activated: "
            f"{reason}; the active model is unchanged"
        )
    if job.stage == WRITING:
        return f"the new version could not be written: {reason}; the active model is unchanged"
    return f"{reason} (while {job.stage})"


def _catalog(store: VersionRegistry) -> list[Career]:
    """The active model's catalog travels on, so known careers keep their descriptions and
    key subjects; careers it lacks get key subjects derived from the data."""
    active = store.active_version()
    if active:
        try:
            return list(store.load(active).catalog.values())
        except BundleError:
            pass
    return []


def _watch(job_run: JobRun, server_pid: int | None, lock: JobLock) -> None:
    """Stop the job on SIGTERM (blocked in every thread and taken here, so a fit in C code
    does not delay it) or when the server that started it is gone; meanwhile keep the
    lock's heartbeat for servers on other hosts."""
    last_beat = 0.0
    while True:
        if time.monotonic() - last_beat >= HEARTBEAT_S:
            with contextlib.suppress(OSError):
                lock.beat(job_run.job_id)
            last_beat = time.monotonic()
        if signal.sigtimedwait({signal.SIGTERM}, 0.5) is not None:
            job_run.stop(SHUTDOWN_REASON)
            return  # the job had ended: the training thread is finishing
        if server_pid is not None and os.getppid() != server_pid:
            job_run.stop("the server that started the job stopped")
            return


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.nice(10)
    root, job_id = Path(sys.argv[1]), sys.argv[2]
    server_pid = int(sys.argv[3]) if len(sys.argv) > 3 else None
    job_run = JobRun(root, job_id)
    lock = JobLock(root / JOBS_DIR)
    threading.Thread(target=_watch, args=(job_run, server_pid, lock), daemon=True).start()
    return run(root, job_id, job_run)


if __name__ == "__main__":
    sys.exit(main())
