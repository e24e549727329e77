"""Health probes for orchestrators: overall health, liveness and readiness."""

import time
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app import __version__
from app.api.responses import errors
from app.core.envelope import error_response, ok
from app.core.exceptions import InvalidInput
from app.schemas.envelope import Envelope
from app.schemas.health import Liveness, ModelStatus, Readiness, health_schema
from app.services.served import ServedModel
from app.utils.text import redact_paths


def _models(request: Request) -> dict[str, ModelStatus]:
    """Each model's status, its error with directories cut (these probes need no key; the
    log has the full message)."""
    models = {}
    served: dict[str, ServedModel] = request.app.state.models
    for name, service in served.items():
        status = service.status()
        if status.error:
            status = status.model_copy(update={"error": redact_paths(status.error)})
        models[name] = status
    return models


def health_router(statuses: Sequence[type[ModelStatus]]) -> APIRouter:
    """The health probes of an app serving models with these status types: /health's
    schema is their union."""
    router = APIRouter(prefix="/health", tags=["health"])
    schema = health_schema(statuses)

    @router.get("", response_model=Envelope[schema], summary="Service health")  # type: ignore[valid-type]
    async def health(request: Request) -> Response:
        """`ok` when every enabled model is loaded, `loading` while one still loads, `degraded`
        when one failed; each model's state and why (CLIP adds its runtime, batching and cache)."""
        models = _models(request)
        states = {m.state for m in models.values()}
        status = (
            "degraded" if "unavailable" in states else "loading" if "loading" in states else "ok"
        )
        # Validated: a status of a type the schema does not declare is an error, not dropped.
        return ok(
            schema.model_validate(
                {
                    "status": status,
                    "version": __version__,
                    "uptime_seconds": round(time.monotonic() - request.app.state.started_at, 1),
                    "models": models,
                }
            )
        )

    router.add_api_route(
        "/live", live, methods=["GET"], response_model=Envelope[Liveness], summary="Liveness probe"
    )
    router.add_api_route(
        "/ready",
        ready,
        methods=["GET"],
        response_model=Envelope[Readiness],
        responses=errors(422, 503),
        summary="Readiness probe",
    )
    return router


async def live() -> Response:
    """200 while the process can answer."""
    return ok(Liveness(status="alive"))


ReadyModels = Annotated[
    list[str] | None,
    Query(
        alias="model",
        description="The models this probe asks for (repeatable: `?model=career&model=clip`). "
        "Each must be loaded; the others need only have finished loading, loaded or not, so "
        "a pod whose CLIP cannot load stays ready for career. Without it: every enabled "
        "model must be loaded.",
    ),
]


async def ready(request: Request, model: ReadyModels = None) -> Response:
    """200 when the asked-for models (all enabled ones by default) are loaded; else 503
    with the reasons."""
    models = _models(request)
    unknown = sorted(set(model or ()) - set(models))
    if unknown:
        raise InvalidInput(
            f"Unknown model {', '.join(unknown)}; the models are {', '.join(sorted(models))}.",
            details=[{"field": "model", "message": f"one of {sorted(models)}"}],
        )
    wanted = set(model or ())
    reasons = []
    for name, m in models.items():
        if m.state == "loading":
            reasons.append(f"{name}: still loading")
        elif m.state == "unavailable" and (not wanted or name in wanted):
            reasons.append(f"{name}: {m.error}")
        elif m.state == "disabled" and name in wanted:
            reasons.append(f"{name}: disabled")
    if reasons:
        return error_response(
            503,
            "NOT_READY",
            "Not every model asked for is loaded.",
            [{"reason": r} for r in reasons],
        )
    return ok(Readiness(ready=True, reasons=[]))
