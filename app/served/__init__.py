"""The served models, each declared once (`contract.py`); the app iterates over `SERVED`."""

from typing import Any

from app.served.career import CAREER
from app.served.clip import CLIP
from app.served.contract import ServedModelSpec

SERVED: tuple[ServedModelSpec[Any], ...] = (CAREER, CLIP)

__all__ = ["SERVED", "ServedModelSpec"]
