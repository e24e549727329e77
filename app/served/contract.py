"""What one served model declares, in one place: its service and lifecycle, its routers,
its body limits and its /health status type. The app iterates over these declarations;
adding a model is adding one of them (a module in this package, listed in `SERVED`)."""

from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import APIRouter

from app.config import Settings
from app.schemas.health import ModelStatus
from app.services.served import ServedModel

S = TypeVar("S", bound=ServedModel)


def _no_limits(settings: Settings) -> Mapping[str, int]:
    return {}


@dataclass(frozen=True)
class ServedModelSpec(Generic[S]):
    """One served model: how it is built, kept current and closed, and what it adds to
    the HTTP surface."""

    name: str
    """The model's key in /health, /health/ready?model= and the app's state."""
    build: Callable[[Settings], S]
    """Builds the service; nothing slow here (loading happens in `serve`)."""
    serve: Callable[[S, Settings], Coroutine[Any, Any, None]]
    """Runs in the lifespan's task group: loads the model in the background (the process
    is live meanwhile) and may keep it current until cancelled at shutdown."""
    status: type[ModelStatus]
    """The type its `status()` returns: one member of /health's `models` union."""
    api_routers: tuple[APIRouter, ...] = ()
    """Mounted under /api/v1, behind the API key."""
    routers: tuple[APIRouter, ...] = ()
    """Mounted at the root (their own prefix and key check)."""
    body_limits: Callable[[Settings], Mapping[str, int]] = _no_limits
    """Request-body limits by path for its routes; others get MAX_JSON_BODY_KB."""


def body_limit(settings: Settings, served: Iterable[ServedModelSpec[Any]]) -> Callable[[str], int]:
    """Per-route body limits, from every served model's declaration. Settings.largest_body_bytes
    must stay the largest of them."""
    limits: dict[str, int] = {}
    for spec in served:
        for path, size in spec.body_limits(settings).items():
            if path in limits:
                raise ValueError(f"{spec.name} limits {path}, which another model already limits")
            limits[path] = size

    def limit(path: str) -> int:
        return limits.get(path.rstrip("/"), settings.max_json_body_bytes)

    return limit
