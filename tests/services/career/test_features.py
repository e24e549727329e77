"""Turning a student into a feature row."""

import math

import pytest

from app.core.exceptions import InvalidInput
from app.services.career.features import (
    INTEREST_KEYWORDS,
    RIASEC,
    FeatureSpec,
    build_row,
    default_features,
    interests_from_keywords,
)

pytestmark = pytest.mark.unit

SPEC = FeatureSpec(default_features())


def test_keywords_give_a_peaked_profile() -> None:
    profile = interests_from_keywords(["coding", "math puzzles"])
    assert set(profile) == set(RIASEC)
    assert max(profile, key=lambda d: profile[d]) == "investigative"
    assert profile["investigative"] == 90 and profile["artistic"] == 25
    assert profile["realistic"] < profile["conventional"] < profile["investigative"]


def test_every_keyword_points_at_known_dimensions() -> None:
    for dims in INTEREST_KEYWORDS.values():
        assert dims and set(dims) <= set(RIASEC)


def test_row_layout_imputation_and_case() -> None:
    row = build_row(
        SPEC,
        academic_scores={" Math ": 90.0, "art": 40.0},
        riasec={"social": 70.0},
        keywords=["Helping-People"],
        habits={"part_time_job": True, "absence_days": None},
    )
    assert row.values[SPEC.index["math"]] == 90
    assert row.values[SPEC.index["part_time_job"]] == 1
    assert row.values[SPEC.index["social"]] == 70  # explicit beats keyword-derived
    assert not math.isnan(row.values[SPEC.index["artistic"]])  # filled by the keyword
    assert "absence_days" in row.imputed and "physics" in row.imputed
    assert "math" not in row.imputed


def test_unknown_names_are_all_reported() -> None:
    with pytest.raises(InvalidInput) as caught:
        build_row(
            SPEC,
            academic_scores={"alchemy": 1.0, "math": 5.0},
            riasec=None,
            keywords=["coding", "dragons"],
            habits=None,
        )
    fields = [d["field"] for d in caught.value.details]
    assert fields == ["academic_scores.alchemy", "interests.keywords.1"]


def test_habits_unknown_to_a_smaller_spec_are_reported_as_ignored() -> None:
    spec = FeatureSpec([f for f in default_features() if f.group == "subject"])
    row = build_row(
        spec,
        academic_scores={"math": 50.0},
        riasec=None,
        keywords=None,
        habits={"absence_days": 3.0},
    )
    assert row.ignored == ["habits.absence_days"]


def test_row_values_are_floats_whatever_numbers_come_in() -> None:
    """Callers in Python may pass ints; the row (and the answers built from it) hold floats."""
    row = build_row(
        SPEC,
        academic_scores={"math": 90, "art": 40},
        riasec={"social": 70},
        keywords=None,
        habits={"absence_days": 3, "part_time_job": False},
    )
    assert row.values.dtype == float
    assert all(type(v) is float for v in row.values_list)
