"""How good a fitted model is on held-out students: accuracy, log loss, calibration."""

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support

CALIBRATION_BINS = 15


def majority_label(labels: np.ndarray) -> str:
    """The baseline every comparison uses: the most common career (ties: the first seen)."""
    return str(pd.Series(labels).value_counts().idxmax())


def evaluate(
    estimator: Any, X: np.ndarray, y: np.ndarray, classes: list[str], majority: str
) -> dict[str, float]:
    """Top-1, top-3, macro-F1 and log loss of a fitted model, with the majority baseline."""
    proba = aligned_proba(estimator, X, classes)
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
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.sum() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total / len(y))


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
