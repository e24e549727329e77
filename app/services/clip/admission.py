"""Accounting of the work the CLIP engine has admitted.

`Admission` is the per-process budget of images and texts in flight (429 beyond it);
`Flow` is one tower's share of that work as the batcher needs to see it: how much is still
being prepared, and how much was in flight at once recently.
"""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from app.core import metrics
from app.core.exceptions import Overloaded

# Seconds a client is told to wait after a 429.
OVERLOADED_RETRY_AFTER_S = 1
# How long a peak of work in flight counts as the current demand (a few batch periods).
DEMAND_WINDOW_S = 2.0


class Admission:
    """A per-process budget of work units (images, or texts to encode) in flight.

    A request is admitted whole or refused with 429; one larger than the whole budget is
    admitted only when nothing else is in flight, so it can never starve.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, units: int) -> Iterator[None]:
        if units <= 0:
            yield
            return
        with self._lock:
            if self.in_flight and self.in_flight + units > self.limit:
                self.refused += 1
                metrics.CLIP_OVERLOADED.inc()
                raise Overloaded(
                    f"The CLIP model has {self.in_flight} images or texts in flight (limit "
                    f"{self.limit}); retry in {OVERLOADED_RETRY_AFTER_S} s.",
                    retry_after=OVERLOADED_RETRY_AFTER_S,
                )
            self.in_flight += units
        metrics.CLIP_IMAGES_WAITING.inc(units)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= units
            metrics.CLIP_IMAGES_WAITING.dec(units)


class Flow:
    """The admitted work of one tower, as the batcher needs to see it: units still being
    prepared (decoded or tokenised), and the most units in flight at once recently."""

    def __init__(self) -> None:
        self.preparing = 0
        self.in_flight = 0
        self._peak = 0
        self._peak_at = 0.0
        self._lock = threading.Lock()

    def recent_peak(self) -> int:
        """The most units in flight at once over the last DEMAND_WINDOW_S seconds: what to
        expect again while clients keep their pace."""
        if time.monotonic() - self._peak_at <= DEMAND_WINDOW_S:
            return self._peak
        return self.in_flight

    @contextlib.contextmanager
    def track(self, units: int, wake: Callable[[], None]) -> Iterator[Callable[[], None]]:
        """Count `units` in flight until the block ends; call the yielded function once
        they are handed to the batcher (no longer being prepared)."""
        preparing = units

        def prepared() -> None:
            nonlocal preparing
            with self._lock:
                self.preparing -= preparing
            preparing = 0
            wake()

        with self._lock:
            self.preparing += units
            self.in_flight += units
            now = time.monotonic()
            if self.in_flight >= self._peak or now - self._peak_at > DEMAND_WINDOW_S:
                self._peak, self._peak_at = self.in_flight, now
        try:
            yield prepared
        finally:
            if preparing:
                prepared()
            with self._lock:
                self.in_flight -= units
