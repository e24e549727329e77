"""How good a fitted model is on held-out students: accuracy, log loss, calibration."""

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support

CALIBRATION_BINS = 15
# Draws behind the ECE a perfectly calibrated model would score (its median is stable to
# about 0.002 at this many).
NOISE_DRAWS = 200


def majority_label(labels: np.ndarray) -> str:
    """The baseline every comparison uses: the most common career (ties: the first seen)."""
    return str(pd.Series(labels).value_counts().idxmax())


def evaluate(
    estimator: Any, X: np.ndarray, y: np.ndarray, classes: list[str], majority: str
) -> dict[str, float]:
    """Top-1, top-3, macro-F1, log loss and calibration error of a fitted model, with the
    majority baseline."""
    return scores(y, aligned_proba(estimator, X, classes), classes, majority)


def scores(y: np.ndarray, proba: np.ndarray, classes: list[str], majority: str) -> dict[str, float]:
    """`evaluate`'s metrics of probabilities already predicted, in `classes` order."""
    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    k = min(3, len(classes) - 1) or 1
    return {
        "top1_accuracy": round(float(accuracy_score(y, predicted)), 4),
        "top3_accuracy": round(_top_k_accuracy(y, proba, classes, k), 4),
        "macro_f1": round(
            float(f1_score(y, predicted, average="macro", labels=classes, zero_division=0)), 4
        ),
        "log_loss": round(float(log_loss(y, np.clip(proba, 1e-12, 1), labels=classes)), 4),
        "expected_calibration_error": round(expected_calibration_error(y, proba, classes), 4),
        # What sampling alone gives on this many students: context for the value above.
        "perfect_calibration_ece": round(
            float(np.median(perfect_calibration_ece(proba.max(axis=1)))), 4
        ),
        "baseline_top1_accuracy": round(float(np.mean(y == majority)), 4),
        "rows": len(y),
    }


def _top_k_accuracy(y: np.ndarray, proba: np.ndarray, classes: list[str], k: int) -> float:
    """Share of students whose career is among the k most probable (sklearn's
    top_k_accuracy_score, which refuses two-class probability tables)."""
    truth = np.searchsorted(classes, y)
    best = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float(np.mean((best == truth[:, None]).any(axis=1)))


def expected_calibration_error(
    y: np.ndarray, proba: np.ndarray, classes: list[str], bins: int = CALIBRATION_BINS
) -> float:
    """How far the top-1 confidence is from the top-1 accuracy, averaged over `bins`
    equal-width confidence bins weighted by their students (0 = perfectly calibrated)."""
    confidence = proba.max(axis=1)
    correct = np.asarray(classes, dtype=object)[proba.argmax(axis=1)] == y
    return _ece(confidence, correct, bins)


def _ece(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    # Each bin's weight times |accuracy - confidence| is |right answers - summed confidence|.
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    right = np.bincount(which, weights=correct.astype(float), minlength=bins)
    confident = np.bincount(which, weights=confidence, minlength=bins)
    return float(np.abs(right - confident).sum() / len(confidence))


def perfect_calibration_ece(
    confidence: np.ndarray, students: int | None = None, draws: int = NOISE_DRAWS, seed: int = 0
) -> np.ndarray:
    """The ECEs a perfectly calibrated model with these top-1 confidences scores on
    `students` students (default: all of them), one per draw: its top-1 is right with
    exactly its confidence, so everything above 0 is the noise of a finite sample."""
    rng = np.random.default_rng(seed)
    n = len(confidence) if students is None else students
    scores = np.empty(draws)
    for i in range(draws):
        sample = confidence if n == len(confidence) else rng.choice(confidence, n, replace=False)
        scores[i] = _ece(sample, rng.random(n) < sample)
    return scores


def per_career(
    estimator: Any, X: np.ndarray, y: np.ndarray, classes: list[str]
) -> dict[str, dict[str, float]]:
    """Held-out precision, recall and support of each career."""
    predicted = np.asarray(classes, dtype=object)[
        aligned_proba(estimator, X, classes).argmax(axis=1)
    ]
    precision, recall, _, support = precision_recall_fscore_support(
        y, predicted, labels=classes, zero_division=0
    )
    return {
        career: {"precision": round(float(p), 4), "recall": round(float(r), 4), "support": int(n)}
        for career, p, r, n in zip(classes, precision, recall, support, strict=True)
    }


def aligned_proba(estimator: Any, X: np.ndarray, classes: list[str]) -> np.ndarray:
    """Probabilities in the column order of `classes` (zeros for classes the model lacks)."""
    proba = estimator.predict_proba(X)
    own = list(estimator.classes_)
    if own == classes:
        return proba
    out = np.zeros((len(X), len(classes)))
    for j, name in enumerate(own):
        if name in classes:
            out[:, classes.index(name)] = proba[:, j]
    return out
