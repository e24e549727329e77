"""Which runtime serves CLIP on this machine: candidates, a parity gate, then timing.

    candidates (CLIP_BACKEND x CLIP_PRECISION, the device, the CPU's flags)
      -> artifacts: the fp32 probe reference and the ONNX exports, built once and cached
      -> parity gate: each candidate reproduces torch fp32 on a fixed probe set
         (min cosine >= CLIP_MIN_COSINE, the same best tag for every probe image)
      -> auto: the passing candidates timed on this machine, the fastest serves;
         a forced backend or precision: the first passing one in preference order

The fastest runtime differs from CPU to CPU (bf16 is fast with AMX and emulated without;
int8 needs no special unit), so it is measured here, never assumed. Once the probe
reference and the exports are cached, an ONNX-only start (CLIP_BACKEND=onnx) does not
import torch at all.
"""

import contextlib
import ctypes
import gc
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from app.config import Settings
from app.services.clip import onnx_runtime
from app.services.clip.artifacts import ArtifactError, ArtifactStore, library_versions
from app.services.clip.preprocess import ImageSpec, to_array
from app.services.clip.runtime import Backend, ClipMeta, Precision, Runtime, TorchModel
from app.services.clip.tokenizer import ClipTokenizer
from app.services.clip.weights import Weights, resolve_weights
from app.utils.hashing import sha256_file
from app.utils.text import brief_error

logger = logging.getLogger(__name__)

# Preference order: with a forced backend or precision, the first passing candidate serves.
CPU_CANDIDATES: tuple[tuple[Backend, Precision], ...] = (
    ("onnx", "int8"),
    ("torch", "bf16"),
    ("onnx", "fp32"),
    ("torch", "fp32"),
)
CUDA_CANDIDATES: tuple[tuple[Backend, Precision], ...] = (("torch", "fp16"), ("torch", "fp32"))
# Parity thresholds when CLIP_MIN_COSINE is 0 (automatic).
MIN_COSINE = {"fp32": 0.999, "bf16": 0.999, "fp16": 0.999, "int8": 0.995}
# `auto` times the passing candidates for about this long in total, at these batch sizes
# (capped at CLIP_MAX_BATCH): a lone request, and a full batch under load. On CPU the cost
# per image stops falling by batch 8 (ViT-B-32: 52 ms at 8, about the same at 32); a GPU
# keeps gaining up to its batch of 256, where fp16 is twice fp32 while at batch 1 it is
# slower (autocast's casts cost more than they save).
TIMING_BUDGET_S = 6.0
TIMING_ROUNDS = 5
TIMING_BATCHES = {"cpu": (1, 8), "cuda": (1, 256)}
# A probe image has a clear best tag when torch fp32 puts it this far ahead of the
# runner-up in logits (cosine x the model's logit scale): a softmax probability ratio of
# e^0.5 = 1.65. Only those are held to "the same best tag": closer calls are ties that any
# rounding may flip (a random-init model has nothing but ties).
CLEAR_LEAD_LOGITS = 0.5
REFERENCE_VERSIONS = ("torch", "open_clip_torch")
ONNX_VERSIONS = ("torch", "open_clip_torch", "onnx", "onnxruntime")

# The probe set: coloured shapes (which the test fixture model knows, as does real CLIP)
# and everyday captions. Every candidate must rank these tags as torch fp32 does.
PROBE_SHAPES = (
    ("red", "circle"),
    ("green", "square"),
    ("blue", "triangle"),
    ("yellow", "star"),
    ("purple", "circle"),
    ("orange", "triangle"),
    ("blue", "square"),
    ("green", "star"),
)
PROBE_TAGS = (
    *sorted({f"a {color} {shape}" for color, shape in PROBE_SHAPES}),
    "a photo of a dog",
    "a city at night",
    "a bowl of fruit",
    "a portrait of a person",
    "a page of handwritten notes",
    "a mountain landscape",
)
_RGB = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
}


@dataclass
class Trial:
    """One candidate: how it did at the gate and, under `auto`, how fast it ran."""

    backend: Backend
    precision: Precision
    threshold: float | None = None
    min_cosine: float | None = None
    same_best_tag: bool | None = None
    clear_probes: int | None = None
    passed: bool = False
    ms_per_image: dict[str, float] | None = None
    error: str | None = None
    runtime: Runtime | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"

    def score(self) -> float:
        """Geometric mean of ms per image over the timed batch sizes (lower is better):
        each size counts by its ratio, so batch 1's larger numbers do not drown the rest."""
        if not self.ms_per_image:
            return math.inf
        values = list(self.ms_per_image.values())
        return float(math.prod(values) ** (1 / len(values)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "threshold": self.threshold,
            "min_cosine": self.min_cosine,
            "same_best_tag": self.same_best_tag,
            "clear_probes": self.clear_probes,
            "passed": self.passed,
            "ms_per_image": self.ms_per_image,
            "error": self.error,
        }

    def summary(self) -> str:
        if self.error:
            return f"{self.name} dropped ({self.error})"
        timing = ""
        if self.ms_per_image:
            timing = ", " + ", ".join(f"b{b} {ms:.1f}" for b, ms in self.ms_per_image.items())
            timing += " ms/img"
        return f"{self.name} min cosine {self.min_cosine:.5f}{timing}"


@dataclass
class Reference:
    """torch fp32 on the probe set: inputs and normalised outputs."""

    images: np.ndarray
    tokens: np.ndarray
    image_embeddings: np.ndarray
    text_embeddings: np.ndarray

    def save(self, path: Path) -> None:
        np.savez(path, **self.__dict__)

    @classmethod
    def load(cls, path: Path) -> "Reference":
        with np.load(path) as data:
            return cls(**{name: data[name] for name in data.files})


@dataclass
class Selection:
    """The runtime that serves, and everything the engine needs around it."""

    runtime: Runtime
    meta: ClipMeta
    tokenize: Callable[[list[str]], np.ndarray]
    fallback_preprocess: Callable[[Image.Image], Any] | None  # when ImageSpec cannot
    trials: list[Trial]
    chosen: Trial
    reference: Reference
    imported_torch: bool

    def report(self) -> dict[str, Any]:
        return {
            "backend": self.chosen.backend,
            "precision": self.chosen.precision,
            "min_cosine": self.chosen.min_cosine,
            "ms_per_image": self.chosen.ms_per_image,
            "candidates": [trial.to_dict() for trial in self.trials],
        }


def plan(settings: Settings, device: str, flags: set[str] | None = None) -> list[Trial]:
    """The candidates for these settings on this device, in preference order. A bf16
    candidate the CPU would only emulate is listed as skipped unless bf16 was forced."""
    backend, precision = settings.clip_backend, settings.clip_precision
    pool = CUDA_CANDIDATES if device == "cuda" else CPU_CANDIDATES
    trials = [Trial(b, p) for b, p in pool if backend in ("auto", b) and precision in ("auto", p)]
    if not trials:
        offered = ", ".join(f"{b}-{p}" for b, p in pool)
        raise ValueError(
            f"CLIP_BACKEND={backend} with CLIP_PRECISION={precision} has no runtime on "
            f"{device} (available: {offered})"
        )
    native_bf16 = bool((cpu_flags() if flags is None else flags) & {"avx512_bf16", "amx_bf16"})
    for trial in trials:
        if trial.precision == "bf16" and not native_bf16:
            if precision == "bf16":
                logger.warning(
                    "CLIP_PRECISION=bf16 on a CPU without AVX512-BF16 or AMX: emulated, slow"
                )
            else:
                trial.error = "skipped: the CPU has neither AVX512-BF16 nor AMX"
    return trials


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def probe_images(
    spec: ImageSpec | None, transform: Callable[[Image.Image], Any] | None
) -> np.ndarray:
    """The probe images as model input rows, through the serving preprocessing."""
    rows = []
    for i, (color, shape) in enumerate(PROBE_SHAPES):
        side = 96 + 16 * i  # varied sizes, so resizing is part of what is probed
        image = Image.new("RGB", (side, side), (235, 232, 225))
        draw = ImageDraw.Draw(image)
        box = (side * 0.2, side * 0.2, side * 0.8, side * 0.8)
        fill = _RGB[color]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        elif shape == "triangle":
            draw.polygon(
                [(side * 0.5, side * 0.2), (side * 0.8, side * 0.8), (side * 0.2, side * 0.8)],
                fill=fill,
            )
        else:
            c, r = side / 2, side * 0.3
            points = [
                (
                    c + (r if k % 2 == 0 else r / 2.5) * math.sin(k * math.pi / 5),
                    c - (r if k % 2 == 0 else r / 2.5) * math.cos(k * math.pi / 5),
                )
                for k in range(10)
            ]
            draw.polygon(points, fill=fill)
        if spec is not None:
            rows.append(to_array(image, spec))
        else:
            assert transform is not None
            rows.append(np.asarray(transform(image).numpy()))
    return np.stack(rows).astype(np.float32)


def _reference(source: TorchModel) -> Reference:
    spec = ImageSpec.from_open_clip(source.meta.preprocess)
    images = probe_images(spec, source.preprocess)
    tokens = source.tokenize(list(PROBE_TAGS))
    fp32 = source.runtime("fp32")
    return Reference(images, tokens, fp32.encode_images([images]), fp32.encode_texts([tokens]))


def gate(trial: Trial, reference: Reference, threshold: float, logit_scale: float) -> None:
    """Run the probes through the trial's runtime and record whether it may serve: every
    embedding within `threshold` cosine of torch fp32's, and the same best tag for every
    probe image that has a clear one (CLEAR_LEAD_LOGITS)."""
    assert trial.runtime is not None
    images = _unit(trial.runtime.encode_images([reference.images]))
    texts = _unit(trial.runtime.encode_texts([reference.tokens]))
    cosine = min(
        float(np.min(np.sum(images * reference.image_embeddings, axis=1))),
        float(np.min(np.sum(texts * reference.text_embeddings, axis=1))),
    )
    expected = reference.image_embeddings @ reference.text_embeddings.T
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) * logit_scale >= CLEAR_LEAD_LOGITS
    picked = np.argmax(images @ texts.T, axis=1)
    differ = int(np.sum(picked[clear] != np.argmax(expected, axis=1)[clear]))
    trial.threshold = threshold
    trial.min_cosine = round(cosine, 6)
    trial.clear_probes = int(clear.sum())
    trial.same_best_tag = differ == 0
    trial.passed = cosine >= threshold and trial.same_best_tag
    if not trial.passed:
        why = [f"min cosine {cosine:.5f}" + (f" < {threshold}" if cosine < threshold else "")]
        if differ:
            why.append(f"another best tag on {differ} of {trial.clear_probes} clear probes")
        trial.error = "failed the parity gate: " + ", ".join(why)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def time_trials(trials: list[Trial], reference: Reference, batches: list[int]) -> None:
    """ms per image of each trial at each batch size: the best of up to TIMING_ROUNDS
    interleaved rounds (other work on the machine only slows runs, and interleaving spreads
    drift in the machine's speed over every trial). A warm-up and one round always run;
    more only within TIMING_BUDGET_S. A trial that fails here (out of memory at a batch the
    gate never tried, say) is dropped with the reason."""
    inputs = {b: np.resize(reference.images, (b, *reference.images.shape[1:])) for b in batches}
    best: dict[tuple[str, int], float] = {}
    deadline = time.perf_counter() + TIMING_BUDGET_S
    for round_ in range(TIMING_ROUNDS + 1):  # round 0 is the warm-up
        for trial in trials:
            if trial.error is not None:
                continue
            assert trial.runtime is not None
            try:
                for b in batches:
                    started = time.perf_counter()
                    trial.runtime.encode_images([inputs[b]])
                    ms = (time.perf_counter() - started) * 1000 / b
                    if round_:
                        key = (trial.name, b)
                        best[key] = min(best.get(key, math.inf), ms)
            except Exception as exc:
                trial.error = f"failed while timed: {brief_error(exc)}"
                trial.passed = False
        if round_ and time.perf_counter() >= deadline:
            break
    for trial in trials:
        if trial.error is None:
            trial.ms_per_image = {str(b): round(best[(trial.name, b)], 3) for b in batches}


def select(settings: Settings, device: str, max_batch: int) -> Selection:
    """Build, check and (under auto) time the candidates; return the one that serves."""
    trials = plan(settings, device)
    weights = resolve_weights(settings)
    store = None
    if weights.sha256 is not None:
        store = ArtifactStore(
            settings.clip_model_cache_dir / settings.clip_model_name / weights.sha256,
            model=settings.clip_model_name,
            weights_sha256=weights.sha256,
            variant=_variant(settings, weights),
        )
    else:
        for trial in trials:
            if trial.backend == "onnx" and trial.error is None:
                trial.error = "skipped: random-init weights cannot be exported reproducibly"
    live = [t for t in trials if t.error is None]
    if not live:
        raise ValueError("no CLIP runtime to try: " + "; ".join(t.summary() for t in trials))

    cached = _Cached.look_up(store, [t.precision for t in live if t.backend == "onnx"])
    source = None if cached.torch_free(live) else TorchModel(settings, device, weights)
    meta = source.meta if source is not None else cached.meta
    assert meta is not None
    reference = cached.reference or _build_reference(store, source, meta)
    exports = _build_exports(store, source, cached.exports)

    for trial in live:
        try:
            if trial.backend == "onnx":
                export = exports[trial.precision]
                if isinstance(export, str):
                    raise ArtifactError(export)
                trial.runtime = onnx_runtime.OnnxRuntime(
                    export, trial.precision, settings.torch_threads
                )
            else:
                assert source is not None
                trial.runtime = source.runtime(trial.precision)
            threshold = settings.clip_min_cosine or MIN_COSINE[trial.precision]
            gate(trial, reference, threshold, meta.logit_scale)
        except Exception as exc:  # one candidate failing never stops the others
            trial.error = brief_error(exc)
        if not trial.passed:
            logger.warning("CLIP runtime %s", trial.summary())
            _close(trial)
    passing = [t for t in live if t.passed]
    if not passing:
        raise RuntimeError(
            "no CLIP runtime passed its checks: " + "; ".join(t.summary() for t in trials)
        )
    chosen = passing[0]
    if settings.clip_backend == "auto" and settings.clip_precision == "auto" and len(passing) > 1:
        batches = TIMING_BATCHES["cuda" if device == "cuda" else "cpu"]
        time_trials(passing, reference, sorted({min(b, max_batch) for b in batches}))
        timed = [t for t in passing if t.passed]
        if not timed:
            raise RuntimeError(
                "every CLIP runtime failed while timed: " + "; ".join(t.summary() for t in trials)
            )
        chosen = min(timed, key=Trial.score)
    for trial in passing:
        if trial is not chosen:
            _close(trial)
    assert chosen.runtime is not None

    tokenize: Callable[[list[str]], np.ndarray]
    if meta.tokenizer is not None:
        tokenize = ClipTokenizer.from_spec(meta.tokenizer)
    else:
        assert source is not None
        tokenize = source.tokenize
    if source is not None and chosen.name != "torch-fp32":
        source.release_weights()  # another runtime serves: free the fp32 weights
    _return_freed_memory()
    logger.info(
        "CLIP serves %s (%s); candidates: %s",
        chosen.name,
        "the fastest measured" if chosen.ms_per_image else "the first to pass, in preference order",
        "; ".join(t.summary() for t in trials),
    )
    return Selection(
        runtime=chosen.runtime,
        meta=meta,
        tokenize=tokenize,
        fallback_preprocess=source.preprocess if source is not None else None,
        trials=trials,
        chosen=chosen,
        reference=reference,
        imported_torch=source is not None,
    )


def _variant(settings: Settings, weights: Weights) -> str:
    """What besides the checkpoint decides the model: its loading options and, for a custom
    architecture, the config file's content."""
    config = settings.clip_model_config
    parts = {
        "options": weights.options,
        "config": sha256_file(Path(config)) if config and Path(config).is_file() else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Cached:
    """What the artifact cache already holds for these weights."""

    meta: ClipMeta | None
    reference: Reference | None
    exports: dict[str, Path | None]  # precision -> export directory, for the ONNX trials

    @classmethod
    def look_up(cls, store: ArtifactStore | None, onnx_precisions: list[str]) -> "_Cached":
        if store is None:
            return cls(None, None, {})
        found = store.find("reference", library_versions(*REFERENCE_VERSIONS))
        versions = library_versions(*ONNX_VERSIONS)
        exports = {}
        for precision in onnx_precisions:
            export = store.find(f"onnx-{precision}", versions)
            exports[precision] = export[0] if export else None
        if found is None:
            return cls(None, None, exports)
        path, manifest = found
        try:
            meta = ClipMeta.from_dict(manifest["meta"])
            return cls(meta, Reference.load(path / "probes.npz"), exports)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # removed or damaged meanwhile
            logger.warning("CLIP probe reference unusable (%s): rebuilding it", brief_error(exc))
            store.discard(path)
            return cls(None, None, exports)

    def torch_free(self, live: list[Trial]) -> bool:
        """Everything these trials need is cached and none of them is torch."""
        return (
            self.meta is not None
            and all(t.backend == "onnx" for t in live)
            and all(self.exports.values())
            and self.meta.tokenizer is not None
            and ImageSpec.from_open_clip(self.meta.preprocess) is not None
        )


def _build_reference(
    store: ArtifactStore | None, source: TorchModel | None, meta: ClipMeta
) -> Reference:
    """torch fp32 on the probe set, cached with the model's metadata."""
    assert source is not None
    reference = _reference(source)
    if store is not None:

        def write(out: Path) -> dict[str, Any]:
            reference.save(out / "probes.npz")
            return {"meta": meta.to_dict(), "probe_tags": list(PROBE_TAGS)}

        try:
            store.build("reference", library_versions(*REFERENCE_VERSIONS), write)
        except ArtifactError as exc:  # a read-only or full cache: this start still gates
            logger.warning("CLIP probe reference not cached: %s", exc)
    return reference


def _build_exports(
    store: ArtifactStore | None, source: TorchModel | None, exports: dict[str, Path | None]
) -> dict[str, Path | str]:
    """The ONNX exports the trials need, built where missing (int8 from the fp32 export):
    precision -> directory, or why it could not be built."""
    if store is None or all(exports.values()):
        return {k: v for k, v in exports.items() if v is not None}
    assert source is not None
    versions = library_versions(*ONNX_VERSIONS)

    def write_fp32(out: Path) -> dict[str, Any]:
        onnx_runtime.export(source, out)
        return {"opset": onnx_runtime.OPSET}

    def write_int8(out: Path) -> dict[str, Any]:
        onnx_runtime.quantize_int8(fp32, out)
        return {"quantization": "dynamic; weights QInt8, activations QUInt8 per batch"}

    built: dict[str, Path | str] = {}
    try:
        found = store.find("onnx-fp32", versions) or store.build("onnx-fp32", versions, write_fp32)
    except ArtifactError as exc:
        return {precision: str(exc) for precision in exports}
    fp32 = found[0]
    for precision, path in exports.items():
        if path is not None:
            built[precision] = path
        elif precision == "fp32":
            built[precision] = fp32
        else:
            try:
                built[precision] = store.build("onnx-int8", versions, write_int8)[0]
            except ArtifactError as exc:
                built[precision] = str(exc)
    return built


def _return_freed_memory() -> None:
    """Hand memory freed by the runtimes not chosen back to the OS. glibc keeps freed heap
    for reuse: after a first start that loaded every candidate, about 1.1 GB of it with
    ViT-B-32, which malloc_trim returns."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _close(trial: Trial) -> None:
    if trial.runtime is not None:
        trial.runtime.close()
        trial.runtime = None
