"""Pure-numpy predict_proba for every career model the training pipeline can choose.

sklearn re-validates its input at every step (calibrator, pipeline, imputer, scaler,
classifier) and walks tree ensembles one tree at a time: for the one row of a predict
request that overhead is most of the latency. At load time the fitted
`CalibratedClassifierCV(Pipeline([imputer, scaler, model]), method="temperature")` is
compiled into a few precomputed numpy arrays and one function that redoes sklearn's
arithmetic on them:

- logistic regression: imputer, scaler and linear model fold into one affine map;
- MLP: the scaler folds into the first layer, then the same forward pass;
- gradient boosting and random forest: trees of depth 3 at most (the default gradient
  boosting) become heaps evaluated by one comparison step and a leaf table; deeper ones
  are stacked into flat node arrays and all trees (and all rows) descend one level per
  numpy step (`trees.py`).

Temperature scaling then calibrates the model's response the way sklearn does: a
decision_function (logistic regression, gradient boosting) is used as logits, a
predict_proba (MLP, random forest) becomes log(p + 1e-12); both are multiplied by the
fitted inverse temperature and softmaxed. A compiled predictor is only served after
`verified_predictor` has seen it reproduce sklearn on probe rows; any shape it does not
know keeps sklearn's own predict_proba.
"""

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from app.services.career.tree_responses import forest_response, hgb_folds_response, hgb_response
from app.services.career.trees import EPS, Response, decision_logits

logger = logging.getLogger(__name__)

Proba = Callable[[np.ndarray], np.ndarray]
VERIFY_ATOL = 1e-6


class Verification(NamedTuple):
    """A verified predictor, or why there is none (problem is None: shape not compiled)."""

    predictor: Proba | None
    problem: str | None


def compile_predictor(estimator: object, n_features: int) -> Proba | None:
    """A numpy predict_proba equal to `estimator.predict_proba`, or None for unknown shapes.

    The predictor takes float64 rows of shape (n, n_features), NaN meaning missing, and
    returns (n, n_classes) probabilities in `estimator.classes_` order. Like sklearn it
    raises ValueError for rows of the wrong width or with infinite values.
    """
    # sklearn is imported here, not at start-up: the service is live before it loads.
    from sklearn.calibration import CalibratedClassifierCV

    if not (
        isinstance(estimator, CalibratedClassifierCV)
        and estimator.method == "temperature"
        and len(estimator.calibrated_classifiers_) > 0
    ):
        return None
    n_classes = len(estimator.classes_)
    parts = []
    for calibrated in estimator.calibrated_classifiers_:
        part = _part(calibrated, n_features, estimator.classes_)
        if part is None:
            return None
        parts.append(part)
    if len(parts) > 1:
        folds = _compile_boosting_folds(parts, n_features, n_classes)
        if folds is not None:
            return folds
    compiled = [_compile_calibrated(part, n_features, n_classes) for part in parts]
    if any(c is None for c in compiled):
        return None
    singles: list[Proba] = [c for c in compiled if c is not None]
    if len(singles) == 1:
        return singles[0]

    def mean_proba(rows: np.ndarray) -> np.ndarray:
        # ensemble=True: CalibratedClassifierCV averages its calibrated classifiers.
        total = singles[0](rows)
        for single in singles[1:]:
            total += single(rows)
        total /= len(singles)
        return total

    return mean_proba


def verified_predictor(estimator: object, probes: np.ndarray) -> Verification:
    """The compiled predictor if it matches sklearn on `probes` to VERIFY_ATOL.

    Both a batch call and one call per probe row are checked, since single rows take
    their own code path. On a mismatch or an error the reason is logged and returned
    (the caller serves through sklearn); a shape that is not compiled is no error.
    """
    probes = np.asarray(probes, dtype=float)
    if probes.ndim != 2:
        return _rejected(f"probe rows must be 2-D, got shape {probes.shape}")
    try:
        predictor = compile_predictor(estimator, probes.shape[1])
    except Exception as exc:
        return _rejected(f"compiling the model failed: {exc!r}")
    if predictor is None:
        return Verification(None, None)
    if len(probes) == 0:
        return _rejected("no probe rows to verify the compiled model against")
    try:
        expected = np.asarray(estimator.predict_proba(probes))  # type: ignore[attr-defined]
        batch = predictor(probes)
        single = np.concatenate([predictor(probes[i : i + 1]) for i in range(len(probes))])
    except Exception as exc:
        return _rejected(f"the compiled model failed on probe rows: {exc!r}")
    for label, got in (("batch", batch), ("single-row", single)):
        if got.shape != expected.shape:
            return _rejected(
                f"compiled {label} output has shape {got.shape}, sklearn {expected.shape}"
            )
        worst = float(np.max(np.abs(got - expected)))
        if not worst <= VERIFY_ATOL:  # also catches NaN
            return _rejected(
                f"compiled {label} probabilities differ from sklearn by up to {worst:.3g}"
            )
    return Verification(predictor, None)


def _rejected(problem: str) -> Verification:
    logger.warning("compiled career model not used, serving through sklearn: %s", problem)
    return Verification(None, problem)


class _Part(NamedTuple):
    """One calibrated fold model: imputer fill values, scaler, classifier, temperature."""

    fill: np.ndarray
    mean: np.ndarray | None
    scale: np.ndarray | None
    model: Any
    beta: float


def _part(calibrated: Any, n_features: int, classes: np.ndarray) -> _Part | None:
    """The pieces of one `_CalibratedClassifier` (imputer -> scaler -> model), or None."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = calibrated.estimator
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 3:
        return None
    imputer, scaler, model = (step for _, step in pipeline.steps)
    if type(imputer) is not SimpleImputer or type(scaler) is not StandardScaler:
        return None
    missing = imputer.missing_values
    fill = np.asarray(imputer.statistics_, dtype=float)
    n_classes = len(classes)
    if (
        not (isinstance(missing, float) and np.isnan(missing))
        or imputer.add_indicator
        # An all-missing training column has a NaN statistic and is dropped by sklearn.
        or fill.shape != (n_features,)
        or np.isnan(fill).any()
        or getattr(model, "n_features_in_", None) != n_features
        # CalibratedClassifierCV fits its estimator on label indices 0..n-1 (string labels)
        # or on the labels themselves; either way in estimator.classes_ order.
        or list(model.classes_) not in (list(range(n_classes)), list(classes))
        or n_classes < 2
        or len(calibrated.calibrators) != 1
    ):
        return None
    mean = np.asarray(scaler.mean_, dtype=float) if scaler.with_mean else None
    scale = np.asarray(scaler.scale_, dtype=float) if scaler.with_std else None
    return _Part(fill, mean, scale, model, float(calibrated.calibrators[0].beta_))


def _imputed(rows: np.ndarray, fill: np.ndarray, n_features: int) -> np.ndarray:
    """Missing values filled; with `fill` of shape (folds, 1, features), once per fold."""
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise ValueError(f"expected rows of shape (n, {n_features}), got {rows.shape}")
    filled = np.where(np.isnan(rows), fill, rows)
    # sklearn's imputer rejects infinity; so does this, which also means no NaN can
    # reach the trees (their missing-value branches never matter after imputation).
    if not np.logical_and.reduce(np.isfinite(filled), axis=None):
        raise ValueError("Input contains infinity or a value too large for float64.")
    return filled


def _softmax(logits: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax over the last axis, in place. Ufuncs are called
    directly: the ndarray.max/.sum methods add a Python wrapper each, which for one row
    costs as much as the arithmetic. (sklearn then clips values in (1, 1 + 1e-5] to 1; a
    softmax never has any: its largest entry is exp(0) divided by a sum >= 1.)"""
    logits -= np.maximum.reduce(logits, axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= np.add.reduce(logits, axis=-1, keepdims=True)
    return logits


def _compile_calibrated(part: _Part, n_features: int, n_classes: int) -> Proba | None:
    """One fold model: imputer -> scaler -> model -> temperature softmax."""
    response = _compile_response(part.model, part.mean, part.scale, n_features, n_classes)
    if response is None:
        return None

    def proba(rows: np.ndarray) -> np.ndarray:
        logits = response(_imputed(rows, part.fill, n_features))
        logits *= part.beta
        return _softmax(logits)

    return proba


def _compile_boosting_folds(parts: list[_Part], n_features: int, n_classes: int) -> Proba | None:
    """Fold models that are all gradient boosting: every fold's trees walked together."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if not all(type(p.model) is HistGradientBoostingClassifier for p in parts):
        return None
    response = hgb_folds_response(
        [p.model for p in parts], [p.mean for p in parts], [p.scale for p in parts], n_classes
    )
    if response is None:
        return None
    betas = np.array([p.beta for p in parts]).reshape(-1, 1, 1)
    fills = np.stack([p.fill for p in parts])[:, None, :]

    def proba(rows: np.ndarray) -> np.ndarray:
        logits = response(_imputed(rows, fills, n_features))
        logits *= betas
        return np.add.reduce(_softmax(logits), axis=0) / len(parts)

    return proba


def _compile_response(
    model: Any,
    mean: np.ndarray | None,
    scale: np.ndarray | None,
    n_features: int,
    n_classes: int,
) -> Response | None:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if type(model) is LogisticRegression:
        return _linear_response(model, mean, scale, n_features, n_classes)
    if type(model) is MLPClassifier:
        return _mlp_response(model, mean, scale, n_features, n_classes)
    if type(model) is HistGradientBoostingClassifier:
        return hgb_response(model, mean, scale, n_classes)
    if type(model) is RandomForestClassifier:
        return forest_response(model, mean, scale, n_classes)
    return None


# --- affine models -------------------------------------------------------------------


def _fold_scaler(
    weights: np.ndarray, bias: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(x - mean) / scale @ W + b as x @ W' + b' (weights: (n_features, n_out))."""
    if scale is not None:
        weights = weights / scale[:, None]
    if mean is not None:
        bias = bias - mean @ weights
    return weights, bias


def _linear_response(
    model: Any, mean: np.ndarray | None, scale: np.ndarray | None, n_features: int, n_classes: int
) -> Response | None:
    coef = np.asarray(model.coef_, dtype=float)
    intercept = np.asarray(model.intercept_, dtype=float)
    binary = n_classes == 2 and coef.shape[0] == 1
    if coef.shape != (n_classes, n_features) and not (binary and coef.shape[1] == n_features):
        return None
    weights, bias = _fold_scaler(coef.T, intercept, mean, scale)
    if binary:
        # A binary decision_function d is calibrated as the two logits (-d, d).
        weights, bias = np.hstack([-weights, weights]), np.concatenate([-bias, bias])
        return lambda x: x @ weights + bias
    return lambda x: decision_logits(x @ weights + bias)


def _mlp_response(
    model: Any, mean: np.ndarray | None, scale: np.ndarray | None, n_features: int, n_classes: int
) -> Response | None:
    from scipy.special import expit

    activations: dict[str, Callable[[np.ndarray], object] | None] = {
        "identity": None,
        "relu": lambda a: np.maximum(a, 0, out=a),
        "tanh": lambda a: np.tanh(a, out=a),
        "logistic": lambda a: expit(a, out=a),
    }
    if model.activation not in activations:
        return None
    hidden = activations[model.activation]
    coefs = [np.asarray(c, dtype=float) for c in model.coefs_]
    intercepts = [np.asarray(b, dtype=float) for b in model.intercepts_]
    if coefs[0].shape[0] != n_features:
        return None
    if model.out_activation_ == "softmax" and coefs[-1].shape[1] == n_classes > 2:
        binary = False
    elif model.out_activation_ == "logistic" and coefs[-1].shape[1] == 1 and n_classes == 2:
        binary = True
    else:
        return None
    coefs[0], intercepts[0] = _fold_scaler(coefs[0], intercepts[0], mean, scale)
    layers = list(zip(coefs, intercepts, strict=True))

    def response(x: np.ndarray) -> np.ndarray:
        # MLPClassifier._forward_pass_fast.
        a = x @ layers[0][0]
        a += layers[0][1]
        for weights, bias in layers[1:]:
            if hidden is not None:
                hidden(a)
            a = a @ weights
            a += bias
        if binary:
            # predict_proba is (1 - p, p); the calibrator rebuilds it from p the same way.
            p = expit(a[:, 0])
            a = np.stack([1 - p, p], axis=1)
        else:
            a -= np.maximum.reduce(a, axis=1, keepdims=True)
            np.exp(a, out=a)
            a /= np.add.reduce(a, axis=1, keepdims=True)
        a += EPS
        return np.log(a, out=a)

    return response
