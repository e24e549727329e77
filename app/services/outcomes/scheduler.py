"""The retraining scheduler: every RETRAIN_CHECK_SECONDS, in every process, refresh the
closed loop's gauges; in the one leader process (leader.py), apply retention and, under
RETRAIN_POLICY=auto, start a job on the store when enough new outcomes or drift call for
one and the last automatic job is RETRAIN_MIN_INTERVAL_SECONDS old.

The job goes through the same gate as any other and is never forced: a candidate that
fails it is recorded `rejected` and the active model stays.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from app.config import Settings
from app.core import metrics
from app.core.exceptions import AppError
from app.services.outcomes.leader import Leadership
from app.services.outcomes.monitoring import DriftMonitor
from app.services.outcomes.service import OutcomeService

logger = logging.getLogger(__name__)

# Retention deletes run at most this often (seconds), however fast the scheduler ticks.
PURGE_EVERY_S = 600.0


@dataclass(frozen=True)
class Signals:
    """What the scheduler knows when it decides."""

    new_outcomes: int
    max_psi: float | None
    max_feature: str | None
    predictions_psi: float | None
    seconds_since_last_auto: float | None  # None: no automatic job yet
    job_running: bool


def decide(signals: Signals, settings: Settings) -> str | None:
    """Why an automatic job should start now, or None."""
    if signals.job_running:
        return None
    last = signals.seconds_since_last_auto
    if last is not None and last < settings.retrain_min_interval_seconds:
        return None
    reasons = []
    if signals.new_outcomes >= settings.retrain_min_new_outcomes:
        reasons.append(
            f"{signals.new_outcomes} new outcomes since the active model was trained "
            f"(RETRAIN_MIN_NEW_OUTCOMES={settings.retrain_min_new_outcomes})"
        )
    threshold = settings.drift_psi_threshold
    if signals.max_psi is not None and signals.max_psi >= threshold:
        reasons.append(
            f"input drift: PSI {signals.max_psi:.3f} on {signals.max_feature} "
            f"(DRIFT_PSI_THRESHOLD={threshold})"
        )
    if signals.predictions_psi is not None and signals.predictions_psi >= threshold:
        reasons.append(
            f"prediction drift: top-1 PSI {signals.predictions_psi:.3f} "
            f"(DRIFT_PSI_THRESHOLD={threshold})"
        )
    return "; ".join(reasons) or None


def _kind(reason: str) -> str:
    """A bounded label for the metric: outcomes, drift or both."""
    outcomes, drift = "new outcomes" in reason, "drift" in reason
    return "both" if outcomes and drift else "outcomes" if outcomes else "drift"


class RetrainScheduler:
    """One per process; only the leader acts."""

    def __init__(
        self,
        settings: Settings,
        service: OutcomeService,
        monitor: DriftMonitor | None,
        leadership: Leadership,
    ) -> None:
        self.settings = settings
        self.service = service
        self.monitor = monitor
        self.leadership = leadership
        self.leader = False
        self._last_purge = -PURGE_EVERY_S
        self._last_attempt: float | None = None  # monotonic; covers starts that failed

    def tick(self) -> str | None:
        """One round; returns the reason of a job it started (else None). Never raises."""
        try:
            return self._tick()
        except AppError as exc:  # the store is down, the model is not loaded: next round
            logger.warning("retrain scheduler: %s", exc.message)
        except Exception:
            logger.exception("retrain scheduler round failed")
        return None

    def _tick(self) -> str | None:
        snapshot = None
        model = self.service.career.current
        if self.monitor is not None and model is not None:
            self.monitor.prime(model)  # the reference of a new version, off the request path
            snapshot = self.monitor.publish()
        self.leader = self.leadership.hold()
        if not self.leader:
            return None
        now = time.monotonic()
        if now - self._last_purge >= PURGE_EVERY_S:
            self._last_purge = now
            self.service.purge()
        new = self.service.new_since_active()
        self.service.live_quality()  # refreshes its gauges
        if self.settings.retrain_policy != "auto" or model is None:
            return None
        drift = (snapshot or {}).get("drift", {})
        signals = Signals(
            new_outcomes=new,
            max_psi=drift.get("max_psi"),
            max_feature=drift.get("max_feature"),
            predictions_psi=drift.get("predictions_psi"),
            seconds_since_last_auto=self._since_last_auto(),
            job_running=self._job_running(),
        )
        reason = decide(signals, self.settings)
        if reason is None:
            return None
        self._last_attempt = time.monotonic()
        try:
            job = self.service.retrain(trigger="auto", reason=reason, force=False)
        except AppError as exc:
            logger.warning("automatic retrain not started (%s): %s", reason, exc.message)
            return None
        metrics.AUTO_RETRAINS.labels(_kind(reason)).inc()
        logger.info("automatic retrain job %s started: %s", job.id, reason)
        return reason

    def _job_running(self) -> bool:
        holder = self.service.jobs.lock.holder()
        return holder is not None and self.service.jobs.lock.held_for(str(holder.get("job_id")))

    def _since_last_auto(self) -> float | None:
        """Seconds since the newest automatic job (on record, or tried by this process)."""
        ages = []
        if self._last_attempt is not None:
            ages.append(time.monotonic() - self._last_attempt)
        for job in self.service.jobs.history():
            if job.trigger == "auto":
                try:
                    created = datetime.fromisoformat(job.created_at)
                except ValueError:
                    continue
                ages.append((datetime.now(UTC) - created).total_seconds())
                break  # newest first
        return min(ages) if ages else None

    async def run(self) -> None:
        """Tick forever (cancelled at shutdown)."""
        try:
            while True:
                await anyio.to_thread.run_sync(self.tick)
                await anyio.sleep(self.settings.retrain_check_seconds)
        finally:
            self.leadership.release()
