"""The one training pipeline: table in, validated and deduplicated, model and metrics out.

`python -m app.train` runs it offline and the retrain endpoint runs it online, so both produce the
same kind of bundle with honestly measured metrics: one row per student, and the
held-out split never shares a student with the rows the model was fitted on.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from app.services.career.evaluation import (
    aligned_proba,
    evaluate,
    majority_label,
    per_career,
)
from app.services.career.features import FeatureSpec
from app.services.career.preparation import DEFAULT_SEED, MIN_ROWS_PER_CLASS, PreparedData

logger = logging.getLogger(__name__)

# Quantile grid stored per career for percentiles in the analytics.
QUANTILES = np.linspace(0, 100, 21)

Progress = Callable[[str, float], None]


def _candidates(seed: int) -> dict[str, ClassifierMixin]:
    return {
        "logistic_regression": LogisticRegression(C=0.5, max_iter=2000),
        # Shallow trees, many of them, stopped early on held-back rows: on a few dozen
        # features this gives the best log loss of the configurations compared.
        "hist_gradient_boosting": HistGradientBoostingClassifier(
            learning_rate=0.08,
            max_iter=200,
            max_depth=3,
            min_samples_leaf=40,
            l2_regularization=1.0,
            early_stopping=True,
            random_state=seed,
        ),
        "neural_network": MLPClassifier(
            hidden_layer_sizes=(64,),
            alpha=1e-2,
            early_stopping=True,
            max_iter=300,
            random_state=seed,
        ),
        "random_forest": RandomForestClassifier(
            n_estimators=150, min_samples_leaf=3, max_features="sqrt", random_state=seed, n_jobs=1
        ),
    }


CANDIDATES = tuple(_candidates(0))
# Every candidate is compared by default: whichever wins is compiled into a fast numpy
# predictor at load time (`compiled.py`), so serving speed does not limit the choice.
DEFAULT_CANDIDATES = CANDIDATES
# Above this many training rows, cross-validation uses fewer folds: each fold already has
# plenty of students, and the tree ensembles' fits dominate the time.
LARGE_TRAINING_ROWS = 4000
LARGE_DATA_FOLDS = 3
# Temperature scaling is fitted per cross-validation fold and the calibrated fold models
# are averaged (sklearn's ensemble=True): the calibrator then sees the very models it
# calibrates. A random forest is already an average of many trees; folding it five times
# over would multiply its serving cost for no gain, so it is calibrated once.
NOT_FOLD_ENSEMBLED = frozenset({"random_forest"})


@dataclass
class TrainingConfig:
    """Knobs of one training run; the seed makes the whole run repeatable."""

    seed: int = DEFAULT_SEED
    test_fraction: float = 0.2
    cv_folds: int = 5
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    min_rows_per_class: int = MIN_ROWS_PER_CLASS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.candidates) - set(CANDIDATES))
        if unknown or not self.candidates:
            raise ValueError(f"unknown model candidates {unknown}; choose from {list(CANDIDATES)}")


@dataclass
class TrainedModel:
    """A fitted, calibrated classifier with what it takes to explain its answers."""

    estimator: Any
    spec: FeatureSpec
    classes: list[str]
    metrics: dict[str, Any]
    reference: dict[str, Any]
    holdout_X: np.ndarray
    holdout_y: np.ndarray
    majority: str = ""  # the training split's most common career: the baseline


def _folds(y: np.ndarray, wanted: int) -> int:
    smallest = int(pd.Series(y).value_counts().min())
    if len(y) > LARGE_TRAINING_ROWS:
        wanted = min(wanted, LARGE_DATA_FOLDS)
    return max(2, min(wanted, smallest))


def _pipeline(model: ClassifierMixin) -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("model", model),
        ]
    )


def cv_splits(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, config: TrainingConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The grouped, stratified folds that compare the candidates and calibrate the winner."""
    inner = StratifiedGroupKFold(
        n_splits=_folds(y, config.cv_folds), shuffle=True, random_state=config.seed
    )
    return list(inner.split(X, y, groups))


def calibrated(
    name: str, splits: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> CalibratedClassifierCV:
    """Candidate `name`, unfitted, wrapped for temperature scaling over `splits`.

    Temperature scaling: one parameter for all careers, so serving pays for one calibrator
    instead of one per career, and the compiled predictor folds it in.
    """
    return CalibratedClassifierCV(
        _pipeline(_candidates(seed)[name]),
        method="temperature",
        cv=splits,
        ensemble=name not in NOT_FOLD_ENSEMBLED,
    )


def train_model(
    data: PreparedData,
    *,
    config: TrainingConfig | None = None,
    progress: Progress | None = None,
) -> TrainedModel:
    """Compare candidates by grouped CV, calibrate the best, measure it on held-out students."""
    config = config or TrainingConfig()
    report = progress or (lambda _stage, _fraction: None)
    X, y, groups = data.X, data.y, data.groups
    classes = sorted(set(y.tolist()))

    outer = StratifiedGroupKFold(
        n_splits=max(2, round(1 / config.test_fraction)), shuffle=True, random_state=config.seed
    )
    train_idx, test_idx = next(outer.split(X, y, groups))
    X_train, y_train, g_train = X[train_idx], y[train_idx], groups[train_idx]
    X_test, y_test = X[test_idx], y[test_idx]
    majority = majority_label(y_train)

    splits = cv_splits(X_train, y_train, g_train, config)
    cv_results: dict[str, dict[str, float]] = {}
    models = _candidates(config.seed)
    for i, name in enumerate(config.candidates):
        report(f"cross-validating {name}", 0.1 + 0.6 * i / len(config.candidates))
        losses, accs, started = [], [], time.perf_counter()
        for fit_idx, val_idx in splits:
            fitted = clone(_pipeline(models[name])).fit(X_train[fit_idx], y_train[fit_idx])
            proba = aligned_proba(fitted, X_train[val_idx], classes)
            losses.append(log_loss(y_train[val_idx], np.clip(proba, 1e-12, 1), labels=classes))
            accs.append(
                accuracy_score(y_train[val_idx], np.asarray(classes, dtype=object)[proba.argmax(1)])
            )
        cv_results[name] = {
            "log_loss": round(float(np.mean(losses)), 4),
            "top1_accuracy": round(float(np.mean(accs)), 4),
            "seconds": round(time.perf_counter() - started, 2),
            "predict_ms": round(_single_row_ms(fitted, X_train[:1]), 3),
        }
        logger.info("cv %s: %s", name, cv_results[name])
    # Chosen on log loss alone, so a seed always picks the same model; predict_ms is
    # recorded for the card.
    chosen = min(cv_results, key=lambda n: cv_results[n]["log_loss"])

    report(f"calibrating {chosen}", 0.75)
    estimator = calibrated(chosen, splits, config.seed).fit(X_train, y_train)

    report("evaluating on held-out students", 0.9)
    holdout = evaluate(estimator, X_test, y_test, classes, majority)
    metrics = {
        "holdout": holdout,
        "per_career": per_career(estimator, X_test, y_test, classes),
        "cross_validation": cv_results,
        "chosen_model": chosen,
        "calibration": "temperature",
        "train_rows": len(X_train),
        "holdout_rows": len(X_test),
        "seed": config.seed,
    }
    reference = reference_stats(data)
    # The model's own top-1 answers on its students: what drift monitoring compares the
    # top-1 careers it serves with (app/services/outcomes/monitoring.py).
    top1 = aligned_proba(estimator, X, classes).argmax(axis=1)
    shares = np.bincount(top1, minlength=len(classes)) / max(len(X), 1)
    reference["predicted_top1"] = {
        c: round(float(v), 6) for c, v in zip(classes, shares, strict=True)
    }
    return TrainedModel(
        estimator=estimator,
        spec=data.spec,
        classes=classes,
        metrics=metrics,
        reference=reference,
        holdout_X=X_test,
        holdout_y=y_test,
        majority=majority,
    )


def _single_row_ms(estimator: Any, row: np.ndarray) -> float:
    """Median time of one single-row predict_proba, as the service will call it."""
    times = []
    for _ in range(15):
        start = time.perf_counter()
        estimator.predict_proba(row)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def reference_stats(data: PreparedData) -> dict[str, Any]:
    """Per-career quantiles of every feature (for percentiles) and population medians."""
    frame = pd.DataFrame(data.X, columns=data.spec.names)
    population = {
        name: float(np.nanmedian(col)) if np.isfinite(col).any() else 0.0
        for name, col in frame.items()
    }
    careers = {}
    for label in sorted(set(data.y.tolist())):
        rows = frame[data.y == label]
        careers[label] = {
            "students": len(rows),
            "quantiles": {
                name: [round(float(q), 3) for q in np.nanquantile(col, QUANTILES / 100)]
                if col.notna().any()
                else None
                for name, col in rows.items()
            },
        }
    return {
        "quantile_grid": QUANTILES.tolist(),
        "population_median": population,
        "careers": careers,
    }
