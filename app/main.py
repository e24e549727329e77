"""Application factory: middleware, handlers, routers and the models' lifespan in one place."""

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app import __version__
from app.api import metrics as metrics_route
from app.api.json_body import document_json_bodies
from app.api.responses import drop_unused_validation_bodies
from app.api.uploads import spool_uploads_in_upload_dir
from app.api.v1.health import health_router
from app.config import Settings, get_settings
from app.core import metrics
from app.core.dialect import ErrorDialectMiddleware
from app.core.handlers import register_exception_handlers
from app.core.logging import configure_logging
from app.core.middleware import BodyBudget, RequestContextMiddleware
from app.core.routes import RouteTemplates
from app.core.security import KeyPolicy, document_bearer_alternative, require_api_key
from app.core.telemetry import instrument
from app.served import SERVED
from app.served.contract import ServedModelSpec, body_limit
from app.services.career.recommender import CareerRecommender
from app.services.career.retrain import RetrainJobs
from app.services.outcomes.lifecycle import start_closed_loop
from app.services.served import ServedModel

logger = logging.getLogger(__name__)

DESCRIPTION = """
The machine-learning service of Skill Compass, called by the Node.js gateway.

Every response, success or error, is one JSON envelope:
`{"success", "data", "error": {"code", "message", "details"}, "meta": {"request_id", "api_version", "duration_ms"}}`.
Send `X-Request-ID` to have it echoed; one is generated otherwise.
When `API_KEYS` is configured, every `/api/v1` route needs `X-API-Key` or `Authorization: Bearer`.

`/v1/embeddings` and `/v1/models` speak OpenAI's API instead (requests, responses and
errors `{"error": {"message", "type", "param", "code"}}`), so OpenAI's clients work unchanged;
they take the same key, as a bearer token.
"""


async def _observe_models(served: list[ServedModel], every: float) -> None:
    """Record the models' states for /metrics in every worker, not only the one a scrape
    reaches."""
    while True:
        metrics.observe_models((model.name, model.status()) for model in served)
        await anyio.sleep(every)


async def _sweep_retrain_jobs(jobs: RetrainJobs, every: float) -> None:
    """Take over (or fail) retraining jobs whose process died with its server elsewhere:
    a job outlives the pod that ran it (scale-down, eviction)."""
    while True:
        await anyio.sleep(every)
        try:
            await anyio.to_thread.run_sync(jobs.sweep)
        except Exception:  # a bad sweep (the volume away for a moment) must not end it
            logger.exception("retrain job sweep failed")


def create_app(
    settings: Settings | None = None, served: Sequence[ServedModelSpec[Any]] = SERVED
) -> FastAPI:
    """Build the service; tests pass their own settings (and may add a served model)."""
    settings = settings or get_settings()
    configure_logging(fmt=settings.log_format, debug=settings.debug)
    names = [spec.name for spec in served]
    if len(set(names)) != len(names):
        raise ValueError(f"served models need distinct names: {names}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys:
            logger.warning(
                "API_KEYS is not set: /api/v1 and /v1 routes are open to anyone who can reach them"
            )
        # Starlette spools uploads over 1 MB to files there (spool_uploads_in_upload_dir).
        settings.upload_dir.mkdir(parents=True, exist_ok=True)
        services = {spec.name: spec.build(settings) for spec in served}
        app.state.models = services
        for name, service in services.items():  # app.state.career, app.state.clip, ...
            setattr(app.state, name, service)
        # Not served models: they work on the career model's store and recommender.
        recommender: CareerRecommender = services["career"]
        app.state.retrain = RetrainJobs(settings, recommender.store)
        # The outcome store connects lazily: its scheduler's first round migrates it in the
        # background, and a database that is down never delays start-up.
        app.state.outcomes, scheduler = start_closed_loop(settings, recommender, app.state.retrain)
        async with anyio.create_task_group() as tasks:
            for spec in served:  # each loads in the background: the process is live at once
                tasks.start_soon(spec.serve, services[spec.name], settings)
            tasks.start_soon(_observe_models, list(services.values()), settings.model_poll_seconds)
            tasks.start_soon(scheduler.run)
            tasks.start_soon(_sweep_retrain_jobs, app.state.retrain, settings.retrain_sweep_seconds)
            yield
            tasks.cancel_scope.cancel()
        app.state.outcomes.store.close()
        # Here on SIGTERM once the requests in flight have been answered (uvicorn waits up
        # to SHUTDOWN_GRACE_SECONDS for them), CLIP batches included.
        for service in services.values():
            service.close()
        app.state.retrain.close()  # a running retrain child is stopped and recorded
        if stop_tracing is not None:
            stop_tracing()  # flushes the spans still buffered

    common: dict[str, Any] = {
        "title": "Skill Compass ML service",
        "version": __version__,
        "description": DESCRIPTION,
        "lifespan": lifespan,
        "debug": False,
    }
    if settings.docs_enabled:  # Swagger UI and Redoc served from local files, no CDN
        app: FastAPI = FastAPIOffline(**common)
    else:  # no /docs, /redoc or /openapi.json
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **common)
    app.state.settings = settings
    app.state.started_at = time.monotonic()

    spool_uploads_in_upload_dir()
    app.add_middleware(
        RequestContextMiddleware,
        upload_dir=settings.upload_dir,
        body_limit=body_limit(settings, served),
        body_budget=BodyBudget(settings.max_body_bytes_in_flight),
        body_timeout=settings.body_timeout_seconds,
        key_check=KeyPolicy(app).problem,
        route_name=RouteTemplates(app),
    )
    # Outside the request middleware: its own 401s, 413s and 500s take the path's shape.
    app.add_middleware(ErrorDialectMiddleware)
    # Added last, so outermost: the request middleware's own 413s and 500s get CORS headers.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=[
            "Content-Type",
            "Authorization",
            "X-API-Key",
            "X-Request-ID",
            "traceparent",
            "tracestate",
        ],
        expose_headers=["X-Request-ID"],
    )
    register_exception_handlers(app)

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_key)])
    for spec in served:
        for router in spec.api_routers:
            api.include_router(router)
    app.include_router(api)
    for spec in served:
        for router in spec.routers:
            app.include_router(router)
    app.include_router(health_router([spec.status for spec in served]))
    if settings.metrics_enabled:
        app.include_router(metrics_route.router)
    document_bearer_alternative(app)
    document_json_bodies(app)
    drop_unused_validation_bodies(app)
    stop_tracing = instrument(app, settings)
    return app


app = create_app()
