"""What every model the service serves offers the rest of the app (health, metrics)."""

from typing import Protocol

from app.domain.enums import ModelState
from app.schemas.health import ModelStatus


class ServedModel(Protocol):
    """A model with a life cycle: loaded once (in the background), then serving, then closed.

    `status()` is what /health shows for it: its own `ModelStatus` type (`state`,
    `version`, `load_seconds`, `error`, plus the model's fields), declared once in
    `app/schemas/health.py`.
    """

    name: str

    @property
    def state(self) -> ModelState:
        """Where the model is in its life cycle."""

    def load(self) -> None:
        """Load (or reload) the model here and now; failures are recorded, not raised."""

    def status(self) -> ModelStatus:
        """The model's health as /health reports it."""

    def close(self) -> None:
        """Release what the model holds (threads, worker processes); at shutdown."""
