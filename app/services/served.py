"""What every model the service serves offers the rest of the app (health, later metrics)."""

from typing import Any, Protocol


class ServedModel(Protocol):
    """A model with a life cycle: loaded once (in the background), then serving.

    `status()` is what /health shows for it: `state` (`loading`, `loaded`, `unavailable`
    or `disabled`), `version`, `load_seconds`, `error` (why it is not loaded, or what it
    fell back from), plus model-specific fields that `app/schemas/health.py` describes.
    """

    name: str

    def load(self) -> None:
        """Load (or reload) the model here and now; failures are recorded, not raised."""

    def status(self) -> dict[str, Any]:
        """The model's health as /health reports it."""
