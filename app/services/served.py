"""What every model the service serves offers the rest of the app (health, metrics)."""

from typing import Any, Protocol

from app.domain.enums import ModelState


class ServedModel(Protocol):
    """A model with a life cycle: loaded once (in the background), then serving.

    `status()` is what /health shows for it: `state`, `version`, `load_seconds`, `error`
    (why it is not loaded, or what it fell back from), plus model-specific fields that
    `app/schemas/health.py` describes.
    """

    name: str

    @property
    def state(self) -> ModelState:
        """Where the model is in its life cycle."""

    def load(self) -> None:
        """Load (or reload) the model here and now; failures are recorded, not raised."""

    def status(self) -> dict[str, Any]:
        """The model's health as /health reports it."""
