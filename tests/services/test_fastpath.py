"""The numpy shortcut must give sklearn's probabilities, and only where it applies."""

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV

from app.services.career.fastpath import linear_shortcut, verified_shortcut
from app.services.career.training import (
    TrainingConfig,
    _candidates,
    _pipeline,
    prepare_frame,
    train_model,
)
from research.synthetic_students import generate_students
from research.train_career import load_default_catalog


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return prepare_frame(generate_students(load_default_catalog(), 900, seed=4))


def test_shortcut_equals_sklearn_with_missing_values(data) -> None:  # type: ignore[no-untyped-def]
    trained = train_model(
        data, config=TrainingConfig(candidates=("logistic_regression",), cv_folds=3)
    )
    rows = data.X[:200].copy()
    rows[np.random.default_rng(0).random(rows.shape) < 0.3] = np.nan
    shortcut = verified_shortcut(trained.estimator, rows[:20])
    assert shortcut is not None
    np.testing.assert_allclose(
        shortcut(rows), trained.estimator.predict_proba(rows), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize(
    ("model", "method"), [("neural_network", "temperature"), ("logistic_regression", "sigmoid")]
)
def test_other_shapes_keep_sklearn(data, model: str, method: str) -> None:  # type: ignore[no-untyped-def]
    estimator = CalibratedClassifierCV(
        _pipeline(_candidates(0)[model]), method=method, cv=2, ensemble=False
    )
    estimator.fit(data.X, data.y)
    assert linear_shortcut(estimator, data.X.shape[1]) is None
