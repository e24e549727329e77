"""The training pipeline: validation, deduplication, honest splits, determinism."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from app.core.exceptions import InvalidInput
from app.services.career.catalog import default_catalog
from app.services.career.evaluation import (
    expected_calibration_error,
    perfect_calibration_ece,
    scores,
)
from app.services.career.preparation import prepare_frame
from app.services.career.synthetic import generate_students
from app.services.career.training import (
    TrainingConfig,
    train_model,
)

pytestmark = pytest.mark.unit

FAST = TrainingConfig(seed=1, candidates=("logistic_regression",), cv_folds=3)


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    return generate_students(default_catalog(), 1500, seed=11)


def test_generator_is_seeded_and_realistic(students: pd.DataFrame) -> None:
    again = generate_students(default_catalog(), 1500, seed=11)
    pd.testing.assert_frame_equal(students, again)
    other = generate_students(default_catalog(), 1500, seed=12)
    assert not students.equals(other)
    assert students["label"].nunique() >= 17
    assert students["math"].dropna().between(0, 100).all()
    assert 0 < students["math"].isna().mean() < 0.05
    assert 0.05 < students["investigative"].isna().mean() < 0.2
    # Choices follow the catalog: doctors are stronger in biology than artists are.
    by_career = students.groupby("label")
    assert by_career["biology"].mean()["Doctor"] > by_career["biology"].mean()["Artist"] + 5
    assert by_career["artistic"].mean()["Artist"] > by_career["artistic"].mean()["Accountant"] + 10


def test_same_seed_same_metrics(students: pd.DataFrame) -> None:
    data = prepare_frame(students)
    first = train_model(data, config=FAST).metrics
    second = train_model(prepare_frame(students), config=FAST).metrics
    for m in (first, second):
        for cv in m["cross_validation"].values():
            cv.pop("seconds")
            cv.pop("predict_ms")
    assert first == second
    holdout = first["holdout"]
    assert holdout["top1_accuracy"] > holdout["baseline_top1_accuracy"] + 0.1
    assert holdout["top3_accuracy"] > holdout["top1_accuracy"]
    assert set(holdout) >= {"top1_accuracy", "top3_accuracy", "macro_f1", "log_loss"}


def test_probabilities_are_calibrated_enough(students: pd.DataFrame) -> None:
    trained = train_model(prepare_frame(students), config=FAST)
    proba = trained.estimator.predict_proba(trained.holdout_X)
    assert np.allclose(proba.sum(axis=1), 1)
    # Mean predicted confidence of the top class is close to its accuracy.
    top = proba.max(axis=1)
    predicted = np.asarray(trained.classes, dtype=object)[proba.argmax(axis=1)]
    accuracy = float(np.mean(predicted == trained.holdout_y))
    assert abs(float(top.mean()) - accuracy) < 0.1


def test_repeated_students_count_once_and_never_straddle_the_split() -> None:
    base = generate_students(default_catalog(), 600, seed=5)
    base["email"] = [f"s{i}@school.test" for i in range(len(base))]
    tripled = pd.concat([base, base, base], ignore_index=True)
    tripled["id"] = range(len(tripled))  # different row ids, same student
    data = prepare_frame(tripled.drop(columns=["student_id"]), min_rows_per_class=3)
    assert data.report["rows_received"] == 1800
    assert data.report["unique_students"] == 600 - sum(
        d["rows"] for d in data.report["rows_dropped"] if "fewer than" in d["reason"]
    )
    assert any(
        "repeated student" in d["reason"] and d["rows"] == 1200 for d in data.report["rows_dropped"]
    )
    assert len(set(data.groups)) == len(data.groups)


def test_mapping_types_ranges_and_personal_fields() -> None:
    frame = pd.DataFrame(
        {
            "first_name": ["Ann", "Bob", "Cy", "Di"] * 5,
            "email": [f"p{i}@x.test" for i in range(20)],
            "Maths": [90, 80, "oops", 150] * 5,
            "job": ["TRUE", "false", "yes", "maybe"] * 5,
            "career": ["Doctor", "Lawyer"] * 10,
        }
    )
    data = prepare_frame(
        frame,
        mapping={"Maths": "math", "job": "part_time_job", "career": "label"},
        min_rows_per_class=2,
    )
    assert data.spec.names == ["math", "part_time_job"]
    assert data.report["invalid_values_blanked"] == {"math": 10, "part_time_job": 5}
    assert "first_name" not in data.spec.names and "email" not in data.spec.names
    # Rows whose every value was invalid (150 and "maybe") are dropped, not guessed.
    assert {"reason": "no valid feature value", "rows": 5} in data.report["rows_dropped"]
    column = data.X[:, 0]
    assert len(column) == 15 and np.isnan(column).sum() == 5 and np.nanmax(column) == 90


@pytest.mark.parametrize(
    ("frame", "mapping", "message"),
    [
        (pd.DataFrame({"math": [1, 2]}), None, "no 'label' column"),
        (
            pd.DataFrame({"math": [1, 2], "label": ["a", "a"]}),
            {"nope": "label"},
            "mapping names columns",
        ),
        (
            pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}),
            {"y": "label", "x": "wizardry"},
            "unknown features",
        ),
        (pd.DataFrame({"shoe": [1, 2], "label": ["a", "b"]}), None, "No known feature"),
        (pd.DataFrame({"math": range(30), "label": ["a"] * 30}), None, "At least two careers"),
    ],
)
def test_unusable_tables_are_refused(
    frame: pd.DataFrame, mapping: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        prepare_frame(frame, mapping=mapping)


def test_expected_calibration_error_follows_its_definition() -> None:
    classes = ["a", "b"]
    y = np.array(["a", "a", "b", "b"], dtype=object)
    # Confidence 0.75 on every row, right on three of four: calibrated, ECE 0.
    honest = np.array([[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]])
    assert expected_calibration_error(y, honest, classes) == pytest.approx(0.0)
    # Confidence 0.95, right on half: off by 0.45.
    bold = np.array([[0.95, 0.05], [0.05, 0.95], [0.05, 0.95], [0.95, 0.05]])
    assert expected_calibration_error(y, bold, classes) == pytest.approx(0.45)
    # 15 equal-width bins: 0.62 and 0.68 fall in different bins (one bin of 10 would
    # pool them into |0.5 - 0.65| = 0.15), each off by its own gap.
    split = np.array([[0.62, 0.38], [0.68, 0.32]])
    pair = np.array(["b", "a"], dtype=object)
    assert expected_calibration_error(pair, split, classes) == pytest.approx((0.62 + 0.32) / 2)
    assert expected_calibration_error(pair, split, classes, bins=10) == pytest.approx(0.15)


def test_the_baseline_is_the_majority_given_not_the_rows_own() -> None:
    # Held-out rows where "b" is the most common career; the training split's majority
    # "a" is the baseline, as the card, the gate and the comparison all read it.
    y = np.array(["b", "b", "a"], dtype=object)
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    assert scores(y, proba, ["a", "b"], majority="a")["baseline_top1_accuracy"] == 0.3333


def test_perfect_calibration_ece_is_the_noise_of_a_finite_sample() -> None:
    confidence = np.random.default_rng(0).uniform(0.1, 0.9, size=4000)
    on_400 = perfect_calibration_ece(confidence, students=400, draws=300)
    on_4000 = perfect_calibration_ece(confidence, draws=300)
    assert (on_400 > 0).all()
    # Noise, so it shrinks with the sample: roughly as one over the square root.
    assert 2 < np.median(on_400) / np.median(on_4000) < 4.5
    # Repeatable, like every metric of a seeded run.
    np.testing.assert_array_equal(on_400, perfect_calibration_ece(confidence, 400, draws=300))
    # A model that is always sure and always right has nothing to be off by.
    assert (perfect_calibration_ece(np.ones(50), draws=20) == 0).all()


def test_two_careers_train_and_report_every_metric(students: pd.DataFrame) -> None:
    two = students[students["label"].isin(["Doctor", "Artist"])]
    trained = train_model(prepare_frame(two), config=FAST)
    holdout = trained.metrics["holdout"]
    assert holdout["top3_accuracy"] == holdout["top1_accuracy"]  # k is 1 with two careers
    assert 0 <= holdout["expected_calibration_error"] <= 1
    assert 0 < holdout["perfect_calibration_ece"] < 1
    assert set(trained.metrics["per_career"]) == {"Doctor", "Artist"}


def test_the_baseline_is_the_training_splits_majority(students: pd.DataFrame) -> None:
    data = prepare_frame(students)
    trained = train_model(data, config=FAST)
    training_split = Counter(data.y.tolist()) - Counter(trained.holdout_y.tolist())
    (first, n_first), (_, n_second) = training_split.most_common(2)
    assert n_first > n_second and trained.majority == first
    share = float(np.mean(trained.holdout_y == trained.majority))
    assert trained.metrics["holdout"]["baseline_top1_accuracy"] == round(share, 4)
    per_career = trained.metrics["per_career"]
    assert sum(m["support"] for m in per_career.values()) == len(trained.holdout_y)
    assert all(0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1 for m in per_career.values())
