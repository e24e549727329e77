"""Prometheus metrics: defined once here, updated where things happen, served at /metrics.

With WORKERS > 1, `python -m app` gives each start a fresh PROMETHEUS_MULTIPROC_DIR; every
worker writes its samples there and /metrics merges them, so counters and histograms add
up over the workers, gauges of work in flight are summed over live workers, and state
gauges show the highest value any live worker reports.
"""

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

from app.schemas.health import ClipStatus, ModelStatus

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
# Every metric of ours under one prefix, so that a shared Prometheus never mixes them with
# another app's `http_requests_total`; the client library's process_* keep their standard
# names (they describe a process, and the scrape's job/namespace/pod labels tell whose).
PREFIX = "skill_compass_ml_"
STATES = ("loading", "loaded", "unavailable", "disabled")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    f"{PREFIX}http_requests", "Requests answered, by route template, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_DURATION = Histogram(
    f"{PREFIX}http_request_duration_seconds", "Seconds from request to the end of the answer.",
    ["route", "method"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
HTTP_IN_FLIGHT = Gauge(
    f"{PREFIX}http_requests_in_flight", "Requests being answered.", multiprocess_mode="livesum"
)
CLIP_QUEUE_DEPTH = Gauge(
    f"{PREFIX}clip_queue_depth",
    "CLIP requests waiting for a forward pass.",
    multiprocess_mode="livesum",
)
CLIP_IMAGES_WAITING = Gauge(
    f"{PREFIX}clip_images_waiting", "CLIP images and texts admitted and not yet answered.",
    multiprocess_mode="livesum",
)  # fmt: skip
CLIP_BATCH_SIZE = Histogram(
    f"{PREFIX}clip_batch_size", "Rows (images or texts) per CLIP forward pass.", ["tower"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)  # fmt: skip
CLIP_INFERENCE = Histogram(
    f"{PREFIX}clip_inference_seconds", "Seconds per CLIP forward pass.", ["tower"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
CLIP_PREPROCESS = Histogram(
    f"{PREFIX}clip_preprocess_seconds", "Seconds to decode and preprocess one image.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)  # fmt: skip
CLIP_CACHE_HITS = Counter(f"{PREFIX}clip_cache_hits", "Images answered from the embedding cache.")
CLIP_CACHE_MISSES = Counter(f"{PREFIX}clip_cache_misses", "Images not in the embedding cache.")
CLIP_OVERLOADED = Counter(
    f"{PREFIX}clip_overloaded", "CLIP requests refused with 429 (CLIP_MAX_WAITING)."
)
MODEL_STATE = Gauge(
    f"{PREFIX}model_state", "1 for each model's current state (loading, loaded, unavailable, disabled).",
    ["model", "state"], multiprocess_mode="livemax",
)  # fmt: skip
CLIP_RUNTIME = Gauge(
    f"{PREFIX}clip_runtime_info", "1 for the CLIP runtime serving.", ["backend", "precision", "device"],
    multiprocess_mode="livemax",
)  # fmt: skip
CAREER_PREDICTIONS = Counter(
    f"{PREFIX}career_predictions", "Career answers, by use case.", ["route"]
)
CAREER_MODEL = Gauge(
    f"{PREFIX}career_model_info", "1 for the career model version being served.", ["version"],
    multiprocess_mode="livemax",
)  # fmt: skip
CAREER_TOP1 = Gauge(
    f"{PREFIX}career_model_holdout_top1", "Held-out top-1 accuracy of the career model being served.",
    multiprocess_mode="livemax",
)  # fmt: skip
RETRAIN_JOBS = Counter(f"{PREFIX}career_retrain_jobs", "Retraining jobs by final state.", ["state"])
RETRAIN_DURATION = Histogram(
    f"{PREFIX}career_retrain_duration_seconds", "Seconds from a retraining job's start to its end.",
    buckets=(5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)  # fmt: skip

# Closed loop (app/services/outcomes). Drift gauges: one series per feature of the active
# model (a bounded set: the known subjects, interests and habits).
OUTCOMES_INGESTED = Counter(
    f"{PREFIX}career_outcomes_ingested", "Outcome records received, stored or skipped as duplicates.",
    ["result"],
)  # fmt: skip
DRIFT_PSI = Gauge(
    f"{PREFIX}career_drift_psi", "PSI of each feature's values in the monitoring window against the "
    "active model's training reference.", ["feature"], multiprocess_mode="livemax",
)  # fmt: skip
DRIFT_MAX_PSI = Gauge(
    f"{PREFIX}career_drift_max_psi", "Largest feature PSI in the monitoring window.",
    multiprocess_mode="livemax",
)  # fmt: skip
PREDICTION_PSI = Gauge(
    f"{PREFIX}career_prediction_psi", "PSI of the top-1 careers answered in the monitoring window.",
    multiprocess_mode="livemax",
)  # fmt: skip
MONITORING_WINDOW = Gauge(
    f"{PREFIX}career_monitoring_window_requests", "Requests in the monitoring window.",
    multiprocess_mode="livesum",
)  # fmt: skip
LIVE_TOP1 = Gauge(
    f"{PREFIX}career_live_top1_accuracy", "Top-1 accuracy of the active model on the outcomes scored "
    "with it on arrival.", multiprocess_mode="livemax",
)  # fmt: skip
LIVE_LOG_LOSS = Gauge(
    f"{PREFIX}career_live_log_loss", "Log loss of the active model on the outcomes scored with it on "
    "arrival.", multiprocess_mode="livemax",
)  # fmt: skip
OUTCOMES_NEW = Gauge(
    f"{PREFIX}career_outcomes_new_since_active", "Outcomes received since the active model was trained.",
    multiprocess_mode="livemax",
)  # fmt: skip
AUTO_RETRAINS = Counter(
    f"{PREFIX}career_retrain_auto_triggers", "Automatic retraining jobs started, by what crossed its "
    "threshold (outcomes, drift or both).", ["reason"],
)  # fmt: skip

if MULTIPROCESS:
    # The client library's process metrics describe one process only; with several workers
    # each worker reports its own here, summed over live workers under the same names (in
    # the workers' files only, beside the default registry's own process collector).
    _PROCESS = {
        "process_resident_memory_bytes": Gauge(
            "process_resident_memory_bytes", "Resident memory of all workers, bytes.",
            multiprocess_mode="livesum", registry=None,
        ),
        "process_cpu_seconds_total": Gauge(
            "process_cpu_seconds_total", "CPU seconds of all live workers.",
            multiprocess_mode="livesum", registry=None,
        ),
        "process_open_fds": Gauge(
            "process_open_fds", "Open file descriptors of all workers.",
            multiprocess_mode="livesum", registry=None,
        ),
    }  # fmt: skip
    _OWN_PROCESS = ProcessCollector(registry=None)

# Labels last set per info gauge in this process: a new version or runtime sets the old
# labels to 0, so a swap never leaves two "current" series.
_current: dict[str, tuple[str, ...]] = {}


def _set_info(gauge: Gauge, key: str, labels: tuple[str, ...]) -> None:
    previous = _current.get(key)
    if previous is not None and previous != labels:
        gauge.labels(*previous).set(0)
    gauge.labels(*labels).set(1)
    _current[key] = labels


def observe_models(statuses: Iterable[tuple[str, ModelStatus]]) -> None:
    """Record each served model's state (and CLIP's runtime) from its /health status."""
    for name, status in statuses:
        for state in STATES:
            MODEL_STATE.labels(name, state).set(1 if status.state == state else 0)
        if isinstance(status, ClipStatus) and status.runtime is not None:
            runtime = status.runtime
            labels = (runtime.backend, runtime.precision, runtime.device)
            _set_info(CLIP_RUNTIME, "clip_runtime", labels)
    if MULTIPROCESS:
        for family in _OWN_PROCESS.collect():
            for sample in family.samples:
                if sample.name in _PROCESS:
                    _PROCESS[sample.name].set(sample.value)


def observe_career_model(version: str, holdout_top1: float | None) -> None:
    """The career model this process now serves."""
    _set_info(CAREER_MODEL, "career_model", (version,))
    if holdout_top1 is not None:
        CAREER_TOP1.set(holdout_top1)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format: every worker's, merged, with several."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
