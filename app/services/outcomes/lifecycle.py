"""The closed loop assembled for one server process: store, monitor, service, scheduler."""

from app.config import Settings
from app.db.engine import database_url, is_postgres
from app.services.career.recommender import CareerRecommender
from app.services.career.retrain import RetrainJobs
from app.services.outcomes.leader import FileLeadership, Leadership, PostgresLeadership
from app.services.outcomes.monitoring import DriftMonitor
from app.services.outcomes.scheduler import RetrainScheduler
from app.services.outcomes.service import OutcomeService
from app.services.outcomes.store import OutcomeStore


def start_closed_loop(
    settings: Settings, recommender: CareerRecommender, jobs: RetrainJobs
) -> tuple[OutcomeService, RetrainScheduler]:
    """Build the closed loop and attach drift monitoring to the recommender (when enabled).
    Nothing here touches the database."""
    monitor = None
    if settings.monitoring_enabled:
        monitor = DriftMonitor(
            window=settings.monitoring_window, threshold=settings.drift_psi_threshold
        )
        recommender.observer = monitor.record
    url = database_url(settings)
    service = OutcomeService(settings, OutcomeStore(url), recommender, jobs, monitor)
    leadership: Leadership = (
        PostgresLeadership(url) if is_postgres(url) else FileLeadership(settings.career_model_dir)
    )
    return service, RetrainScheduler(settings, service, monitor, leadership)
