"""ClipService: the CLIP use cases (compare, match, embeddings) and the model's lifecycle.

The model loads in the background (`start`): the process is live at once, and CLIP moves
through `loading` -> `loaded` | `unavailable` (with the reason) | `disabled`. Every
forward pass goes through the engine (`engine.py`): admission, parallel preprocessing,
dynamic batching, the content cache. Weights come from CLIP_MODEL_CACHE_DIR or a local
checkpoint (`weights.py`); what runs the forward passes (torch or ONNX Runtime, in which
precision) is chosen on this machine by `selection.py`. Tests load a tiny model through
this same path.
"""

import importlib.util
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.core.exceptions import InvalidInput, ModelLoading, ModelUnavailable
from app.domain.enums import Verdict
from app.schemas.clip import CompareResult, EncodingFormat, MatchResult, ModelRef, TagMatch
from app.schemas.health import ClipPreprocess, ClipStatus
from app.services.clip.engine import ClipEngine, EngineSettings, ImageInput
from app.services.clip.parity import FastAgreement
from app.services.clip.preprocess import DecodeMode
from app.services.clip.runtime import configure_torch
from app.services.clip.selection import Selection, select
from app.services.served import ModelState
from app.utils.text import brief_error
from app.utils.vectors import encode_rows

logger = logging.getLogger(__name__)


def _cuda_possible() -> bool:
    """Whether torch could see a GPU, decided without importing torch (seconds of a cached
    start): it needs torch installed and a GPU driver's device node."""
    if importlib.util.find_spec("torch") is None:
        return False
    return any(Path(node).exists() for node in ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg"))


# Kept for the benchmarks, which set torch up before building runtimes themselves.
_configure_torch = configure_torch


__all__ = ["ClipService", "Embeddings", "ImageInput"]


@dataclass(frozen=True)
class EmbeddingRow:
    index: int
    name: str | None  # the file name (images) or the text itself (texts)
    embedding: Any  # float32 row (np.ndarray), or its base64 text


@dataclass(frozen=True)
class Embeddings:
    """An embedding answer, shaped as the schema's EmbeddingResult. A dataclass of numpy
    rows rather than the pydantic model: the envelope (orjson) writes it directly, where a
    model would first turn every float32 into a Python float and validate it."""

    model: ModelRef
    encoding_format: EncodingFormat
    embeddings: list[EmbeddingRow]


# Seconds a client is told to wait while the model is loading.
LOADING_RETRY_AFTER_S = 5


class ClipService:
    """The CLIP model's lifecycle and use cases; the use cases are coroutines."""

    name = "clip"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state: ModelState = "loading" if settings.clip_enabled else "disabled"
        self.error: str | None = None if settings.clip_enabled else "disabled by CLIP_ENABLED=false"
        self.load_seconds: float | None = None
        self.loaded_at: int | None = None  # Unix time of the load, OpenAI's model `created`
        self.engine: ClipEngine | None = None
        self.selection: Selection | None = None
        self.agreement: FastAgreement | None = None  # CLIP_PREPROCESS=fast's, measured
        self.decode: DecodeMode = "exact"
        self.device = "cpu"
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()  # orders load()'s hand-over against close()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model on a background thread; returns at once."""
        if self.state != "loading" or self._thread is not None:
            return
        self._thread = threading.Thread(target=self.load, name="clip-load", daemon=True)
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until loading has ended (benchmarks, prefetch); True if loaded."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state == "loaded"

    def load(self) -> None:
        """Load the model here and now; on any failure keep the process up and record why."""
        if not self.settings.clip_enabled:
            return
        started = time.perf_counter()
        try:
            engine = self._build()
        except Exception as exc:  # no network, bad path, corrupt file, unknown name, ...
            # The full message (paths included) goes to the log; /health is public.
            logger.error("CLIP model not loaded: %s: %s", type(exc).__name__, exc)
            self.error = brief_error(exc, limit=2000)
            self.state = "unavailable"
            return
        with self._lock:
            if not self._closed:
                self.engine = engine
                self.error = None
                self.load_seconds = round(time.perf_counter() - started, 3)
                self.loaded_at = int(time.time())
                self.state = "loaded"
        if self.engine is not engine:  # shut down while loading
            engine.close()
            return
        logger.info(
            "CLIP %s (%s) loaded on %s in %.2fs, serving %s %s",
            self.settings.clip_model_name,
            engine.meta.weights_tag,
            self.device,
            self.load_seconds,
            engine.runtime.backend,
            engine.runtime.precision,
        )

    def _build(self) -> ClipEngine:
        s = self.settings
        cpu_only = s.clip_backend == "onnx" or s.clip_precision in ("int8", "bf16")
        if s.clip_device == "cpu" or (
            s.clip_device == "auto" and (cpu_only or not _cuda_possible())
        ):
            self.device = "cpu"  # decided without importing torch
        else:
            import torch

            if s.clip_device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("CLIP_DEVICE=cuda, but torch sees no CUDA device")
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu = self.device == "cuda"
        max_batch = s.clip_max_batch or (256 if gpu else 32)
        self.selection = selection = select(
            s, self.device, max_batch, prepare_torch=lambda: configure_torch(s.torch_threads)
        )
        self.agreement = (
            FastAgreement.from_dict(selection.meta.fast_agreement)
            if selection.meta.fast_agreement
            else None
        )
        self.decode = (
            s.clip_preprocess
            if s.clip_preprocess != "auto"
            else "fast"
            if self.agreement is not None and self.agreement.agrees
            else "exact"
        )
        return ClipEngine(
            selection.runtime,
            meta=selection.meta,
            tokenize=selection.tokenize,
            fallback_preprocess=selection.fallback_preprocess,
            settings=EngineSettings.from_settings(
                s,
                identity=f"{s.clip_model_name}/{selection.meta.weights_tag}",
                max_batch=max_batch,
                jpeg_device="cuda" if gpu and s.clip_gpu_decode else None,
                decode=self.decode,
                fast_factor=self.agreement.factor if self.agreement is not None else 2,
            ),
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            engine = self.engine
        if engine is not None:
            engine.close()

    def status(self) -> ClipStatus:
        engine, selection = self.engine, self.selection
        if engine is None or selection is None:
            return ClipStatus(
                state=self.state, version=None, load_seconds=self.load_seconds, error=self.error
            )
        agreement = self.agreement
        runtime = selection.report(
            device=self.device,
            gpu_jpeg_decode=engine.jpeg_device is not None,
            preprocess=ClipPreprocess(
                mode=self.decode,
                setting=self.settings.clip_preprocess,
                factor=agreement.factor if agreement else None,
                min_cosine=agreement.min_cosine if agreement else None,
                same_answers=agreement.same_answers if agreement else None,
            ),
        )
        return ClipStatus(
            state=self.state,
            version=f"{self.settings.clip_model_name}/{engine.meta.weights_tag}",
            load_seconds=self.load_seconds,
            error=self.error,
            runtime=runtime,
            batching=engine.batcher.stats(),
            cache=engine.images_cache.stats(),
            preprocess_workers=engine.preprocess_workers,
            decode_workers_replaced=engine.decoder.replaced,
            in_flight=engine.admission.in_flight,
            max_waiting=engine.admission.limit,
            overloaded=engine.admission.refused,
        )

    def _engine(self) -> ClipEngine:
        if self.engine is not None:
            return self.engine
        if self.state == "loading":
            raise ModelLoading(
                "The CLIP model is still loading; retry shortly.",
                retry_after=LOADING_RETRY_AFTER_S,
            )
        raise ModelUnavailable(f"The CLIP model is not available: {self.error}")

    def ref(self) -> ModelRef:
        engine = self._engine()
        return ModelRef(
            name=self.settings.clip_model_name,
            pretrained=engine.meta.weights_tag,
            dimension=engine.meta.dimension,
            backend=engine.runtime.backend,
            precision=engine.runtime.precision,
        )

    # -- use cases -------------------------------------------------------------------------
    async def _tag_matches(
        self, image_vectors: np.ndarray, tags: list[str]
    ) -> list[list[TagMatch]]:
        engine = self._engine()
        text = await engine.encode_texts(tags)
        sims = image_vectors @ text.T
        logits = engine.meta.logit_scale * sims
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        threshold = self.settings.clip_match_threshold
        return [
            [
                TagMatch(
                    tag=tag,
                    similarity=round(float(s), 6),
                    probability=round(float(p), 6),
                    relevant=bool(s >= threshold),
                )
                for tag, s, p in zip(tags, row_s, row_p, strict=True)
            ]
            for row_s, row_p in zip(sims, probs, strict=True)
        ]

    async def compare(
        self, image_a: ImageInput, image_b: ImageInput, tags: list[str]
    ) -> CompareResult:
        """Cosine similarity of two images, a 0-100 score, a verdict, optional tag matches."""
        vectors = await self._engine().encode_images([image_a, image_b])
        similarity = float(np.clip(vectors[0] @ vectors[1], -1.0, 1.0))
        s = self.settings
        verdict: Verdict
        if similarity >= s.clip_similar_threshold:
            verdict = "similar"
        elif similarity >= s.clip_related_threshold:
            verdict = "related"
        else:
            verdict = "different"
        matches = await self._tag_matches(vectors, tags) if tags else None
        return CompareResult(
            similarity=round(similarity, 6),
            score=round(max(0.0, similarity) * 100, 1),
            verdict=verdict,
            thresholds={"similar": s.clip_similar_threshold, "related": s.clip_related_threshold},
            tags_a=matches[0] if matches else None,
            tags_b=matches[1] if matches else None,
            model=self.ref(),
        )

    async def match(self, image: ImageInput, tags: list[str]) -> MatchResult:
        """How relevant the image is to each tag; probabilities are a softmax over the tags."""
        vector = await self._engine().encode_images([image])
        matches = (await self._tag_matches(vector, tags))[0]
        best = max(matches, key=lambda m: m.similarity)
        return MatchResult(
            matches=matches,
            best=best,
            threshold=self.settings.clip_match_threshold,
            model=self.ref(),
        )

    async def image_vectors(self, images: list[ImageInput], *, field: str = "images") -> np.ndarray:
        """L2-normalised embeddings (n, dim) of the images, in order, within the request
        limits; `field` names the request field in errors. Every embedding route, ours and
        the OpenAI-compatible one, comes through here."""
        engine = self._engine()
        self._check_count(len(images), self.settings.max_images_per_request, "images", field)
        return await engine.encode_images(images)

    async def text_vectors(self, texts: list[str], *, field: str = "texts") -> np.ndarray:
        """L2-normalised embeddings (n, dim) of the texts, in order, within the request
        limits (count, MAX_TEXT_LENGTH); `field` names the request field in errors."""
        engine = self._engine()
        self._check_count(len(texts), self.settings.max_texts_per_request, "texts", field)
        limit = self.settings.max_text_length
        too_long = [
            {"field": f"{field}.{i}", "message": f"{len(text)} characters, limit {limit}"}
            for i, text in enumerate(texts)
            if len(text) > limit
        ]
        if too_long:  # before tokenising: BPE's cost grows with a word's length
            raise InvalidInput(f"Texts may have at most {limit} characters.", details=too_long)
        return await engine.encode_texts(texts)

    async def embed_images(
        self, images: list[ImageInput], encoding_format: EncodingFormat = "float"
    ) -> "Embeddings":
        vectors = await self.image_vectors(images)
        return self._embeddings(vectors, [item.filename for item in images], encoding_format)

    async def embed_texts(
        self, texts: list[str], encoding_format: EncodingFormat = "float"
    ) -> "Embeddings":
        vectors = await self.text_vectors(texts)
        return self._embeddings(vectors, list(texts), encoding_format)

    def _embeddings(
        self, vectors: np.ndarray, names: list[str | None], encoding_format: EncodingFormat
    ) -> "Embeddings":
        rows = encode_rows(vectors, encoding_format)
        return Embeddings(
            model=self.ref(),
            encoding_format=encoding_format,
            embeddings=[
                EmbeddingRow(index=i, name=name, embedding=row)
                for i, (name, row) in enumerate(zip(names, rows, strict=True))
            ],
        )

    @staticmethod
    def _check_count(count: int, limit: int, noun: str, field: str) -> None:
        if count > limit:
            raise InvalidInput(
                f"At most {limit} {noun} per request.",
                details=[{"field": field, "message": f"got {count}, limit {limit}"}],
            )
