"""The CLIP serving engine: admission, parallel preprocessing, dynamic batching, caching.

    request -> cheap checks (bytes, header pixels) -> admission (images in flight,
    CLIP_MAX_WAITING; 429 beyond) -> decode + preprocess in a pool of
    CLIP_PREPROCESS_WORKERS threads (PIL + numpy, straight to the model's input size)
    -> Batcher (rows of concurrent requests, one forward pass) -> embeddings

Every stage is bounded: admission bounds the work queued, the pool bounds how many images
are decoded at once (and so the decode memory), the batch size bounds a forward pass.
"""

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import numpy as np
from PIL import Image

from app.core.exceptions import ImageTooLarge, Overloaded
from app.services.clip.preprocess import MIN_DECODED_SIDE, ImageSpec, to_array
from app.services.clip.runtime import ClipMeta, Runtime
from app.utils.images import load_image, open_image

logger = logging.getLogger(__name__)

# Texts are short and repeat (tags): their embeddings are cached in a small LRU of this size.
TEXT_CACHE_MB = 16.0
# Seconds a client is told to wait after a 429.
OVERLOADED_RETRY_AFTER_S = 1
# How long a peak of work in flight counts as the current demand (a few batch periods).
DEMAND_WINDOW_S = 2.0
# Automatic batch wait: this share of the last forward pass of the same tower, so waiting
# for stragglers costs at most ~20% of the model's time (CPU: tens of ms; GPU: ~1-3 ms).
AUTO_WAIT_SHARE = 0.2
AUTO_WAIT_BOUNDS_S = (0.001, 0.1)


@dataclass
class ImageInput:
    """Raw bytes of one uploaded image and the field it came from (for error messages)."""

    data: bytes
    field: str
    filename: str | None = None


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
                raise Overloaded(
                    f"The CLIP model has {self.in_flight} images or texts in flight (limit "
                    f"{self.limit}); retry in {OVERLOADED_RETRY_AFTER_S} s.",
                    headers={"Retry-After": str(OVERLOADED_RETRY_AFTER_S)},
                )
            self.in_flight += units
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= units


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


class EmbeddingCache:
    """A thread-safe LRU of embeddings bounded in megabytes (0 disables it)."""

    def __init__(self, max_mb: float) -> None:
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.hits = 0
        self.misses = 0
        self.bytes = 0
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _cost(key: str, value: np.ndarray) -> int:
        return value.nbytes + len(key) + 100  # plus the entry's own overhead, roughly

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        cost = self._cost(key, value)
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= self._cost(key, old)
            self._items[key] = value
            self.bytes += cost
            while self.bytes > self.max_bytes:
                evicted_key, evicted = self._items.popitem(last=False)
                self.bytes -= self._cost(evicted_key, evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "size_mb": round(self.bytes / 2**20, 6),
            "entries": len(self._items),
        }


IMAGES, TEXTS = "images", "texts"


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

    def stats(self) -> dict[str, Any]:
        batches, images = self.batches[IMAGES], self.rows[IMAGES]
        return {
            "max_batch": self.max_batch,
            "wait_ms": round(self._wait_s(IMAGES) * 1000, 3),
            "wait_auto": self.wait_s is None,
            "batches": batches,
            "images": images,
            "mean_batch_size": round(images / batches, 3) if batches else 0.0,
            "text_batches": self.batches[TEXTS],
            "texts": self.rows[TEXTS],
        }

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
            self._last_forward_s[kind] = time.perf_counter() - started
            self.batches[kind] += 1
            self.rows[kind] += sum(len(p) for p in chunk)
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)


class ClipEngine:
    """Every CLIP forward pass goes through here; use cases live in ClipService."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        meta: ClipMeta,
        tokenize: Callable[[list[str]], np.ndarray],
        fallback_preprocess: Callable[[Image.Image], Any] | None = None,
        identity: str,
        max_waiting: int,
        max_batch: int,
        wait_ms: float,
        preprocess_workers: int,
        cache_mb: float,
        max_pixels: int,
        max_upload_bytes: int,
        jpeg_device: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.meta = meta
        self.tokenize = tokenize
        self.fallback_preprocess = fallback_preprocess
        self.identity = identity
        self.max_pixels = max_pixels
        self.max_upload_bytes = max_upload_bytes
        self.spec = ImageSpec.from_open_clip(meta.preprocess)
        if self.spec is None and fallback_preprocess is None:
            raise ValueError(f"no preprocessing reproduces {meta.preprocess}")
        self.jpeg_device = jpeg_device if self.spec is not None else None
        self.admission = Admission(max_waiting)
        self.images_cache = EmbeddingCache(cache_mb)
        self.texts_cache = EmbeddingCache(TEXT_CACHE_MB)
        self.flows = {IMAGES: Flow(), TEXTS: Flow()}
        self.preprocess_workers = preprocess_workers
        self._pool = ThreadPoolExecutor(preprocess_workers, thread_name_prefix="clip-preprocess")
        self.batcher = Batcher(
            self._forward,
            max_batch=max_batch,
            wait_s=wait_ms / 1000 if wait_ms > 0 else None,
            expected=self._expected,
            on_start=runtime.prepare_thread,
        )

    def close(self) -> None:
        self.batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.runtime.close()

    def stats(self) -> dict[str, Any]:
        return {
            "batching": self.batcher.stats(),
            "cache": self.images_cache.stats(),
            "preprocess_workers": self.preprocess_workers,
            "in_flight": self.admission.in_flight,
            "max_waiting": self.admission.limit,
            "overloaded": self.admission.refused,
        }

    # -- images ---------------------------------------------------------------------------
    async def encode_images(self, items: Sequence[ImageInput]) -> np.ndarray:
        """L2-normalised embeddings, one row per image, in order."""
        for item in items:
            if len(item.data) > self.max_upload_bytes:
                raise ImageTooLarge(
                    f"{item.field} is {len(item.data)} bytes; the limit is {self.max_upload_bytes}.",
                    details=[{"field": item.field, "max_bytes": self.max_upload_bytes}],
                )
        keys, found, pending = await anyio.to_thread.run_sync(self._check, items)
        flow = self.flows[IMAGES]
        with (
            self.admission.hold(len(pending)),
            flow.track(len(pending), self.batcher.wake) as prepared,
        ):
            if pending:
                rows = await self._prepare([(image, items[i]) for i, image in pending])
                prepared()
                vectors = await asyncio.wrap_future(self.batcher.submit(IMAGES, rows))
                for (index, _), vector in zip(pending, vectors, strict=True):
                    found[index] = vector
                    self.images_cache.put(keys[index], vector.copy())
        return np.stack(found)  # type: ignore[arg-type]

    def _check(
        self, items: Sequence[ImageInput]
    ) -> tuple[list[str], list[np.ndarray | None], list[tuple[int, Image.Image]]]:
        """Cache look-ups, then header checks (cheap, no pixels) of the images not cached:
        cache keys, cached vectors (None where missing), and (index, opened image) to do."""
        keys = [f"{self.identity}:{hashlib.sha256(item.data).hexdigest()}" for item in items]
        found = [self.images_cache.get(key) for key in keys]
        pending = [
            (i, open_image(item.data, max_pixels=self.max_pixels, name=item.field))
            for i, (item, vector) in enumerate(zip(items, found, strict=True))
            if vector is None
        ]
        return keys, found, pending

    async def _prepare(self, pending: list[tuple[Image.Image, ImageInput]]) -> Any:
        """Decode and preprocess in the pool: one job per image (JPEGs on the GPU: one per
        request, decoded as a batch). Rows in order, as one array (or tensor on the GPU)."""
        loop = asyncio.get_running_loop()
        on_device = [
            i for i, (image, _) in enumerate(pending) if self.jpeg_device and image.format == "JPEG"
        ]
        tasks = {
            i: loop.run_in_executor(self._pool, self._preprocess_one, image, item.field)
            for i, (image, item) in enumerate(pending)
            if i not in on_device
        }
        results = dict(zip(tasks, await _all_or_nothing(list(tasks.values())), strict=True))
        if not on_device:
            return np.stack([results[i] for i in range(len(pending))])
        jpegs = [pending[i] for i in on_device]
        results.update(
            zip(
                on_device,
                await loop.run_in_executor(self._pool, self._decode_jpegs, jpegs),
                strict=True,
            )
        )
        ordered = [results[i] for i in range(len(pending))]
        return await loop.run_in_executor(self._pool, self._on_device, ordered)

    def _on_device(self, rows: list[Any]) -> Any:
        """Rows decoded on the device and rows from Pillow as one tensor on the device."""
        import torch

        return torch.cat(
            [
                torch.from_numpy(row[None]).to(self.jpeg_device)
                if isinstance(row, np.ndarray)
                else row
                for row in rows
            ]
        )

    def _preprocess_one(self, image: Image.Image, field: str) -> np.ndarray:
        """Decode and preprocess one image; its bitmap is released as soon as it is done."""
        try:
            if self.spec is None:  # a resize mode preprocess.py does not reproduce: open_clip's
                assert self.fallback_preprocess is not None
                rgb = load_image(image, min_side=MIN_DECODED_SIDE, name=field).image
                return np.asarray(self.fallback_preprocess(rgb).numpy())
            return to_array(load_image(image, min_side=self.spec.min_side, name=field), self.spec)
        finally:
            image.close()

    def _decode_jpegs(self, jpegs: list[tuple[Image.Image, ImageInput]]) -> list[Any]:
        """JPEGs decoded, resized and normalised as a batch on `jpeg_device`. JPEGs with an
        EXIF orientation (nvJPEG ignores it), and any the device decoder refuses (CMYK,
        some progressive files), go through Pillow."""
        from app.services.clip.gpu_decode import decode_jpegs

        assert self.spec is not None and self.jpeg_device is not None
        upright = [i for i, (image, _) in enumerate(jpegs) if _orientation(image) in (None, 1)]
        rows: dict[int, Any] = {}
        if upright:
            try:
                decoded = decode_jpegs(
                    [jpegs[i][1].data for i in upright], self.spec, self.jpeg_device
                )
                rows.update(zip(upright, decoded, strict=True))
            except Exception as exc:
                logger.info("device JPEG decode failed (%s); decoding with Pillow", exc)
        for i, (image, item) in enumerate(jpegs):
            if i in rows:
                image.close()
            else:
                rows[i] = self._preprocess_one(image, item.field)
        return [rows[i] for i in range(len(jpegs))]

    def _expected(self, kind: str) -> int:
        """Rows the batcher may wait for: all it can take while some are still being
        prepared, else as many as were in flight at once recently."""
        flow = self.flows[kind]
        return self.batcher.max_batch if flow.preparing else flow.recent_peak()

    # -- texts ----------------------------------------------------------------------------
    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings; repeated texts (tags) come from the text cache."""
        found = {text: self.texts_cache.get(text) for text in dict.fromkeys(texts)}
        missing = [text for text, vector in found.items() if vector is None]
        flow = self.flows[TEXTS]
        with (
            self.admission.hold(len(missing)),
            flow.track(len(missing), self.batcher.wake) as prepared,
        ):
            if missing:
                tokens = await anyio.to_thread.run_sync(self.tokenize, missing)
                prepared()
                vectors = await asyncio.wrap_future(self.batcher.submit(TEXTS, tokens))
                for text, vector in zip(missing, vectors, strict=True):
                    found[text] = vector
                    self.texts_cache.put(text, vector.copy())
        return np.stack([found[text] for text in texts])  # type: ignore[misc]

    # -- the forward pass (batcher thread) ------------------------------------------------
    def _forward(self, kind: str, parts: list[Any]) -> np.ndarray:
        if kind == TEXTS:
            return self.runtime.encode_texts(parts)
        return self.runtime.encode_images(parts)


def _orientation(image: Image.Image) -> int | None:
    value = image.getexif().get(0x0112)
    return value if isinstance(value, int) else None


async def _all_or_nothing(tasks: list["asyncio.Future[Any]"]) -> list[Any]:
    """Results of all tasks; on the first failure, cancel those not started, wait for those
    running (their work stays counted by admission until it ends), then raise it."""
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    failed = [task for task in tasks if task in done and task.exception() is not None]
    if failed:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise failed[0].exception()  # type: ignore[misc]
    return [task.result() for task in tasks]
