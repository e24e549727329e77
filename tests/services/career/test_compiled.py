"""The compiled numpy predictor must give sklearn's probabilities for every model kind."""

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from app.services.career import compiled, tree_responses, trees
from app.services.career.compiled import compile_predictor, verified_predictor

pytestmark = pytest.mark.unit

N_FEATURES = 7
# Two gradient-boosting shapes: deep trees take the level-by-level walk, trees of depth <= 3
# (the training default) the lookup-table heaps.
KINDS = (
    "logistic_regression",
    "neural_network",
    "hist_gradient_boosting",
    "hist_gradient_boosting_depth3",
    "random_forest",
)


def _model(kind: str) -> Any:
    """The training candidates, shrunk so the whole module fits in a few seconds."""
    return {
        "logistic_regression": LogisticRegression(C=0.5, max_iter=2000),
        "neural_network": MLPClassifier(
            hidden_layer_sizes=(16,), alpha=1e-2, early_stopping=True, max_iter=200, random_state=0
        ),
        "hist_gradient_boosting": HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=25, max_leaf_nodes=15, l2_regularization=1.0, random_state=0
        ),
        "hist_gradient_boosting_depth3": HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=25, max_depth=3, min_samples_leaf=10, random_state=0
        ),
        "random_forest": RandomForestClassifier(
            n_estimators=25, min_samples_leaf=3, max_features="sqrt", random_state=0, n_jobs=1
        ),
    }[kind]


def _calibrated(model: Any, **options: Any) -> CalibratedClassifierCV:
    """Wrapped exactly as training.py wraps the chosen model."""
    pipeline = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("model", model),
        ]
    )
    return CalibratedClassifierCV(
        pipeline, method=options.pop("method", "temperature"), cv=3, **options
    )


def _data(n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=420,
        n_features=N_FEATURES,
        n_informative=5,
        n_redundant=1,
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=seed,
    )
    X[np.random.default_rng(seed).random(X.shape) < 0.1] = np.nan
    # Career names: string labels make CalibratedClassifierCV fit on label indices.
    return X, np.array([f"career_{c}" for c in y], dtype=object)


def _rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(0.0, 2.0, size=(n, N_FEATURES))
    rows[np.random.default_rng(seed + 1).random(rows.shape) < 0.25] = np.nan
    rows[0] = np.nan  # nothing known: every value imputed
    return rows


def _fit(kind: str, n_classes: int, **options: Any) -> CalibratedClassifierCV:
    X, y = _data(n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _calibrated(_model(kind), **{"ensemble": False, **options}).fit(X, y)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # Gradient boosting's OpenMP threads fight over the shared cores: one is much faster.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def multiclass(_one_thread: None) -> dict[str, CalibratedClassifierCV]:
    return {kind: _fit(kind, n_classes=6) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_equals_sklearn_with_missing_values(
    multiclass: dict[str, CalibratedClassifierCV], kind: str
) -> None:
    estimator = multiclass[kind]
    predictor, problem = verified_predictor(estimator, _rows(20, seed=1))
    assert problem is None
    assert predictor is not None
    rows = _rows(200, seed=2)
    got = predictor(rows)
    np.testing.assert_allclose(got, estimator.predict_proba(rows), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert got.shape == (200, 6)
    # Single rows, as the service calls it, take their own path through the trees.
    for row in rows[:10]:
        np.testing.assert_allclose(
            predictor(row[None, :]), estimator.predict_proba(row[None, :]), rtol=0, atol=1e-6
        )


@pytest.mark.parametrize("kind", KINDS)
def test_binary_models_are_compiled(kind: str) -> None:
    estimator = _fit(kind, n_classes=2)
    predictor, problem = verified_predictor(estimator, _rows(10, seed=3))
    assert problem is None
    assert predictor is not None
    rows = _rows(100, seed=4)
    np.testing.assert_allclose(predictor(rows), estimator.predict_proba(rows), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "shallow"),
    [("hist_gradient_boosting", False), ("hist_gradient_boosting_depth3", True)],
)
def test_gradient_boosting_takes_the_heap_path_only_for_shallow_trees(
    multiclass: dict[str, CalibratedClassifierCV], kind: str, shallow: bool
) -> None:
    model = multiclass[kind].calibrated_classifiers_[0].estimator[-1]
    found = tree_responses._hgb_trees(model, n_classes=6)
    assert found is not None
    every_tree = [tree for class_trees in found for tree in class_trees]
    heaps = trees.shallow_stack(every_tree, N_FEATURES, [0] * len(every_tree))
    assert (heaps is not None) is shallow


def test_boosting_folds_walked_together_equal_sklearn() -> None:
    for kind in ("hist_gradient_boosting", "hist_gradient_boosting_depth3"):
        estimator = _fit(kind, n_classes=5, ensemble=True)
        assert len(estimator.calibrated_classifiers_) == 3
        predictor, problem = verified_predictor(estimator, _rows(10, seed=11))
        assert predictor is not None, problem
        rows = _rows(60, seed=12)
        np.testing.assert_allclose(
            predictor(rows), estimator.predict_proba(rows), rtol=0, atol=1e-6
        )


def test_ensemble_of_calibrated_classifiers_is_averaged() -> None:
    estimator = _fit("logistic_regression", n_classes=4, ensemble=True)
    assert len(estimator.calibrated_classifiers_) == 3
    predictor, problem = verified_predictor(estimator, _rows(10, seed=5))
    assert predictor is not None, problem
    rows = _rows(50, seed=6)
    np.testing.assert_allclose(predictor(rows), estimator.predict_proba(rows), rtol=0, atol=1e-6)


def test_unknown_shapes_are_not_compiled() -> None:
    X, y = _data(3)
    sigmoid = _fit("logistic_regression", n_classes=3, method="sigmoid")
    naive_bayes = _calibrated(GaussianNB(), ensemble=False).fit(X, y)
    bare = _model("logistic_regression").fit(np.nan_to_num(X), y)
    for estimator in (sigmoid, naive_bayes, bare):
        assert compile_predictor(estimator, N_FEATURES) is None
        assert verified_predictor(estimator, _rows(5, seed=7)) == (None, None)


def test_a_wrong_predictor_falls_back_to_sklearn(
    multiclass: dict[str, CalibratedClassifierCV],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def uniform(_estimator: object, _n_features: int) -> Any:
        return lambda rows: np.full((len(rows), 6), 1 / 6)

    monkeypatch.setattr(compiled, "compile_predictor", uniform)
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        predictor, problem = verified_predictor(multiclass["random_forest"], _rows(5, seed=8))
    assert predictor is None
    assert problem is not None and "differ from sklearn" in problem
    assert "serving through sklearn" in caplog.text


def test_a_failing_predictor_falls_back_to_sklearn(
    multiclass: dict[str, CalibratedClassifierCV], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    monkeypatch.setattr(compiled, "compile_predictor", lambda _e, _n: broken)
    predictor, problem = verified_predictor(multiclass["neural_network"], _rows(5, seed=9))
    assert predictor is None
    assert problem is not None and "boom" in problem


@pytest.mark.parametrize("kind", ["hist_gradient_boosting", "random_forest"])
def test_invalid_rows_are_rejected_like_sklearn(
    multiclass: dict[str, CalibratedClassifierCV], kind: str
) -> None:
    estimator = multiclass[kind]
    predictor = compile_predictor(estimator, N_FEATURES)
    assert predictor is not None
    infinite = _rows(2, seed=10)
    infinite[1, 3] = np.inf
    with pytest.raises(ValueError):
        estimator.predict_proba(infinite)
    with pytest.raises(ValueError):
        predictor(infinite)
    with pytest.raises(ValueError):
        predictor(np.zeros((1, N_FEATURES + 1)))
    # Finite, but beyond float32: the forest's trees read float32 and sklearn refuses the
    # row; gradient boosting reads float64 and answers it.
    huge = _rows(2, seed=11)
    huge[1, 2] = 1e39
    if kind == "random_forest":
        with np.errstate(over="ignore"), pytest.raises(ValueError):
            estimator.predict_proba(huge)
        with pytest.raises(ValueError, match="float32"):
            predictor(huge)
    else:
        np.testing.assert_allclose(predictor(huge), estimator.predict_proba(huge), atol=1e-6)


def test_decision_values_that_look_like_probabilities_are_logged_as_sklearn_does() -> None:
    from sklearn.calibration import _convert_to_logits

    looks_like_proba = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    decision = np.array([[0.2, 0.3, 0.4], [-1.0, 2.0, 0.0]])
    for values in (looks_like_proba, decision):
        np.testing.assert_array_equal(
            trees.decision_logits(values.copy()), _convert_to_logits(values)
        )
