"""The career model as a served model: its service, routes, body limits and status."""

import logging
from collections.abc import Mapping

import anyio

from app.api.v1 import career, outcomes, registry
from app.config import Settings
from app.schemas.health import CareerStatus
from app.served.contract import ServedModelSpec
from app.services.career.bundle import VersionRegistry
from app.services.career.recommender import CareerRecommender

logger = logging.getLogger(__name__)


def build(settings: Settings) -> CareerRecommender:
    return CareerRecommender(VersionRegistry(settings.career_model_dir))


async def follow_active_model(recommender: CareerRecommender, settings: Settings) -> None:
    """Load the career model in a worker thread (the process is live meanwhile), then poll
    the shared ACTIVE pointer, so every process converges after an activation or a retrain
    elsewhere, without restarts."""
    await anyio.to_thread.run_sync(recommender.load)
    while True:
        await anyio.sleep(settings.model_poll_seconds)
        try:
            await anyio.to_thread.run_sync(recommender.sync)
        except Exception:  # a bad poll must not end the poller
            logger.exception("model poll failed")


def body_limits(settings: Settings) -> Mapping[str, int]:
    return {
        "/api/v1/career/retrain": settings.training_body_bytes,
        # A record is a few hundred bytes; 2 KiB each leaves room for every optional field.
        "/api/v1/career/outcomes": settings.max_outcome_batch * 2048 + 64 * 1024,
    }


# The retraining jobs and the outcome store are not served models (main.py wires them),
# but their routes are career routes: /api/v1/career/retrain, /api/v1/career/outcomes.
CAREER = ServedModelSpec(
    name="career",
    build=build,
    serve=follow_active_model,
    status=CareerStatus,
    api_routers=(career.router, registry.router, outcomes.router),
    body_limits=body_limits,
)
