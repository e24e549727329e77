"""Health probes for orchestrators: overall health, liveness and readiness."""

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app import __version__
from app.api.responses import errors
from app.core.envelope import error_response, ok
from app.core.exceptions import InvalidInput
from app.schemas.envelope import Envelope
from app.schemas.health import Health, Liveness, ModelHealth, Readiness
from app.services.served import ServedModel
from app.utils.text import redact_paths

router = APIRouter(prefix="/health", tags=["health"])


def _models(request: Request) -> dict[str, ModelHealth]:
    """Each model's status, its error with directories cut (these probes need no key; the
    log has the full message)."""
    models = {}
    served: dict[str, ServedModel] = request.app.state.models
    for name, service in served.items():
        status = service.status()
        if status.get("error"):
            status["error"] = redact_paths(status["error"])
        models[name] = ModelHealth(**status)
    return models


@router.get("", response_model=Envelope[Health], summary="Service health")
async def health(request: Request) -> Response:
    """`ok` when every enabled model is loaded, `loading` while one still loads, `degraded`
    when one failed; each model's state and why (CLIP adds its runtime, batching and cache)."""
    models = _models(request)
    states = {m.state for m in models.values()}
    return ok(
        Health(
            status="degraded"
            if "unavailable" in states
            else "loading"
            if "loading" in states
            else "ok",
            version=__version__,
            uptime_seconds=round(time.monotonic() - request.app.state.started_at, 1),
            models=models,
        )
    )


@router.get("/live", response_model=Envelope[Liveness], summary="Liveness probe")
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


@router.get(
    "/ready",
    response_model=Envelope[Readiness],
    responses=errors(422, 503),
    summary="Readiness probe",
)
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
