"""ClipService: one open_clip model, loaded once, answering compare / match / embed.

Weights come from open_clip's registry (`CLIP_PRETRAINED=openai`, cached in
CLIP_MODEL_CACHE_DIR) or from a local checkpoint file; CLIP_MODEL_CONFIG registers a custom
architecture first. Tests load a tiny model through this same path.
"""

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.config import Settings
from app.core.exceptions import ImageTooLarge, InvalidInput, ModelUnavailable, Overloaded
from app.models.clip import (
    CompareResult,
    Embedding,
    EmbeddingResult,
    MatchResult,
    ModelRef,
    TagMatch,
)
from app.utils.hashing import sha256_file
from app.utils.images import decode_image

logger = logging.getLogger(__name__)

TEXT_CACHE_SIZE = 4096
# Decoded images are shrunk to this longest side (or 4x the model input, if larger).
MAX_DECODED_SIDE = 1024


class ImageInput:
    """Raw bytes of one uploaded image and the field it came from (for error messages)."""

    def __init__(self, data: bytes, field: str, filename: str | None = None) -> None:
        self.data = data
        self.field = field
        self.filename = filename


def parse_tags(
    raw: Sequence[str] | None, *, max_tags: int, max_length: int, required: bool
) -> list[str]:
    """Tags from repeated fields and/or comma-separated values: trimmed, de-duplicated."""
    tags: list[str] = []
    problems = []
    for i, item in enumerate(raw or []):
        for part in item.split(","):
            tag = " ".join(part.split())
            if not tag:
                continue
            if len(tag) > max_length:
                problems.append(
                    {"field": f"tags.{i}", "message": f"longer than {max_length} characters"}
                )
            elif tag not in tags:
                tags.append(tag)
    if required and not tags and not problems:
        problems.append({"field": "tags", "message": "at least one non-empty tag is required"})
    if len(tags) > max_tags:
        problems.append({"field": "tags", "message": f"at most {max_tags} tags, got {len(tags)}"})
    if problems:
        raise InvalidInput("The tags are not acceptable.", details=problems)
    return tags


class ClipService:
    """Holds the CLIP model; every public method may be called from worker threads."""

    name = "clip"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.clip_enabled
        self.error: str | None = None if self.enabled else "disabled by CLIP_ENABLED=false"
        self.load_seconds: float | None = None
        self.model: Any = None
        self.preprocess: Any = None
        self.tokenizer: Any = None
        self.device = "cpu"
        self.weights_tag = ""
        self.dimension = 0
        self.logit_scale = 100.0
        # All torch work runs on this one thread: torch's OpenMP pool then belongs to a
        # single thread instead of one pool per request thread, each spinning on the same
        # 2 cores (which cost ~30% per request here); calls are serialised for free.
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-inference")
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._text_cache_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model; on any failure keep the process up and record why."""
        if not self.enabled:
            return
        started = time.perf_counter()
        try:
            self._load()
        except Exception as exc:  # no network, bad path, corrupt file, unknown name, ...
            self.model = None
            self.error = f"{type(exc).__name__}: {exc}"
            logger.error("CLIP model not loaded: %s", self.error)
            return
        self.error = None
        self.load_seconds = round(time.perf_counter() - started, 3)
        logger.info(
            "CLIP %s (%s) loaded on %s in %.2fs",
            self.settings.clip_model_name,
            self.weights_tag,
            self.device,
            self.load_seconds,
        )

    def _load(self) -> None:
        import open_clip
        import torch

        s = self.settings
        # Thread settings are per OpenMP thread: apply them where inference runs.
        self._inference.submit(torch.set_num_threads, s.torch_threads).result()
        torch.set_num_threads(s.torch_threads)
        # Denormal floats slow CPU inference many-fold (seen with random-init weights) and
        # carry no meaning for embeddings.
        torch.set_flush_denormal(True)
        with contextlib.suppress(RuntimeError):  # may be set only once per process
            torch.set_num_interop_threads(1)
        if s.clip_model_config is not None:
            config = Path(s.clip_model_config)
            if not config.is_file():
                raise FileNotFoundError(f"CLIP_MODEL_CONFIG {config} does not exist")
            if config.stem != s.clip_model_name:
                raise ValueError(
                    f"CLIP_MODEL_NAME ({s.clip_model_name}) must equal the config file's name "
                    f"({config.stem}) when CLIP_MODEL_CONFIG is set"
                )
            open_clip.add_model_config(config)
        if s.clip_device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = s.clip_device
        pretrained = s.clip_pretrained
        local = Path(pretrained)
        if not pretrained:  # random initialisation: benchmarks only, never useful answers
            self.weights_tag = "random-init"
        elif local.suffix or local.is_file():  # a path, not a registry tag such as "openai"
            if not local.is_file():
                raise FileNotFoundError(f"CLIP_PRETRAINED checkpoint {local} does not exist")
            self.weights_tag = f"{local.name}:sha256:{sha256_file(local)[:12]}"
        else:
            self.weights_tag = pretrained
        s.clip_model_cache_dir.mkdir(parents=True, exist_ok=True)
        model, _, preprocess = open_clip.create_model_and_transforms(
            s.clip_model_name,
            pretrained=pretrained,
            cache_dir=str(s.clip_model_cache_dir),
            device=self.device,
        )
        model.eval()
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(s.clip_model_name)
        self.logit_scale = float(model.logit_scale.exp().item())
        self.dimension = int(self.encode_texts(["a photo"]).shape[1])
        self._text_cache.clear()

    def status(self) -> dict[str, Any]:
        if not self.enabled:
            state = "disabled"
        else:
            state = "loaded" if self.model is not None else "unavailable"
        return {
            "state": state,
            "version": f"{self.settings.clip_model_name}/{self.weights_tag}"
            if self.model
            else None,
            "load_seconds": self.load_seconds,
            "error": self.error,
        }

    def ref(self) -> ModelRef:
        return ModelRef(
            name=self.settings.clip_model_name,
            pretrained=self.weights_tag,
            dimension=self.dimension,
        )

    def _require(self) -> None:
        if self.model is None:
            raise ModelUnavailable(f"The CLIP model is not available: {self.error}")

    def _run(self, forward: Callable[[], Any]) -> np.ndarray:
        """Run a forward pass on the inference thread; refuse when too many already wait."""
        import torch

        with self._waiting_lock:
            if self._waiting >= self.settings.clip_max_waiting:
                raise Overloaded(
                    f"{self._waiting} requests are already waiting for the CLIP model; retry shortly."
                )
            self._waiting += 1

        def call() -> np.ndarray:
            with torch.inference_mode():
                return np.asarray(forward().float().cpu().numpy())

        try:
            return self._inference.submit(call).result()
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    # -- encoders --------------------------------------------------------------------------
    def decode(self, item: ImageInput) -> Any:
        if len(item.data) > self.settings.max_upload_bytes:
            raise ImageTooLarge(
                f"{item.field} is {len(item.data)} bytes; the limit is {self.settings.max_upload_bytes}.",
                details=[{"field": item.field, "max_bytes": self.settings.max_upload_bytes}],
            )
        size = self._input_size()
        return decode_image(
            item.data,
            max_pixels=self.settings.max_image_pixels,
            draft_size=2 * size if size else None,
            max_side=max(MAX_DECODED_SIDE, 4 * size) if size else MAX_DECODED_SIDE,
            name=item.field,
        )

    def _input_size(self) -> int | None:
        size = getattr(getattr(self.model, "visual", None), "image_size", None)
        if isinstance(size, tuple | list):
            return int(max(size))
        return int(size) if size else None

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised image embeddings, one row per image."""
        import torch

        self._require()

        def forward() -> Any:
            # Preprocessing uses torch ops too, so it runs on the inference thread as well.
            batch = torch.stack([self.preprocess(image) for image in images]).to(self.device)
            return self.model.encode_image(batch, normalize=True)

        return self._run(forward)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings; repeated texts (tags) come from a small cache."""
        if self.model is None:
            self._require()
        with self._text_cache_lock:
            cached = {t: self._text_cache[t] for t in texts if t in self._text_cache}
        missing = [t for t in dict.fromkeys(texts) if t not in cached]
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            features = self._run(lambda: self.model.encode_text(tokens, normalize=True))
            with self._text_cache_lock:
                for text, row in zip(missing, features, strict=True):
                    cached[text] = row
                    self._text_cache[text] = row
                    self._text_cache.move_to_end(text)
                while len(self._text_cache) > TEXT_CACHE_SIZE:
                    self._text_cache.popitem(last=False)
        return np.stack([cached[t] for t in texts])

    # -- use cases -------------------------------------------------------------------------
    def _tag_matches(self, image_vectors: np.ndarray, tags: list[str]) -> list[list[TagMatch]]:
        text = self.encode_texts(tags)
        sims = image_vectors @ text.T
        logits = self.logit_scale * sims
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

    def compare(self, image_a: ImageInput, image_b: ImageInput, tags: list[str]) -> CompareResult:
        """Cosine similarity of two images, a 0-100 score, a verdict, optional tag matches."""
        self._require()
        vectors = self.encode_images([self.decode(image_a), self.decode(image_b)])
        similarity = float(np.clip(vectors[0] @ vectors[1], -1.0, 1.0))
        s = self.settings
        verdict: Literal["similar", "related", "different"]
        if similarity >= s.clip_similar_threshold:
            verdict = "similar"
        elif similarity >= s.clip_related_threshold:
            verdict = "related"
        else:
            verdict = "different"
        matches = self._tag_matches(vectors, tags) if tags else None
        return CompareResult(
            similarity=round(similarity, 6),
            score=round(max(0.0, similarity) * 100, 1),
            verdict=verdict,
            thresholds={"similar": s.clip_similar_threshold, "related": s.clip_related_threshold},
            tags_a=matches[0] if matches else None,
            tags_b=matches[1] if matches else None,
            model=self.ref(),
        )

    def match(self, image: ImageInput, tags: list[str]) -> MatchResult:
        """How relevant the image is to each tag; probabilities are a softmax over the tags."""
        self._require()
        vector = self.encode_images([self.decode(image)])
        matches = self._tag_matches(vector, tags)[0]
        best = max(matches, key=lambda m: m.similarity)
        return MatchResult(
            matches=matches,
            best=best,
            threshold=self.settings.clip_match_threshold,
            model=self.ref(),
        )

    def embed_images(self, images: list[ImageInput]) -> EmbeddingResult:
        self._require()
        self._check_count(len(images), self.settings.max_images_per_request, "images")
        vectors = self.encode_images([self.decode(item) for item in images])
        return EmbeddingResult(
            model=self.ref(),
            embeddings=[
                Embedding(index=i, name=item.filename, embedding=vector.tolist())
                for i, (item, vector) in enumerate(zip(images, vectors, strict=True))
            ],
        )

    def embed_texts(self, texts: list[str]) -> EmbeddingResult:
        self._require()
        self._check_count(len(texts), self.settings.max_texts_per_request, "texts")
        vectors = self.encode_texts(texts)
        return EmbeddingResult(
            model=self.ref(),
            embeddings=[
                Embedding(index=i, name=text, embedding=vector.tolist())
                for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
            ],
        )

    @staticmethod
    def _check_count(count: int, limit: int, field: str) -> None:
        if count > limit:
            raise InvalidInput(
                f"At most {limit} {field} per request.",
                details=[{"field": field, "message": f"got {count}, limit {limit}"}],
            )
