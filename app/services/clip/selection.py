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

The steps live beside it: `candidates.py`, `artifact_builds.py`, `parity.py`, `timing.py`.
"""

import contextlib
import ctypes
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.config import Settings
from app.services.clip import onnx_runtime
from app.services.clip.artifact_builds import Cached, build_exports, build_reference, store_for
from app.services.clip.artifacts import ArtifactError
from app.services.clip.candidates import Trial, plan
from app.services.clip.parity import MIN_COSINE, Reference, gate
from app.services.clip.runtime import ClipMeta, Runtime, TorchModel
from app.services.clip.timing import TIMING_BATCHES, time_trials
from app.services.clip.tokenizer import ClipTokenizer
from app.services.clip.weights import resolve_weights
from app.utils.text import brief_error

logger = logging.getLogger(__name__)


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


def select(settings: Settings, device: str, max_batch: int) -> Selection:
    """Build, check and (under auto) time the candidates; return the one that serves."""
    trials = plan(settings, device)
    weights = resolve_weights(settings)
    store = store_for(settings, weights)
    if store is None:
        for trial in trials:
            if trial.backend == "onnx" and trial.error is None:
                trial.error = "skipped: random-init weights cannot be exported reproducibly"
    live = [t for t in trials if t.error is None]
    if not live:
        raise ValueError("no CLIP runtime to try: " + "; ".join(t.summary() for t in trials))

    cached = Cached.look_up(store, [t.precision for t in live if t.backend == "onnx"])
    source = None if cached.torch_free(live) else TorchModel(settings, device, weights)
    meta = source.meta if source is not None else cached.meta
    assert meta is not None
    reference = cached.reference or build_reference(store, source, meta)
    exports = build_exports(store, source, cached.exports)

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
            trial.close()
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
            trial.close()
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


def _return_freed_memory() -> None:
    """Hand memory freed by the runtimes not chosen back to the OS. glibc keeps freed heap
    for reuse, so a first start that loaded every candidate would otherwise keep the memory
    of all the runtimes it dropped for good; malloc_trim returns it."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
