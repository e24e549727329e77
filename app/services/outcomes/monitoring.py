"""Drift of the active career model's inputs and answers, from window aggregates only.

For every feature of the active model, the population stability index (PSI) of the values
`predict` and `analyze` received in a sliding window against the model's training
reference; the same for the distribution of top-1 careers. No request is kept: each one
adds 1 to one fixed bin per feature (and to its top-1 career) in the newest of a ring of
small count arrays; the window is the ring's sum, and the oldest array is cleared when the
newest fills up.

The reference comes from the bundle: every career's quantiles of every feature and its
student count (reference.json), so the population is their mixture. Bin edges are that
population's deciles (on half units, so whole-number scores never sit on an edge). The
top-1 reference is the model's answers on its training students (`predicted_top1`, kept
by bundles trained since), or for older bundles on students drawn from the mixture.
"""

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core import metrics
from app.services.career.active import LoadedVersion

# The ring: the window is CHUNKS arrays of MONITORING_WINDOW / CHUNKS requests each.
CHUNKS = 10
# Deciles: ten bins per feature where the population spreads that far.
BIN_QUANTILES = np.linspace(0.1, 0.9, 9)
# An empty bin on either side would make PSI infinite: shares are floored here.
PSI_FLOOR = 1e-4
# Students drawn from the reference mixture to learn the model's top-1 distribution.
REFERENCE_SAMPLE = 4000
REFERENCE_SEED = 20_26


@dataclass(frozen=True)
class ModelReference:
    """What one model version's requests are compared with, built once per version.

    Every feature's bins live in one sorted boundary array: feature j's values are shifted
    by j x `spread` (more than any feature's range), and each feature starts with a sentinel
    boundary. One `searchsorted` then maps a whole row to one count slot per feature, and
    NaN (an imputed value) sorts past the end into the last slot, which no PSI reads.
    """

    version: str
    features: list[str]
    classes: list[str]
    boundaries: np.ndarray  # sentinels and shifted edges of every feature, sorted
    shift: np.ndarray  # (features,) j x spread
    first_slot: np.ndarray  # (features,) slot of each feature's lowest bin
    nbins: np.ndarray  # (features,) bins per feature
    expected: list[np.ndarray]  # per feature: reference share of each of its bins
    expected_top1: np.ndarray  # (classes,) reference share of each career as top-1

    @property
    def slots(self) -> int:
        return len(self.boundaries) + 1

    def slots_of(self, values: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.boundaries, values + self.shift, side="right")


def _mixture_cdf(reference: dict[str, Any], name: str) -> tuple[Any, float, float] | None:
    """The population's CDF of one feature (a student-weighted mixture of the careers'
    piecewise-linear quantile functions), with its smallest and largest value."""
    grid = np.asarray(reference["quantile_grid"], dtype=float) / 100
    parts = []
    for stats in reference["careers"].values():
        q = stats["quantiles"].get(name)
        if q is not None and stats["students"]:
            parts.append((float(stats["students"]), np.asarray(q, dtype=float)))
    if not parts:
        return None
    total = sum(w for w, _ in parts)
    lo = min(float(q[0]) for _, q in parts)
    hi = max(float(q[-1]) for _, q in parts)

    def cdf(x: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x, dtype=float)
        for weight, q in parts:
            out += weight * np.interp(x, q, grid, left=0.0, right=1.0)
        return out / total

    return cdf, lo, hi


def _feature_bins(reference: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(edges, expected share per bin) of one feature; one bin when the reference has none."""
    found = _mixture_cdf(reference, name)
    if found is None:
        return np.empty(0), np.ones(1)
    cdf, lo, hi = found
    if hi <= lo:
        return np.empty(0), np.ones(1)
    xs = np.linspace(lo, hi, 2001)
    values = cdf(xs)
    deciles = np.interp(BIN_QUANTILES, values, xs)
    edges = np.unique(np.round(deciles) + 0.5)
    edges = edges[(edges > lo) & (edges < hi)]
    shares = np.diff(np.concatenate([[0.0], cdf(edges), [1.0]]))
    return edges, np.clip(shares, 0.0, None) / max(float(shares.sum()), 1e-12)


def sample_students(model: LoadedVersion, n: int, seed: int) -> np.ndarray:
    """Feature rows drawn from the reference: a career by its share of students, then each
    feature from that career's quantiles (independently within the career)."""
    reference = model.bundle.reference
    grid = np.asarray(reference["quantile_grid"], dtype=float)
    careers = model.classes
    weights = np.array([reference["careers"][c]["students"] for c in careers], dtype=float)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(careers), size=n, p=weights / weights.sum())
    rows = np.full((n, len(model.spec.names)), np.nan)
    for c, career in enumerate(careers):
        mask = chosen == c
        count = int(mask.sum())
        if not count:
            continue
        quantiles = reference["careers"][career]["quantiles"]
        for j, name in enumerate(model.spec.names):
            q = quantiles.get(name)
            if q is not None:
                rows[mask, j] = np.interp(rng.uniform(0, 100, size=count), grid, q)
    return rows


def build_reference(model: LoadedVersion) -> ModelReference:
    """Bins and reference shares for every feature of a model, and its top-1 reference."""
    names = list(model.spec.names)
    per_feature = [_feature_bins(model.bundle.reference, name) for name in names]
    spread = 2.0 * max(max(f.maximum for f in model.spec.features), 1.0) + 10.0
    boundaries: list[float] = []
    first_slot = []
    for j, (edges, _) in enumerate(per_feature):
        boundaries.append(j * spread - spread / 2)  # below every valid value of feature j
        first_slot.append(len(boundaries))
        boundaries.extend(float(e) + j * spread for e in edges)
    boundaries.append(len(names) * spread)  # above every valid value: NaN alone sorts past it
    return ModelReference(
        version=model.bundle.version,
        features=names,
        classes=list(model.classes),
        boundaries=np.asarray(boundaries),
        shift=np.arange(len(names)) * spread,
        first_slot=np.asarray(first_slot, dtype=np.intp),
        nbins=np.array([len(edges) + 1 for edges, _ in per_feature], dtype=np.intp),
        expected=[shares for _, shares in per_feature],
        expected_top1=_expected_top1(model),
    )


def _expected_top1(model: LoadedVersion) -> np.ndarray:
    """The model's top-1 shares on its training students (bundles since the closed loop
    keep them), else on students drawn from its reference quantiles."""
    recorded = model.bundle.reference.get("predicted_top1")
    if isinstance(recorded, dict) and set(recorded) >= set(model.classes):
        shares = np.array([float(recorded[c]) for c in model.classes])
        return shares / max(float(shares.sum()), 1e-12)
    rows = sample_students(model, REFERENCE_SAMPLE, REFERENCE_SEED)
    top1 = np.asarray(model.proba(rows)).argmax(axis=1)
    return np.bincount(top1, minlength=len(model.classes)) / len(rows)


def psi(observed: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of observed counts against expected shares."""
    total = float(observed.sum())
    actual = np.maximum(observed / total, PSI_FLOOR)
    base = np.maximum(expected, PSI_FLOOR)
    return float(np.sum((actual - base) * np.log(actual / base)))


class _Window:
    """The ring of count arrays for one model version (1-D arrays: indexing a row of a 2-D
    array costs several times more per request)."""

    def __init__(self, reference: ModelReference) -> None:
        self.reference = reference
        self.counts = [np.zeros(reference.slots, dtype=np.int64) for _ in range(CHUNKS)]
        self.top1 = [np.zeros(len(reference.classes), dtype=np.int64) for _ in range(CHUNKS)]
        self.sizes = [0] * CHUNKS
        self.current = 0


class DriftMonitor:
    """Records predict/analyze requests into window aggregates and reports drift.

    `record` is called on the request path: a few numpy operations on the row the model
    already built, and three integer increments under a lock held for nothing else.
    """

    def __init__(self, *, window: int, threshold: float) -> None:
        self.window = window
        self.chunk = max(1, window // CHUNKS)
        # PSI's noise is about (bins - 1) / samples: below half a window it drowns drift.
        self.min_samples = max(1, window // 2)
        self.threshold = threshold
        self._lock = threading.Lock()
        self._build = threading.Lock()
        self._state: _Window | None = None
        self._published: set[str] = set()

    def prime(self, model: LoadedVersion) -> None:
        """Build the reference of the model now (off the request path), if it is new."""
        self._window_for(model)

    def _window_for(self, model: LoadedVersion) -> _Window:
        state = self._state
        if state is not None and state.reference.version == model.bundle.version:
            return state
        with self._build:  # one build per version, whichever request or tick comes first
            state = self._state
            if state is None or state.reference.version != model.bundle.version:
                state = _Window(build_reference(model))
                self._state = state
            return state

    def record(self, model: LoadedVersion, values: np.ndarray, top1: int) -> None:
        """One request's feature row (NaN where imputed) and its top-1 career index."""
        state = self._window_for(model)
        slots = state.reference.slots_of(values)
        with self._lock:
            current = state.current
            state.counts[current][slots] += 1
            state.top1[current][top1] += 1
            state.sizes[current] += 1
            if state.sizes[current] >= self.chunk:
                current = (current + 1) % CHUNKS
                state.counts[current][:] = 0
                state.top1[current][:] = 0
                state.sizes[current] = 0
                state.current = current

    def snapshot(self) -> dict[str, Any]:
        """Window size, PSI per feature (None until enough values), the largest, and the
        top-1 PSI, for the active version."""
        state = self._state
        if state is None:
            return {
                "model_version": None,
                "window": {"size": self.window, "requests": 0, "min_samples": self.min_samples},
                "drift": {
                    "features": {},
                    "max_psi": None,
                    "max_feature": None,
                    "predictions_psi": None,
                    "threshold": self.threshold,
                    "drifting": False,
                },
            }
        with self._lock:
            counts = np.sum(state.counts, axis=0)
            top1 = np.sum(state.top1, axis=0)
            requests = sum(state.sizes)
        reference = state.reference
        features: dict[str, float | None] = {}
        for j, name in enumerate(reference.features):
            start = int(reference.first_slot[j])
            observed = counts[start : start + int(reference.nbins[j])]
            enough = observed.sum() >= self.min_samples
            features[name] = round(psi(observed, reference.expected[j]), 4) if enough else None
        known = {k: v for k, v in features.items() if v is not None}
        max_feature = max(known, key=lambda k: known[k]) if known else None
        predictions = (
            round(psi(top1, reference.expected_top1), 4) if requests >= self.min_samples else None
        )
        max_psi = known[max_feature] if max_feature else None
        return {
            "model_version": reference.version,
            "window": {"size": self.window, "requests": requests, "min_samples": self.min_samples},
            "drift": {
                "features": features,
                "max_psi": max_psi,
                "max_feature": max_feature,
                "predictions_psi": predictions,
                "threshold": self.threshold,
                "drifting": any(
                    v is not None and v >= self.threshold for v in (max_psi, predictions)
                ),
            },
        }

    def publish(self, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
        """Set the Prometheus gauges from a snapshot (taken now unless given)."""
        snapshot = snapshot or self.snapshot()
        drift = snapshot["drift"]
        features = {k: v for k, v in drift["features"].items() if v is not None}
        for gone in self._published - set(features):
            metrics.DRIFT_PSI.labels(gone).set(math.nan)
        for name, value in features.items():
            metrics.DRIFT_PSI.labels(name).set(value)
        self._published = set(features)
        metrics.DRIFT_MAX_PSI.set(_or_nan(drift["max_psi"]))
        metrics.PREDICTION_PSI.set(_or_nan(drift["predictions_psi"]))
        metrics.MONITORING_WINDOW.set(snapshot["window"]["requests"])
        return snapshot


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
