"""Dynamic batching: the rows of concurrent requests, one forward pass per tower."""

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.core import metrics
from app.schemas.health import ClipBatching

# Automatic batch wait: this share of the last forward pass of the same tower. Scaling the
# wait with the model's own time keeps waiting for stragglers a fixed fraction of the work
# on any machine, a slow CPU or a fast GPU, with nothing to tune per host; the bounds keep
# the wait from vanishing after a tiny pass or stretching after a huge one.
AUTO_WAIT_SHARE = 0.2
AUTO_WAIT_BOUNDS_S = (0.001, 0.1)

IMAGES, TEXTS = "images", "texts"
TOWERS = {IMAGES: "image", TEXTS: "text"}  # the `tower` label of the metrics


@dataclass
class _Job:
    kind: str
    rows: Any  # numpy array or tensor, first axis = rows
    count: int
    future: Future[np.ndarray] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    """Collects rows of concurrent requests into one forward pass per tower.

    A batch starts with the oldest queued job and takes the next jobs of the same kind, up
    to `max_batch` rows. It waits for more only while fewer rows are queued than
    `expected(kind)` says are coming (the engine: all it can take while admitted work is
    still being decoded, else as many as were in flight at once recently, since the clients
    just answered are about to send again). A lone client never waits, except in the
    DEMAND_WINDOW_S after a burst. The wait ends `wait_s` after the first job arrived
    (None: AUTO_WAIT_SHARE of the tower's last forward pass). All forward passes run on
    this one thread: torch's intra-op pool belongs to it alone.
    """

    def __init__(
        self,
        forward: Callable[[str, list[Any]], np.ndarray],
        *,
        max_batch: int,
        wait_s: float | None,
        expected: Callable[[str], int],
        on_start: Callable[[], object] | None = None,
    ) -> None:
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._forward = forward
        self._expected = expected
        self._on_start = on_start
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._last_forward_s = {IMAGES: 0.0, TEXTS: 0.0}
        self.batches = {IMAGES: 0, TEXTS: 0}
        self.rows = {IMAGES: 0, TEXTS: 0}
        self._thread = threading.Thread(target=self._loop, name="clip-batcher", daemon=True)
        self._thread.start()

    def submit(self, kind: str, rows: Any) -> "Future[np.ndarray]":
        job = _Job(kind, rows, len(rows))
        with self._cond:
            if self._closed:
                raise RuntimeError("the CLIP batcher is closed")
            self._queue.append(job)
            metrics.CLIP_QUEUE_DEPTH.inc()
            self._cond.notify()
        return job.future

    def wake(self) -> None:
        """Re-check the waiting condition (work that was being prepared has gone)."""
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def stats(self) -> ClipBatching:
        batches, images = self.batches[IMAGES], self.rows[IMAGES]
        return ClipBatching(
            max_batch=self.max_batch,
            wait_ms=round(self._wait_s(IMAGES) * 1000, 3),
            wait_auto=self.wait_s is None,
            batches=batches,
            images=images,
            mean_batch_size=round(images / batches, 3) if batches else 0.0,
            text_batches=self.batches[TEXTS],
            texts=self.rows[TEXTS],
        )

    def _wait_s(self, kind: str) -> float:
        if self.wait_s is not None:
            return self.wait_s
        low, high = AUTO_WAIT_BOUNDS_S
        return min(high, max(low, AUTO_WAIT_SHARE * self._last_forward_s[kind]))

    def _queued(self, kind: str) -> int:
        return sum(job.count for job in self._queue if job.kind == kind)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                for job in self._queue:
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_exception(RuntimeError("the CLIP batcher is closed"))
                metrics.CLIP_QUEUE_DEPTH.dec(len(self._queue))
                self._queue.clear()
                return None
            kind = self._queue[0].kind
            deadline = self._queue[0].enqueued + self._wait_s(kind)
            while self._queued(kind) < min(self.max_batch, self._expected(kind)):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            jobs: list[_Job] = []
            rows = 0
            for job in list(self._queue):
                if job.kind != kind:
                    continue
                if jobs and rows + job.count > self.max_batch:
                    break
                self._queue.remove(job)
                metrics.CLIP_QUEUE_DEPTH.dec()
                if job.future.set_running_or_notify_cancel():  # False: its caller gave up
                    jobs.append(job)
                    rows += job.count
            return jobs

    def _loop(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while (jobs := self._next_batch()) is not None:
            if not jobs:  # every job taken had been cancelled
                continue
            try:
                out = self._run(jobs[0].kind, [job.rows for job in jobs])
            except BaseException as exc:  # hand every error to the waiting requests
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                job.future.set_result(out[start : start + job.count])
                start += job.count

    def _run(self, kind: str, parts: list[Any]) -> np.ndarray:
        """One forward pass, or one per `max_batch` rows of a single oversized job."""
        if len(parts) == 1 and len(parts[0]) > self.max_batch:
            rows = parts[0]
            chunks = [[rows[i : i + self.max_batch]] for i in range(0, len(rows), self.max_batch)]
        else:
            chunks = [parts]
        outputs = []
        for chunk in chunks:
            started = time.perf_counter()
            outputs.append(self._forward(kind, chunk))
            seconds = time.perf_counter() - started
            self._last_forward_s[kind] = seconds
            rows = sum(len(p) for p in chunk)
            self.batches[kind] += 1
            self.rows[kind] += rows
            tower = TOWERS[kind]
            metrics.CLIP_BATCH_SIZE.labels(tower).observe(rows)
            metrics.CLIP_INFERENCE.labels(tower).observe(seconds)
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
