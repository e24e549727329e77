"""Timing the candidates that passed the parity gate, under `auto`: the fastest on this
machine serves, since which one that is depends on the CPU or GPU and is never assumed;
then an ONNX winner's thread count, measured the same way."""

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.services.clip import onnx_session
from app.services.clip.candidates import Trial
from app.services.clip.parity import Reference
from app.utils.text import brief_error

# `auto` times the passing candidates for about this long in total, at these batch sizes
# (capped at CLIP_MAX_BATCH): a lone request, and a full batch under load. Both ends are
# timed because the ranking can differ between them: on a CPU the cost per image levels
# off at small batches, so batch 8 already stands for a loaded server; a GPU keeps
# amortising its launches up to large batches, and at batch 1 reduced precision can lose
# to fp32 (autocast's casts are then a large part of the work).
TIMING_BUDGET_S = 6.0
TIMING_ROUNDS = 5
TIMING_BATCHES = {"cpu": (1, 8), "cuda": (1, 256)}


def time_trials(trials: list[Trial], reference: Reference, batches: list[int]) -> None:
    """ms per image of each trial at each batch size: the best of up to TIMING_ROUNDS
    interleaved rounds (other work on the machine only slows runs, and interleaving spreads
    drift in the machine's speed over every trial). A warm-up and one round always run;
    more only within TIMING_BUDGET_S. A trial that fails here (out of memory at a batch the
    gate never tried, say) is dropped with the reason."""
    inputs = {b: np.resize(reference.images, (b, *reference.images.shape[1:])) for b in batches}
    best: dict[tuple[int, int], float] = {}  # (id of the trial, batch)
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
                        key = (id(trial), b)
                        best[key] = min(best.get(key, math.inf), ms)
            except Exception as exc:
                trial.error = f"failed while timed: {brief_error(exc)}"
                trial.passed = False
        if round_ and time.perf_counter() >= deadline:
            break
    for trial in trials:
        if trial.error is None:
            trial.ms_per_image = {str(b): round(best[(id(trial), b)], 3) for b in batches}


def faster_on_one_thread(
    chosen: Trial, export: Path, reference: Reference, batches: list[int]
) -> tuple[Trial, str]:
    """`chosen`, an ONNX runtime on TORCH_THREADS intra-op threads, or the same export on
    one thread, whichever is faster here, and a note on how they compared. On a large model
    the threads nearly halve the time per image; on a small one, waking them for every
    operator costs more than they save, and the CPU they burn is taken from the decode
    workers. Measured like the runtime itself: both timed together, interleaved, in rounds
    of their own. What is returned keeps `chosen`'s figures from the rounds that ranked
    every candidate, so that /health compares like with like; the note gives the figures
    of these rounds."""
    many = replace(chosen, ms_per_image=None)  # the same session, timed again
    single = replace(
        chosen,
        threads=1,
        ms_per_image=None,
        runtime=onnx_session.OnnxRuntime(export, chosen.precision, 1),
    )
    time_trials([many, single], reference, batches)
    kept = f"{chosen.threads} threads"
    failed = single.error or many.error
    if failed is not None:
        single.close()
        return chosen, f"; timed again on 1 thread: {failed}, so it keeps {kept}"
    compared = (
        f"; timed again against itself on 1 thread: {single.score():.2f} vs "
        f"{many.score():.2f} ms/image on {kept}"
    )
    if single.score() < many.score():
        chosen.close()
        single.ms_per_image = chosen.ms_per_image
        return single, f"{compared}, so it serves on 1 thread"
    single.close()
    return chosen, f"{compared}, so it keeps {kept}"
