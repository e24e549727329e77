"""Why a career fits a student: fit parts, cohort comparison, contributions, improvements.

Model-agnostic: everything here reads the cohort profiles and the model's probabilities,
never its internals, so every model kind is explained the same way.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import mul
from typing import Any, NamedTuple

import numpy as np

from app.domain.enums import RIASEC
from app.schemas.career import CohortComparison, Contribution, Improvement
from app.services.career.cohorts import CareerProfile
from app.services.career.features import FeatureSpec, StudentRow

STRENGTH_PERCENTILE = 60.0
GAP_PERCENTILE = 40.0
# What "a realistic change" means for the improvement suggestions.
SUBJECT_STEP = 10.0
STUDY_HOURS_STEP = 5.0
ABSENCE_STEP = 3.0
MAX_IMPROVEMENTS = 3
# A gain below this is rounding noise, not a suggestion.
MIN_GAIN = 1e-4

Proba = Callable[[np.ndarray], np.ndarray]


class Fit(NamedTuple):
    """A fit's parts as plain data in the shape of their pydantic models (Compatibility,
    FitPoint): predict serialises them as they are, analyze validates them once."""

    compatibility: dict[str, Any]
    strengths: list[dict[str, Any]]
    gaps: list[dict[str, Any]]


class Change(NamedTuple):
    """A realistic one-feature change to a student's row."""

    column: int
    value: float


def fit(profile: CareerProfile, row: StudentRow) -> Fit:
    """Compatibility parts plus the key subjects and interests where the student stands out."""
    values = row.values_list
    strengths: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    weighted, weights = 0.0, 0.0
    for term in profile.subject_terms:
        value = values[term.column]
        if math.isnan(value):  # not given: imputed values say nothing about the student
            continue
        pct = term.scale.percentile(value)
        weighted += term.weight * pct
        weights += term.weight
        if pct >= STRENGTH_PERCENTILE:
            strengths.append(_point(term.subject, "subject", value, term.median, pct))
        elif pct <= GAP_PERCENTILE:
            gaps.append(_point(term.subject, "subject", value, term.median, pct))
    academic = round(weighted / weights, 1) if weights else None

    interest = None
    if profile.interest_code is not None and row.interest_centred is not None:
        if row.interest_norm > 0:
            dot = sum(map(mul, row.interest_centred, profile.interest_code))
            # max(): opposite profiles land a rounding error below 0, or on "-0.0".
            interest = max(0.0, round(50 * (dot / row.interest_norm + 1), 1))
        for dim, scale, median in profile.interest_terms:
            value = row.interests[dim]
            if GAP_PERCENTILE < value < STRENGTH_PERCENTILE:
                continue
            standing = None if scale is None else scale.percentile(value)
            point = _point(dim, "interest", value, median, standing)
            (strengths if value >= STRENGTH_PERCENTILE else gaps).append(point)
    if academic is None or interest is None:  # the part there is, if any
        overall = interest if academic is None else academic
    else:
        overall = round((academic + interest) / 2, 1)
    strengths.sort(key=_standing, reverse=True)
    gaps.sort(key=_standing)
    compatibility = {"overall": overall, "academic_fit": academic, "interest_fit": interest}
    return Fit(compatibility, strengths, gaps)


def _point(
    feature: str, kind: str, value: float, typical: float | None, pct: float | None
) -> dict[str, Any]:
    """A FitPoint's fields."""
    return {"feature": feature, "kind": kind, "value": value, "typical": typical, "percentile": pct}


def _standing(point: dict[str, Any]) -> float:
    """Sort key: the percentile, or the raw value where the cohort has none."""
    pct: float | None = point["percentile"]
    return point["value"] if pct is None else pct


def compare(spec: FeatureSpec, profile: CareerProfile, row: StudentRow) -> CohortComparison:
    """The student's percentiles among the cohort, and how far their interests are from it."""
    percentiles = {}
    for subject in spec.subjects:
        value = row.values_list[spec.index[subject]]
        if not math.isnan(value):  # imputed subjects are NaN here
            scale = profile.scales.get(subject)
            if scale is not None:
                percentiles[subject] = scale.percentile(value)
    distance = None
    medians = [profile.medians.get(d) for d in RIASEC]
    if len(row.interests) == len(RIASEC) and all(m is not None for m in medians):
        student = np.array([row.interests[d] for d in RIASEC])
        cohort = np.array(medians, dtype=float)
        distance = round(
            float(np.linalg.norm(student - cohort) / (100 * math.sqrt(len(RIASEC)))), 4
        )
    return CohortComparison(
        students=profile.students, percentiles=percentiles, interest_distance=distance
    )


def improvements(spec: FeatureSpec, x: np.ndarray) -> list[Change]:
    """Realistic one-feature changes: +10 on a subject, +5 study hours, 3 fewer absences."""
    changes = []
    for column, feature in enumerate(spec.features):
        value = x[column]
        if math.isnan(value):
            continue
        if feature.group == "subject" and value < feature.maximum:
            changes.append(Change(column, min(feature.maximum, value + SUBJECT_STEP)))
        elif feature.name == "weekly_self_study_hours" and value < feature.maximum:
            changes.append(Change(column, min(feature.maximum, value + STUDY_HOURS_STEP)))
        elif feature.name == "absence_days" and value > feature.minimum:
            changes.append(Change(column, max(feature.minimum, value - ABSENCE_STEP)))
    return changes


@dataclass(frozen=True)
class WhatIf:
    """The student's probabilities and how they move with each one-feature change, from one
    batched predict; rows of `effect` follow `given`, rows of `gain` follow `changes`."""

    x: np.ndarray
    base: np.ndarray  # the student's probability per career
    given: list[int]  # columns the student gave (not imputed)
    effect: np.ndarray  # per given column: its contribution to each career's probability
    changes: list[Change]
    gain: np.ndarray  # per change: the probability gained for each career

    def contributions(
        self, spec: FeatureSpec, baseline: np.ndarray, career: int
    ) -> list[Contribution]:
        """Each given feature's contribution to one career, largest first."""
        return sorted(
            (
                Contribution(
                    feature=spec.names[column],
                    value=float(self.x[column]),
                    baseline=round(float(baseline[column]), 3),
                    contribution=round(float(self.effect[r, career]), 4),
                )
                for r, column in enumerate(self.given)
            ),
            key=lambda c: abs(c.contribution),
            reverse=True,
        )

    def improvements(self, spec: FeatureSpec, career: int) -> list[Improvement]:
        """The changes that raise one career's probability most, best first."""
        gains = [
            Improvement(
                feature=spec.names[column],
                current=float(self.x[column]),
                suggested=float(new),
                probability_gain=round(float(self.gain[r, career]), 4),
            )
            for r, (column, new) in enumerate(self.changes)
            if self.gain[r, career] > MIN_GAIN
        ]
        gains.sort(key=lambda g: g.probability_gain, reverse=True)
        return gains[:MAX_IMPROVEMENTS]


def what_if(proba: Proba, spec: FeatureSpec, baseline: np.ndarray, x: np.ndarray) -> WhatIf:
    """Contributions and improvement gains for one student, in one batched predict.

    A contribution averages two one-feature views, which agree for independent features
    and keep each other honest for correlated ones: the student with the feature reset to
    the population median, and the median student with the feature set to the student's.
    """
    given = [column for column, v in enumerate(x) if not math.isnan(v)]
    reset = np.repeat(x[None, :], len(given), axis=0)
    alone = np.repeat(baseline[None, :], len(given), axis=0)
    for r, column in enumerate(given):
        reset[r, column] = baseline[column]
        alone[r, column] = x[column]
    changes = improvements(spec, x)
    improved = np.repeat(x[None, :], len(changes), axis=0)
    for r, (column, new) in enumerate(changes):
        improved[r, column] = new
    blocks = [x[None, :], baseline[None, :], reset, alone, improved]
    student, median_student, without, only, better = np.split(
        proba(np.vstack(blocks)), np.cumsum([len(b) for b in blocks])[:-1]
    )
    base = student[0]
    effect = 0.5 * ((base - without) + (only - median_student[0]))
    return WhatIf(x=x, base=base, given=given, effect=effect, changes=changes, gain=better - base)
