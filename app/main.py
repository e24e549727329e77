"""Application factory: middleware, handlers, routers and the models' lifespan in one place."""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app import __version__
from app.api.v1 import career, health
from app.config import Settings, get_settings
from app.core.handlers import register_exception_handlers
from app.core.logging import configure_logging
from app.core.middleware import RequestContextMiddleware
from app.core.security import require_api_key
from app.services.career.bundle import ModelStore
from app.services.career.recommender import CareerRecommender

logger = logging.getLogger(__name__)

DESCRIPTION = """
The machine-learning service of Skill Compass, called by the Node.js gateway.

Every response, success or error, is one JSON envelope:
`{"success", "data", "error": {"code", "message", "details"}, "meta": {"request_id", "api_version", "duration_ms"}}`.
Send `X-Request-ID` to have it echoed; one is generated otherwise.
When `API_KEYS` is configured, every `/api/v1` route needs `X-API-Key` or `Authorization: Bearer`.
"""


def _body_limit(settings: Settings):  # type: ignore[no-untyped-def]
    def limit(_path: str) -> int:
        return settings.max_json_body_bytes

    return limit


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; tests pass their own settings."""
    settings = settings or get_settings()
    configure_logging(fmt=settings.log_format, debug=settings.debug)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys:
            logger.warning(
                "API_KEYS is not set: /api/v1 routes are open to anyone who can reach them"
            )
        recommender = CareerRecommender(ModelStore(settings.career_model_dir))
        recommender.load()
        app.state.career = recommender
        app.state.models = {"career": recommender}
        yield

    app = FastAPIOffline(
        title="Skill Compass ML service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        debug=False,
    )
    app.state.settings = settings
    app.state.started_at = time.monotonic()

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(RequestContextMiddleware, body_limit=_body_limit(settings))
    register_exception_handlers(app)

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_key)])
    api.include_router(career.router)
    app.include_router(api)
    app.include_router(health.router)
    return app


app = create_app()
