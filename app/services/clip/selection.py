"""Which runtime serves CLIP on this machine: candidates, a parity gate, then timing.

    candidates (CLIP_BACKEND x CLIP_PRECISION, the device, the CPU's flags)
      -> artifacts: the fp32 probe reference and the ONNX exports, built once and cached
      -> parity gate: each candidate reproduces torch fp32 on a fixed probe set
         (min cosine >= CLIP_MIN_COSINE, the same best tag for every probe image)
      -> auto: the passing candidates timed on this machine, the fastest serves;
         a forced backend or precision: the first passing one in preference order
      -> the choice remembered, keyed by what decided it (`remembered.py`)

The fastest runtime differs from CPU to CPU (bf16 is fast with AMX and emulated without;
int8's exactness depends on VNNI), so it is measured here, never assumed. A later start on
the same kind of machine loads only the remembered winner and gates it against the stored
reference: with an ONNX winner it imports no torch, and it works without torch installed.

The steps live beside it: `candidates.py`, `artifact_builds.py`, `parity.py`, `timing.py`,
`remembered.py`.
"""

import contextlib
import ctypes
import gc
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from app.config import Settings
from app.schemas.health import ChosenBy, ClipPreprocess, ClipRuntime
from app.services.clip import onnx_session
from app.services.clip.artifact_builds import (
    ONNX_VERSIONS,
    REFERENCE_VERSIONS,
    Cached,
    build_exports,
    build_reference,
    store_for,
    vocabulary_in,
)
from app.services.clip.artifacts import ArtifactError, ArtifactStore, library_versions
from app.services.clip.candidates import Trial, cpu_flags, plan
from app.services.clip.parity import MIN_COSINE, Reference, gate
from app.services.clip.preprocess import ImageSpec
from app.services.clip.remembered import (
    ChoiceKey,
    RememberedChoice,
    artifact_digest,
    now,
    recall,
    remember,
)
from app.services.clip.runtime import ClipMeta, Runtime, TorchModel
from app.services.clip.timing import TIMING_BATCHES, faster_on_one_thread, time_trials
from app.services.clip.tokenizer import ClipTokenizer
from app.services.clip.weights import Weights, resolve_weights
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
    chosen_by: ChosenBy

    def report(
        self, *, device: str, gpu_jpeg_decode: bool, preprocess: ClipPreprocess | None
    ) -> ClipRuntime:
        """The serving runtime as /health shows it, with what the service adds around it."""
        return ClipRuntime(
            backend=self.chosen.backend,
            precision=self.chosen.precision,
            recipe=self.chosen.recipe,
            chosen_by=self.chosen_by,
            min_cosine=self.chosen.min_cosine,
            ms_per_image=self.chosen.ms_per_image,
            threads=self.chosen.threads or 1,
            candidates=[trial.candidate() for trial in self.trials],
            device=device,
            preprocess=preprocess,
            gpu_jpeg_decode=gpu_jpeg_decode,
        )


def select(
    settings: Settings,
    device: str,
    max_batch: int,
    prepare_torch: Callable[[], None] | None = None,
) -> Selection:
    """The runtime that serves: the one remembered for this kind of machine if it still
    passes the gate, else every candidate built, checked and (under auto) timed.
    `prepare_torch` runs once, just before torch is first imported, if it is."""
    prepare = prepare_torch or (lambda: None)
    flags = cpu_flags()
    trials = plan(settings, device, flags)
    weights = resolve_weights(settings)
    store = store_for(settings, weights)
    if store is None:
        for trial in trials:
            if trial.backend == "onnx" and trial.error is None:
                trial.error = "skipped: random-init weights cannot be exported reproducibly"
    live = [t for t in trials if t.error is None]
    if not live:
        raise ValueError("no CLIP runtime to try: " + "; ".join(t.summary() for t in trials))
    batches = sorted({min(b, max_batch) for b in TIMING_BATCHES[_kind(device)]})
    key = ChoiceKey.of(settings, device, batches, trials, flags)
    if store is not None:
        recalled = _recall(settings, device, weights, store, key, prepare)
        if recalled is not None:
            return recalled
    selection = _measure(settings, device, weights, store, trials, batches, prepare)
    if store is not None:
        _remember(store, key, selection)
    return selection


def _kind(device: str) -> str:
    return "cuda" if device == "cuda" else "cpu"


def _measure(
    settings: Settings,
    device: str,
    weights: Weights,
    store: ArtifactStore | None,
    trials: list[Trial],
    batches: list[int],
    prepare_torch: Callable[[], None],
) -> Selection:
    """Build, check and (under auto) time the candidates; return the one that serves."""
    live = [t for t in trials if t.error is None]
    cached = Cached.look_up(store, [t.artifact for t in live if t.backend == "onnx"])
    source = None
    if not cached.torch_free(live):
        if importlib.util.find_spec("torch") is None:
            raise RuntimeError(
                "torch is not installed and the CLIP cache lacks the probe reference or an "
                "ONNX export: build them with `python -m app.prefetch` where torch is"
            )
        prepare_torch()
        source = TorchModel(settings, device, weights)
    meta = source.meta if source is not None else cached.meta
    assert meta is not None
    if cached.reference is not None and cached.meta is not None:
        reference, meta = cached.reference, replace(meta, fast_agreement=cached.meta.fast_agreement)
    else:
        reference, meta = build_reference(store, source, meta)
    exports = build_exports(store, source, cached.exports)

    for trial in live:
        try:
            if trial.backend == "onnx":
                export = exports[trial.artifact]
                if isinstance(export, str):
                    raise ArtifactError(export)
                trial.runtime = onnx_session.OnnxRuntime(
                    export, trial.precision, settings.torch_threads
                )
            else:
                assert source is not None
                trial.runtime = source.runtime(trial.precision)
            trial.threads = settings.torch_threads
            threshold = settings.clip_min_cosine or MIN_COSINE[trial.precision]
            gate(trial, reference, threshold, meta.logit_scale)
        except Exception as exc:  # one candidate failing never stops the others
            trial.error = brief_error(exc)
        if not trial.passed:
            logger.warning("CLIP runtime %s", trial.summary())
            trial.close()
    passing = [t for t in live if t.passed]
    if not passing:
        for trial in trials:
            trial.outcome = trial.error
        raise RuntimeError(
            "no CLIP runtime passed its checks: " + "; ".join(t.summary() for t in trials)
        )
    chosen = passing[0]
    chosen_by: ChosenBy = "preference"
    if settings.clip_backend == "auto" and settings.clip_precision == "auto" and len(passing) > 1:
        time_trials(passing, reference, batches)
        timed = [t for t in passing if t.passed]
        if not timed:
            raise RuntimeError(
                "every CLIP runtime failed while timed: " + "; ".join(t.summary() for t in trials)
            )
        chosen = min(timed, key=Trial.score)
        chosen_by = "measured"
    threads_note = ""
    if chosen_by == "measured" and chosen.backend == "onnx" and (chosen.threads or 1) > 1:
        export = exports[chosen.artifact]
        assert not isinstance(export, str)
        fastest, threads_note = faster_on_one_thread(chosen, export, reference, batches)
        if fastest is not chosen:
            trials[trials.index(chosen)] = passing[passing.index(chosen)] = fastest
            chosen = fastest
    _explain(trials, chosen, chosen_by)
    chosen.outcome = f"{chosen.outcome}{threads_note}"
    for trial in passing:
        if trial is not chosen:
            trial.close()
    assert chosen.runtime is not None

    tokenize: Callable[[list[str]], np.ndarray]
    if meta.tokenizer is not None:
        tokenize = ClipTokenizer.from_spec(meta.tokenizer, cached.vocabulary)
    else:
        assert source is not None
        tokenize = source.tokenize
    selection = _serving(chosen, meta, tokenize, source, trials, reference, chosen_by)
    _return_freed_memory()
    logger.info(
        "CLIP serves %s (%s); candidates: %s",
        chosen.name,
        chosen.outcome,
        "; ".join(t.summary() for t in trials),
    )
    return selection


def _explain(trials: list[Trial], chosen: Trial, chosen_by: str) -> None:
    """Each trial's outcome: why the chosen one serves and why each other one does not,
    by the figures of the rounds that timed them all (the thread step keeps them)."""
    best = chosen.score()
    for trial in trials:
        if trial is chosen:
            trial.outcome = (
                f"serves: the fastest measured ({best:.2f} ms/image)"
                if chosen_by == "measured"
                else "serves: the first to pass, in preference order (a forced setting)"
            )
        elif trial.error is not None:
            trial.outcome = trial.error
        elif trial.passed and chosen_by == "measured":
            trial.outcome = (
                f"passed, but slower ({trial.score():.2f} vs {best:.2f} ms/image, "
                "geometric mean over the timed batch sizes, timed in the same rounds)"
            )
        elif trial.passed:
            trial.outcome = "passed, but later in preference order"
        else:
            trial.outcome = "not tried: an earlier candidate passed"


def _remember(store: ArtifactStore, key: ChoiceKey, selection: Selection) -> None:
    """Keep the measured choice for the next start on this kind of machine."""
    chosen = selection.chosen
    artifacts = {}
    for kind, versions in (("reference", REFERENCE_VERSIONS), (chosen.artifact, ONNX_VERSIONS)):
        if kind != "reference" and chosen.backend != "onnx":
            continue
        found = store.find(kind, library_versions(*versions))
        if found is None:
            return  # not cached (a read-only cache): nothing to remember it by
        artifacts[kind] = artifact_digest(found[1])
    remember(
        store,
        RememberedChoice(
            key=key,
            chosen=chosen.name,
            artifacts=artifacts,
            trials=tuple(t.to_dict() for t in selection.trials),
            measured_at=now(),
        ),
    )


def _recall(
    settings: Settings,
    device: str,
    weights: Weights,
    store: ArtifactStore,
    key: ChoiceKey,
    prepare_torch: Callable[[], None],
) -> Selection | None:
    """The remembered choice for `key`, loaded and gated against the stored reference;
    None (measure again) if there is none, an artifact changed, or it fails the gate now."""
    choice = recall(store, key)
    if choice is None:
        return None
    found = store.find("reference", library_versions(*REFERENCE_VERSIONS))
    if found is None or artifact_digest(found[1]) != choice.artifacts.get("reference"):
        return None
    try:
        meta = ClipMeta.from_dict(found[1].extras["meta"])
        reference = Reference.load(found[0] / "probes.npz")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    trials = choice.restored_trials()
    chosen = next((t for t in trials if t.name == choice.chosen), None)
    if chosen is None:
        return None
    source = None
    if chosen.backend == "onnx":
        if meta.tokenizer is None or ImageSpec.from_open_clip(meta.preprocess) is None:
            return None  # open_clip's tokenizer or transform: torch after all
        export = store.find(chosen.artifact, library_versions(*ONNX_VERSIONS))
        if export is None or artifact_digest(export[1]) != choice.artifacts.get(chosen.artifact):
            return None
        chosen.threads = chosen.threads or settings.torch_threads
        runtime: Runtime = onnx_session.OnnxRuntime(export[0], chosen.precision, chosen.threads)
    else:
        prepare_torch()
        source = TorchModel(settings, device, weights)
        meta = replace(source.meta, fast_agreement=meta.fast_agreement)
        runtime = source.runtime(chosen.precision)
        chosen.threads = settings.torch_threads
    chosen.runtime = runtime
    chosen.error = None
    threshold = settings.clip_min_cosine or MIN_COSINE[chosen.precision]
    gate(chosen, reference, threshold, meta.logit_scale)
    if not chosen.passed:
        logger.warning(
            "the remembered CLIP runtime %s fails its parity gate now (%s): measuring again",
            chosen.name,
            chosen.error,
        )
        chosen.close()
        return None
    chosen.outcome = (
        f"serves: remembered from the measurement of {choice.measured_at} on this kind of "
        "machine (same CPU, threads, settings, library versions and artifacts); parity "
        "checked again against the stored reference"
    )
    tokenize: Callable[[list[str]], np.ndarray] = (
        ClipTokenizer.from_spec(meta.tokenizer, vocabulary_in(found[0]))
        if meta.tokenizer is not None
        else source.tokenize  # type: ignore[union-attr]
    )
    selection = _serving(chosen, meta, tokenize, source, trials, reference, "remembered")
    logger.info("CLIP serves %s (%s)", chosen.name, chosen.outcome)
    return selection


def _return_freed_memory() -> None:
    """Hand memory freed by the runtimes not chosen back to the OS. glibc keeps freed heap
    for reuse, so a first start that loaded every candidate would otherwise keep the memory
    of all the runtimes it dropped for good; malloc_trim returns it."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _serving(
    chosen: Trial,
    meta: ClipMeta,
    tokenize: Callable[[list[str]], np.ndarray],
    source: TorchModel | None,
    trials: list[Trial],
    reference: Reference,
    chosen_by: ChosenBy,
) -> Selection:
    """The selection once `chosen` serves; torch's fp32 weights are freed unless they serve."""
    assert chosen.runtime is not None
    if source is not None and chosen.name != "torch-fp32":
        source.release_weights()
    return Selection(
        runtime=chosen.runtime,
        meta=meta,
        tokenize=tokenize,
        fallback_preprocess=source.preprocess if source is not None else None,
        trials=trials,
        chosen=chosen,
        reference=reference,
        imported_torch=source is not None,
        chosen_by=chosen_by,
    )
