"""The closed loop's use cases: take outcomes in (validated like predict, scored by the
active model), report on them, erase them, and start retraining jobs on them."""

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from app.config import Settings
from app.core import metrics
from app.core.exceptions import InvalidInput, PayloadTooLarge, StoreUnavailable
from app.domain.enums import JobTrigger
from app.domain.records import RetrainJob
from app.schemas.outcomes import (
    Erasure,
    LiveQuality,
    Monitoring,
    OutcomeIngest,
    OutcomeRecord,
    OutcomeStats,
    WeekCount,
)
from app.services.career.active import LoadedVersion
from app.services.career.catalog import career_id
from app.services.career.recommender import CareerRecommender, student_row
from app.services.career.retrain import RetrainJobs
from app.services.outcomes.monitoring import DriftMonitor
from app.services.outcomes.store import OutcomeStore
from app.services.outcomes.subjects import KeyedHasher, install_key
from app.services.outcomes.training_rows import base_rows, training_frame

logger = logging.getLogger(__name__)

# Clocks differ: an observation this far ahead of ours is still accepted.
CLOCK_SKEW = timedelta(minutes=5)
# log(0) guard, as sklearn's log_loss clips.
PROBA_FLOOR = 1e-15


@dataclass
class ParsedBatch:
    """A batch as the HTTP layer read it: each row validated by the schema (None where it
    failed) and the schema's problems, already named `outcomes.<i>...` with their row."""

    records: list[OutcomeRecord | None]
    problems: list[dict[str, Any]] = field(default_factory=list)


def week_of(moment: datetime) -> str:
    day = moment.astimezone(UTC).date()
    return (day - timedelta(days=day.weekday())).isoformat()


class OutcomeService:
    """Outcomes in and out of the store, for the active career model."""

    def __init__(
        self,
        settings: Settings,
        store: OutcomeStore,
        career: CareerRecommender,
        jobs: RetrainJobs,
        monitor: DriftMonitor | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.career = career
        self.jobs = jobs
        self.monitor = monitor
        self._hasher: KeyedHasher | None = None

    # -- identifiers -------------------------------------------------------------------------

    def hasher(self) -> KeyedHasher:
        if self._hasher is None:
            secret = self.settings.outcome_hash_key.get_secret_value()
            key = secret.encode() if secret else install_key(self.settings.career_model_dir)
            self._hasher = KeyedHasher(key)
        return self._hasher

    # -- ingest ------------------------------------------------------------------------------

    def check_size(self, count: int) -> None:
        limit = self.settings.max_outcome_batch
        if count > limit:
            raise PayloadTooLarge(
                f"The batch has {count} outcomes; at most {limit} are accepted (MAX_OUTCOME_BATCH).",
                details=[{"field": "outcomes", "max_items": limit, "items": count}],
            )

    def ingest(self, batch: ParsedBatch) -> OutcomeIngest:
        """Validate every record, then store all of them or none (422 lists every bad row)."""
        self.check_size(len(batch.records))
        model = self.career.model  # 503 while no model is loaded: it defines what is valid
        now = datetime.now(UTC)
        oldest = now - timedelta(days=self.settings.outcome_retention_days)
        problems = list(batch.problems)
        rows: list[np.ndarray] = []
        accepted: list[tuple[int, OutcomeRecord, str]] = []
        seen_keys: dict[str, int] = {}
        for i, record in enumerate(batch.records):
            if record is None:
                continue
            found = _record_problems(i, record, model, now, oldest, seen_keys)
            if isinstance(found, list):
                problems += found
                continue
            values, career = found
            rows.append(values)
            accepted.append((i, record, career))
        if problems:
            bad = len({p["row"] for p in problems})
            raise InvalidInput(
                f"{bad} of {len(batch.records)} outcomes are invalid; none was stored.",
                details=sorted(problems, key=lambda p: p["row"]),
            )
        proba = np.asarray(model.proba(np.vstack(rows)))
        hasher = self.hasher()
        records = []
        for (_, record, career), values, p in zip(accepted, rows, proba, strict=True):
            index = model.by_key.get(career.lower())
            records.append(
                {
                    "received_at": now,
                    "observed_at": record.observed_at.astimezone(UTC),
                    "week": week_of(record.observed_at),
                    "career": career,
                    "features": {
                        name: float(v)
                        for name, v in zip(model.spec.names, values, strict=True)
                        if not math.isnan(v)
                    },
                    "subject_hash": hasher(record.subject_id, purpose="subject")
                    if record.subject_id
                    else None,
                    "idempotency_hash": hasher(record.idempotency_key, purpose="idempotency")
                    if record.idempotency_key
                    else None,
                    "model_version": model.bundle.version,
                    "top1_correct": index is not None and int(p.argmax()) == index,
                    "log_loss": -math.log(max(float(p[index]), PROBA_FLOOR))
                    if index is not None
                    else None,
                }
            )
        stored = self.store.add(records)
        duplicates = len(records) - stored
        metrics.OUTCOMES_INGESTED.labels("stored").inc(stored)
        if duplicates:
            metrics.OUTCOMES_INGESTED.labels("duplicate").inc(duplicates)
        return OutcomeIngest(
            stored=stored, duplicates=duplicates, model_version=model.bundle.version
        )

    # -- reports -----------------------------------------------------------------------------

    def active_trained_at(self) -> tuple[str | None, datetime | None]:
        """The active version and when it was written (trained)."""
        version = self.career.store.active_version()
        if version is None:
            return None, None
        try:
            created = self.career.store.read_manifest(version).created_at
            return version, datetime.fromisoformat(created)
        except Exception:  # an unreadable manifest: no date, every outcome counts as new
            return version, None

    def stats(self) -> OutcomeStats:
        version, trained_at = self.active_trained_at()
        counts = self.store.counts(trained_at)
        metrics.OUTCOMES_NEW.set(counts["new"])
        return OutcomeStats(
            total=counts["total"],
            by_career=counts["by_career"],
            by_week=[WeekCount(week=w, count=n) for w, n in counts["by_week"]],
            new_since_active=counts["new"],
            active_version=version,
            active_trained_at=trained_at.isoformat() if trained_at else None,
            oldest_observed_at=_iso(counts["oldest"]),
            newest_observed_at=_iso(counts["newest"]),
            retention_days=self.settings.outcome_retention_days,
        )

    def new_since_active(self) -> int:
        _, trained_at = self.active_trained_at()
        new = self.store.count_since(trained_at)
        metrics.OUTCOMES_NEW.set(new)
        return new

    def live_quality(self) -> LiveQuality:
        model = self.career.current  # no 503 here: monitoring answers while a model loads
        version = model.bundle.version if model else self.career.store.active_version()
        if version is None:
            return LiveQuality(model_version=None, outcomes=0, top1_accuracy=None, log_loss=None)
        try:
            n, top1, loss = self.store.quality(version)
        except StoreUnavailable as exc:
            return LiveQuality(
                model_version=version, outcomes=0, top1_accuracy=None, log_loss=None,
                error=exc.message,
            )  # fmt: skip
        metrics.LIVE_TOP1.set(math.nan if top1 is None else top1)
        metrics.LIVE_LOG_LOSS.set(math.nan if loss is None else loss)
        return LiveQuality(
            model_version=version,
            outcomes=n,
            top1_accuracy=None if top1 is None else round(top1, 4),
            log_loss=None if loss is None else round(loss, 4),
        )

    def publish_drift(self) -> None:
        """Set the drift gauges from this process's window (no database involved)."""
        if self.monitor is not None:
            self.monitor.publish()

    def monitoring(self) -> Monitoring:
        """Drift in this process's window and live quality from the store."""
        if self.monitor is not None:
            model = self.career.current
            if model is not None:
                self.monitor.prime(model)
            snapshot = self.monitor.publish()
        else:
            snapshot = DriftMonitor(window=self.settings.monitoring_window, threshold=1).snapshot()
            snapshot["drift"]["threshold"] = self.settings.drift_psi_threshold
        return Monitoring(
            enabled=self.monitor is not None,
            model_version=snapshot["model_version"],
            window=snapshot["window"],
            drift=snapshot["drift"],
            live_quality=self.live_quality(),
            retrain_policy=self.settings.retrain_policy,
        )

    # -- erasure and retention ---------------------------------------------------------------

    def erase(self, subject_id: str) -> Erasure:
        """Delete every outcome of a subject; an unknown subject deletes nothing (200)."""
        if not subject_id.strip() or len(subject_id) > 200:
            raise InvalidInput(
                "subject_id must be 1-200 characters.",
                details=[
                    {"field": "subject_id", "message": "1-200 characters", "type": "value_error"}
                ],
            )
        deleted = self.store.erase(self.hasher()(subject_id, purpose="subject"))
        logger.info("erased %d outcome(s) of one subject", deleted)
        return Erasure(deleted=deleted)

    def purge(self) -> int:
        """Delete outcomes observed before OUTCOME_RETENTION_DAYS."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.outcome_retention_days)
        deleted = self.store.purge(cutoff)
        if deleted:
            logger.info("retention: deleted %d outcome(s) observed before %s", deleted, cutoff)
        return deleted

    # -- retraining --------------------------------------------------------------------------

    def retrain(
        self,
        *,
        trigger: JobTrigger,
        reason: str | None = None,
        window_days: int | None = None,
        include_base_rows: bool | None = None,
        force: bool = False,
    ) -> RetrainJob:
        """Start a job on the outcomes of a window (and the base rows, when asked for and
        available), through the same checks, gate and registry as an upload."""
        days = window_days or self.settings.retrain_window_days
        include = (
            self.settings.retrain_include_base_rows
            if include_base_rows is None
            else include_base_rows
        )
        since = datetime.now(UTC) - timedelta(days=days)
        outcomes = self.store.window(since, self.settings.max_training_rows)
        base, why = (None, "not asked for")
        if include:
            base, why = base_rows(self.career.store, self.career.store.active_version())
        if not outcomes and base is None:
            raise InvalidInput(
                f"The outcome store has no outcomes observed in the last {days} days.",
                details=[{"field": "window_days", "message": "no outcomes", "type": "empty"}],
            )
        frame, facts = training_frame(outcomes, base)
        facts["window_days"] = days
        if include and base is None:
            facts["base_rows_missing"] = why
        return self.jobs.submit(
            frame,
            mapping=None,
            force=force,
            source="store",
            trigger=trigger,
            reason=reason,
            report=facts,
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _record_problems(
    i: int,
    record: OutcomeRecord,
    model: LoadedVersion,
    now: datetime,
    oldest: datetime,
    seen_keys: dict[str, int],
) -> list[dict[str, Any]] | tuple[np.ndarray, str]:
    """A record's feature row and canonical career, or every problem it has."""
    problems: list[dict[str, Any]] = []

    def problem(where: str, message: str, kind: str, **extra: Any) -> None:
        problems.append(
            {"row": i, "field": f"outcomes.{i}.{where}", "message": message, "type": kind, **extra}
        )

    student = record.student
    values = None
    try:
        values = student_row(model.spec, student).values
    except InvalidInput as exc:
        for detail in exc.details:
            problem(f"student.{detail['field']}", detail["message"], detail["type"])
    career = resolve_career(model, record.career)
    if career is None:
        problem("career", f"Unknown career '{record.career}'.", "unknown_career")
    if record.observed_at > now + CLOCK_SKEW:
        problem("observed_at", "observed_at is in the future.", "future_timestamp")
    elif record.observed_at < oldest:
        problem(
            "observed_at",
            "observed_at is older than OUTCOME_RETENTION_DAYS; it would be deleted at once.",
            "too_old",
        )
    if record.idempotency_key is not None:
        first = seen_keys.setdefault(record.idempotency_key, i)
        if first != i:
            problem(
                "idempotency_key",
                f"The same idempotency_key as outcome {first} of this batch.",
                "duplicate_idempotency_key",
            )
    if problems or values is None or career is None:
        return problems
    return values, career


def resolve_career(model: LoadedVersion, name: str) -> str | None:
    """A career of the active model or of its catalog, by id or name, as its catalog name."""
    key = name.strip().lower()
    index = model.by_key.get(key, model.by_key.get(career_id(key)))
    if index is not None:
        return model.classes[index]
    wanted = career_id(key)
    for career in model.bundle.catalog.values():
        if career.id == wanted:
            return career.name
    return None
