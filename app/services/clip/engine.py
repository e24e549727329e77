"""The CLIP serving engine: admission, parallel preprocessing, dynamic batching, caching.

    request -> bytes checked, content cache -> admission (images in flight,
    CLIP_MAX_WAITING; 429 beyond) -> structure scan, open, decode and preprocess in
    CLIP_PREPROCESS_WORKERS worker processes (PIL + numpy, straight to the model's
    input size, under a deadline and a memory limit) -> Batcher (rows of concurrent
    requests, one forward pass) -> embeddings

Every stage is bounded: admission bounds the work queued (header parsing included), the
workers bound how many images are decoded at once and what each may cost, the batch size
bounds a forward pass. The parts live beside it: `admission.py`, `decode_pool.py`,
`batcher.py`, `embedding_cache.py`.
"""

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np
from PIL import Image

from app.config import Settings
from app.core import metrics
from app.core.exceptions import ImageTooLarge
from app.services.clip.admission import Admission, Flow
from app.services.clip.batcher import IMAGES, TEXTS, Batcher
from app.services.clip.decode_pool import DecodeBudget, DecodePool
from app.services.clip.embedding_cache import EmbeddingCache
from app.services.clip.preprocess import DecodeMode, ImageSpec
from app.services.clip.runtime import ClipMeta, Runtime
from app.utils.image_structure import StructureLimits, check_structure
from app.utils.images import open_image

logger = logging.getLogger(__name__)

# Texts are short and repeat (tags): their embeddings are cached in a small LRU of this size.
TEXT_CACHE_MB = 16.0


@dataclass
class ImageInput:
    """Raw bytes of one uploaded image and the field it came from (for error messages)."""

    data: bytes
    field: str
    filename: str | None = None


@dataclass(frozen=True)
class EngineSettings:
    """How an engine serves, fixed when it is built: its budgets, batching, caches and
    image decoding."""

    identity: str  # the model and its weights: cached embeddings are keyed by it
    max_waiting: int  # images and texts admitted at once (CLIP_MAX_WAITING); 429 beyond
    max_batch: int  # most rows in one forward pass
    wait_ms: float  # longest wait for more rows; 0 follows the last forward pass
    preprocess_workers: int  # decode worker processes
    cache_mb: float  # the image-embedding cache; 0 disables it
    budget: DecodeBudget  # what one image may cost to decode
    jpeg_device: str | None = None  # decode JPEGs in batches on this device (cuda)
    decode: DecodeMode = "exact"
    fast_factor: int = 2  # `fast` decodes the shorter side to >= this x the input

    @classmethod
    def from_settings(
        cls,
        s: Settings,
        *,
        identity: str,
        max_batch: int,
        jpeg_device: str | None,
        decode: DecodeMode,
        fast_factor: int,
    ) -> "EngineSettings":
        """The engine's settings from the service's (CLIP_*, IMAGE_*, MAX_UPLOAD_MB), for a
        model, a batch size and a decoding already chosen on this machine."""
        return cls(
            identity=identity,
            max_waiting=s.clip_max_waiting or 2 * max_batch,
            max_batch=max_batch,
            wait_ms=s.clip_batch_wait_ms,
            # One more than the cores: while bombs run to their deadline on every core, a
            # worker is still free for ordinary images.
            preprocess_workers=s.clip_preprocess_workers or len(os.sched_getaffinity(0)) + 1,
            cache_mb=s.clip_cache_mb,
            budget=DecodeBudget(
                max_bytes=s.max_upload_bytes,
                max_pixels=s.max_image_pixels,
                structure=StructureLimits(
                    max_scans=s.image_max_scans, max_chunks=s.image_max_chunks
                ),
                timeout_s=s.image_decode_timeout_ms / 1000,
                memory_mb=s.image_decode_max_mb,
            ),
            jpeg_device=jpeg_device,
            decode=decode,
            fast_factor=fast_factor,
        )


class ClipEngine:
    """Every CLIP forward pass goes through here; use cases live in ClipService."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        meta: ClipMeta,
        tokenize: Callable[[list[str]], np.ndarray],
        fallback_preprocess: Callable[[Image.Image], Any] | None = None,
        settings: EngineSettings,
    ) -> None:
        self.runtime = runtime
        self.meta = meta
        self.tokenize = tokenize
        self.fallback_preprocess = fallback_preprocess
        self.settings = settings
        self.identity = settings.identity
        self.budget = settings.budget
        self.spec = ImageSpec.from_open_clip(meta.preprocess, settings.decode, settings.fast_factor)
        if self.spec is None and fallback_preprocess is None:
            raise ValueError(f"no preprocessing reproduces {meta.preprocess}")
        self.jpeg_device = settings.jpeg_device if self.spec is not None else None
        self.admission = Admission(settings.max_waiting)
        self.images_cache = EmbeddingCache(settings.cache_mb)
        self.texts_cache = EmbeddingCache(TEXT_CACHE_MB)
        self.flows = {IMAGES: Flow(), TEXTS: Flow()}
        workers = self.preprocess_workers = settings.preprocess_workers
        # One thread per decode worker: each waits on its worker, off the event loop.
        self.decoder = DecodePool(workers, self.spec, settings.budget)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="clip-preprocess")
        self.batcher = Batcher(
            self._forward,
            max_batch=settings.max_batch,
            wait_s=settings.wait_ms / 1000 if settings.wait_ms > 0 else None,
            expected=self._expected,
            on_start=runtime.prepare_thread,
        )

    def close(self) -> None:
        self.batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.decoder.close()
        self.runtime.close()

    # -- images ---------------------------------------------------------------------------
    async def encode_images(self, items: Sequence[ImageInput]) -> np.ndarray:
        """L2-normalised embeddings, one row per image, in order."""
        max_bytes = self.budget.max_bytes
        for item in items:
            if len(item.data) > max_bytes:
                raise ImageTooLarge(
                    f"{item.field} is {len(item.data)} bytes; the limit is {max_bytes}.",
                    details=[{"field": item.field, "max_bytes": max_bytes}],
                )
        if self.images_cache.enabled:
            keys, found = await anyio.to_thread.run_sync(self._cached, items)
        else:  # CLIP_CACHE_MB=0: nothing to look up, so no hashing and no thread hop
            keys, found = [], [None] * len(items)
        pending = [i for i, vector in enumerate(found) if vector is None]
        flow = self.flows[IMAGES]
        with (
            self.admission.hold(len(pending)),
            flow.track(len(pending), self.batcher.wake) as prepared,
        ):
            if pending:
                rows = await self._prepare([items[i] for i in pending])
                prepared()
                vectors = await asyncio.wrap_future(self.batcher.submit(IMAGES, rows))
                for index, vector in zip(pending, vectors, strict=True):
                    found[index] = vector
                    if keys:
                        self.images_cache.put(keys[index], vector.copy())
        return np.stack(found)  # type: ignore[arg-type]

    def _cached(self, items: Sequence[ImageInput]) -> tuple[list[str], list[np.ndarray | None]]:
        """Cache keys by content, and the cached vectors (None where missing)."""
        keys = [f"{self.identity}:{hashlib.sha256(item.data).hexdigest()}" for item in items]
        found = [self.images_cache.get(key) for key in keys]
        hits = sum(vector is not None for vector in found)
        metrics.CLIP_CACHE_HITS.inc(hits)
        metrics.CLIP_CACHE_MISSES.inc(len(found) - hits)
        return keys, found

    async def _prepare(self, pending: list[ImageInput]) -> Any:
        """Decode and preprocess in the workers: one job per image (JPEGs on the GPU: one
        per request, decoded as a batch). Rows in order, as one array (or tensor on the GPU)."""
        loop = asyncio.get_running_loop()
        on_device = [
            i for i, item in enumerate(pending) if self.jpeg_device and _is_jpeg(item.data)
        ]
        tasks = {
            i: loop.run_in_executor(self._pool, self._preprocess_one, item)
            for i, item in enumerate(pending)
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

    def _preprocess_one(self, item: ImageInput) -> np.ndarray:
        """Decode and preprocess one image in a decode worker."""
        started = time.perf_counter()
        try:
            prepared = self.decoder.prepare(item.data, item.field)
            if self.spec is None:  # a resize mode preprocess.py does not reproduce: open_clip's
                assert self.fallback_preprocess is not None
                return np.asarray(self.fallback_preprocess(prepared).numpy())
            return prepared  # type: ignore[no-any-return]
        finally:
            metrics.CLIP_PREPROCESS.observe(time.perf_counter() - started)

    def _decode_jpegs(self, jpegs: list[ImageInput]) -> list[Any]:
        """JPEGs decoded, resized and normalised as a batch on `jpeg_device`. JPEGs with an
        EXIF orientation (nvJPEG ignores it), and any the device decoder refuses (CMYK,
        some progressive files), go through the decode workers."""
        from app.services.clip.gpu_decode import decode_jpegs

        assert self.spec is not None and self.jpeg_device is not None
        upright = []
        for i, item in enumerate(jpegs):
            check_structure(item.data, self.budget.structure, name=item.field)
            image = open_image(item.data, max_pixels=self.budget.max_pixels, name=item.field)
            with image:
                if _orientation(image) in (None, 1):
                    upright.append(i)
        rows: dict[int, Any] = {}
        if upright:
            try:
                decoded = decode_jpegs(
                    [jpegs[i].data for i in upright], self.spec, self.jpeg_device
                )
                rows.update(zip(upright, decoded, strict=True))
            except Exception as exc:
                logger.info("device JPEG decode failed (%s); decoding with Pillow", exc)
        for i, item in enumerate(jpegs):
            if i not in rows:
                rows[i] = self._preprocess_one(item)
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


def _is_jpeg(data: bytes) -> bool:
    return data.startswith(b"\xff\xd8\xff")


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
