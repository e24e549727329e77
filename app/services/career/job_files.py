"""A retraining job on disk: its record and the rows it trains on, in CAREER_MODEL_DIR/.jobs/.

The server (`retrain.py`) and the worker (`retrain_worker.py`) read and write both through
these functions alone, so a record is always replaced whole and the rows are never
readable by another user.

The rows a job trains on are the only copy of uploaded data on disk: the prepared features
and label (no names, emails or ids), mode 0600, deleted however the job ends. A job's
record is mode 0600 too (its row counts name careers) and is deleted once the job has been
over for RETRAIN_JOB_RETENTION_DAYS: at start-up and whenever a job is submitted. An upload
refused by its checks leaves no record at all: it is refused before a job exists.
"""

import contextlib
import hashlib
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from app.domain.records import JobRecord
from app.services.career.features import FeatureSpec
from app.services.career.preparation import LABEL, PreparedData
from app.utils.files import atomic_write

logger = logging.getLogger(__name__)

JOBS_DIR = ".jobs"
ACTIVE_STATES = ("queued", "running")
JOB_ID = re.compile(r"[0-9a-f]{16}")
# In a job's data file: students numbered in the order of their identities, so the
# worker's grouped splits are exactly those the upload gives (the identities stay behind).
GROUP = "_group"

# Job records are read by the server processes and workers of this user only; a record
# names the careers it counted and the columns it ignored.
RECORD_MODE = 0o600


def now() -> str:
    """The time a record is stamped with: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_job(path: Path, job: JobRecord) -> None:
    """Replace a job file atomically, so readers never see half a file."""
    job.updated_at = now()
    atomic_write(path, job.model_dump_json(indent=2).encode(), mode=RECORD_MODE)


def read_job(path: Path) -> JobRecord | None:
    """A job file, or None when it is missing, unreadable or not a job record."""
    try:
        return JobRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None


# -- the rows a job trains on -----------------------------------------------------------------


def data_path(root: Path, job_id: str) -> Path:
    """Where the rows of a job are kept until it ends."""
    return root / JOBS_DIR / f"{job_id}.csv"


def write_training_rows(path: Path, data: PreparedData) -> None:
    """The prepared rows only (features, label, a group number), readable by this user only.
    Created with its mode, so it is never readable by others, not even for a moment."""
    frame = pd.DataFrame(data.X, columns=data.spec.names)
    frame[LABEL] = data.y
    frame[GROUP] = np.unique(data.groups.astype(str), return_inverse=True)[1]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False)


def read_training_rows(path: Path, job: JobRecord) -> PreparedData:
    """The PreparedData a job was submitted with, read back exactly from its data file."""
    assert job.config is not None, "a job is written with its config"
    spec = FeatureSpec.from_list(job.config.feature_spec)
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
        data_hash=job.config.data_sha256,
        report=job.rows,
    )


def _last_update(job: JobRecord | None, path: Path) -> datetime:
    """When a record last changed: its own time, else (unreadable, or written without
    times) the file's."""
    try:
        if job is not None and job.updated_at:
            when = datetime.fromisoformat(job.updated_at)
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    except ValueError:
        pass
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def expire_records(jobs_dir: Path, retention_days: float) -> int:
    """Delete the records of jobs over for longer than `retention_days` (by their last
    update); how many went. Queued and running jobs are never touched."""
    if not jobs_dir.is_dir():
        return 0
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    expired = 0
    for path in sorted(jobs_dir.glob("*.json")):
        if not JOB_ID.fullmatch(path.stem):
            continue
        job = read_job(path)
        if job is not None and job.state in ACTIVE_STATES:
            continue
        try:
            if _last_update(job, path) < cutoff:
                path.unlink()
                expired += 1
        except FileNotFoundError:  # another process expired it first
            continue
    # What a writer killed mid-write left of a record (atomic_write's temporary file).
    for path in sorted(jobs_dir.glob(".*.json-*")):
        with contextlib.suppress(FileNotFoundError):
            if datetime.fromtimestamp(path.stat().st_mtime, UTC) < cutoff:
                path.unlink()
                expired += 1
    if expired:
        logger.info("deleted %d expired retraining job record(s)", expired)
    return expired


def takeover_notes(job: JobRecord) -> list[str]:
    """The job's notes of earlier attempts lost with their process (`attempt N: why`): its
    reasons keep them whatever the last attempt adds."""
    return [r for r in job.reasons if re.match(r"attempt \d+: ", r)]


def idempotency_digest(key: str) -> str:
    """What a job record keeps of an Idempotency-Key: its hash (the key may be a secret-ish
    token of the caller's; the record is readable by every replica)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def os_reason(exc: BaseException) -> str:
    """An error for the job record: the OS's words, without the host path."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
