"""A numpy shortcut for the default career model's predict_proba.

sklearn re-validates its input at every step (calibrator, pipeline, imputer, scaler,
classifier): for one row that costs about 1 ms, fifty times the arithmetic. For the shape
the training pipeline usually chooses (median imputer -> standard scaler -> logistic
regression, temperature-calibrated) the whole chain folds into one affine map and a softmax.
The shortcut is only used after it reproduces sklearn's answers on probe rows; any other
model shape keeps sklearn's own predict_proba.
"""

import logging
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

Proba = Callable[[np.ndarray], np.ndarray]


def linear_shortcut(estimator: object, n_features: int) -> Proba | None:
    """The folded predict_proba of a temperature-calibrated linear pipeline, or None."""
    # sklearn is imported here, not at start-up: the service is live before it loads.
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not (
        isinstance(estimator, CalibratedClassifierCV)
        and estimator.method == "temperature"
        and len(estimator.calibrated_classifiers_) == 1
    ):
        return None
    calibrated = estimator.calibrated_classifiers_[0]
    pipeline = calibrated.estimator
    if not isinstance(pipeline, Pipeline) or [type(step) for _, step in pipeline.steps] != [
        SimpleImputer,
        StandardScaler,
        LogisticRegression,
    ]:
        return None
    imputer, scaler, linear = (step for _, step in pipeline.steps)
    fill = np.asarray(imputer.statistics_, dtype=float)
    n_classes = len(estimator.classes_)
    if (
        imputer.add_indicator
        or fill.shape != (n_features,)
        or np.isnan(fill).any()
        or linear.coef_.shape != (n_classes, n_features)
        # CalibratedClassifierCV fits its estimator on label indices 0..n-1.
        or list(linear.classes_) not in (list(range(n_classes)), list(estimator.classes_))
    ):
        return None
    mean = scaler.mean_ if scaler.with_mean else np.zeros(n_features)
    scale = scaler.scale_ if scaler.with_std else np.ones(n_features)
    beta = float(calibrated.calibrators[0].beta_)
    weights = (linear.coef_ / scale).T * beta
    bias = (linear.intercept_ - (mean / scale) @ linear.coef_.T) * beta

    def proba(rows: np.ndarray) -> np.ndarray:
        # Ufuncs called directly: ndarray.max/.sum add a Python wrapper each, and for the
        # one row of a predict request the wrappers cost as much as the arithmetic.
        logits = np.where(np.isnan(rows), fill, rows) @ weights + bias
        logits -= np.maximum.reduce(logits, axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= np.add.reduce(logits, axis=1, keepdims=True)
        return logits

    return proba


def verified_shortcut(estimator: object, probes: np.ndarray) -> Proba | None:
    """The shortcut, if it matches sklearn on the probe rows (NaNs included) to 1e-9."""
    shortcut = linear_shortcut(estimator, probes.shape[1])
    if shortcut is None:
        return None
    expected = estimator.predict_proba(probes)  # type: ignore[attr-defined]
    if not np.allclose(shortcut(probes), expected, rtol=0, atol=1e-9):
        logger.warning("numpy shortcut disagrees with sklearn; serving through sklearn")
        return None
    return shortcut
