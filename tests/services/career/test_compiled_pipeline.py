"""Compiled predictors of pipelines from the real training code: sklearn's probabilities,
and only for the shapes the compiler knows."""

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV

from app.services.career.catalog import default_catalog
from app.services.career.compiled import compile_predictor, verified_predictor
from app.services.career.preparation import prepare_frame
from app.services.career.synthetic import generate_students
from app.services.career.training import (
    TrainingConfig,
    _candidates,
    _pipeline,
    train_model,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return prepare_frame(generate_students(default_catalog(), 900, seed=4))


@pytest.mark.parametrize(
    "model", ["logistic_regression", "neural_network", "hist_gradient_boosting", "random_forest"]
)
def test_compiled_equals_sklearn_with_missing_values(data, model: str) -> None:  # type: ignore[no-untyped-def]
    trained = train_model(data, config=TrainingConfig(candidates=(model,), cv_folds=3))
    rows = data.X[:200].copy()
    rows[np.random.default_rng(0).random(rows.shape) < 0.3] = np.nan
    predictor, problem = verified_predictor(trained.estimator, rows[:20])
    assert predictor is not None and problem is None
    np.testing.assert_allclose(
        predictor(rows), trained.estimator.predict_proba(rows), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize(
    ("model", "method"), [("neural_network", "sigmoid"), ("logistic_regression", "sigmoid")]
)
def test_other_shapes_keep_sklearn(data, model: str, method: str) -> None:  # type: ignore[no-untyped-def]
    estimator = CalibratedClassifierCV(
        _pipeline(_candidates(0)[model]), method=method, cv=2, ensemble=False
    )
    estimator.fit(data.X, data.y)
    assert compile_predictor(estimator, data.X.shape[1]) is None
