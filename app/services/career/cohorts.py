"""Cohorts: the students who chose one career, summarised as quantiles per feature.

A request's percentiles, fit and comparison read these summaries; they are built once per
loaded model, from the reference statistics saved with its bundle.
"""

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from app.domain.enums import RIASEC
from app.schemas.career import CareerRef
from app.services.career.catalog import Career, career_id
from app.services.career.features import FeatureSpec

KEY_SUBJECTS_WHEN_UNCATALOGUED = 3


def percentile(q: list[float], grid: list[float], value: float) -> float:
    """Where `value` falls among a cohort, from its values `q` at the quantile `grid`.

    Plain lists and bisect: per request the work is a few bisections on 21 numbers, too
    small for numpy's per-call overhead to pay off.
    """
    if value <= q[0]:
        return 0.0 if value < q[0] else grid[0]
    if value >= q[-1]:
        return 100.0
    left = bisect_left(q, value)
    right = bisect_right(q, value, left)
    if left < right:  # ties: many students on this exact value sit mid-run
        return round(sum(grid[left:right]) / (right - left), 1)
    share = (value - q[left - 1]) / (q[left] - q[left - 1])
    return round(grid[left - 1] + share * (grid[left] - grid[left - 1]), 1)


class CohortScale:
    """Where a value falls among one cohort's students for one feature, as a percentile.

    Exact (`percentile`) for any value; whole values 0-100, what scores usually are, are
    looked up in a table built at load time.
    """

    __slots__ = ("grid", "quantiles", "whole")

    def __init__(self, quantiles: list[float], grid: list[float]) -> None:
        self.quantiles = quantiles
        self.grid = grid
        self.whole = [percentile(quantiles, grid, float(v)) for v in range(101)]

    def percentile(self, value: float) -> float:
        if 0.0 <= value <= 100.0:  # False for NaN too
            whole = int(value)
            if whole == value:
                return self.whole[whole]
        return percentile(self.quantiles, self.grid, value)


class SubjectTerm(NamedTuple):
    """A key subject of a career as its fit reads it."""

    subject: str
    weight: float
    column: int  # in the model's feature row
    scale: CohortScale
    median: float  # the cohort's typical value


class InterestTerm(NamedTuple):
    """One of the two leading RIASEC dimensions of a career's Holland code."""

    dimension: str
    scale: CohortScale | None  # None when the cohort has no interest data
    median: float | None


@dataclass(frozen=True)
class CareerProfile:
    """What one class of the model is compared on, precomputed at load time."""

    ref: CareerRef
    key_subjects: dict[str, float]
    interest_code: tuple[float, ...] | None  # centred, unit-length RIASEC profile (catalog)
    students: int
    medians: dict[str, float]
    scales: dict[str, CohortScale]  # feature -> its values at the quantile grid, percentiles
    subject_terms: tuple[SubjectTerm, ...]  # the key subjects this cohort has quantiles for
    interest_terms: tuple[InterestTerm, ...]


def career_profile(
    label: str,
    stats: dict[str, Any],
    career: Career | None,
    spec: FeatureSpec,
    grid: list[float],
    population_median: np.ndarray,
) -> CareerProfile:
    """One career's profile from its reference statistics and (if any) its catalog entry."""
    quantiles = {
        name: [float(v) for v in values]
        for name, values in stats["quantiles"].items()
        if values is not None
    }
    medians = {
        name: round(float(np.interp(50, grid, values)), 2) for name, values in quantiles.items()
    }
    key = {s: w for s, w in (career.subjects if career else {}).items() if s in spec.subjects}
    if not key:
        key = _distinctive_subjects(quantiles, spec, grid, population_median)
    code = None
    top: tuple[str, ...] = ()
    if career and career.riasec:
        raw = np.array([career.interest_profile()[d] for d in RIASEC])
        centred = raw - raw.mean()
        unit = centred / np.linalg.norm(centred)
        code = tuple(float(v) for v in unit)
        top = tuple(RIASEC[d] for d in np.argsort(-unit, kind="stable")[:2])
    scales = {name: CohortScale(q, grid) for name, q in quantiles.items()}
    return CareerProfile(
        ref=CareerRef(id=career_id(label), name=label),
        key_subjects=key,
        interest_code=code,
        students=int(stats["students"]),
        medians=medians,
        scales=scales,
        subject_terms=tuple(
            SubjectTerm(subject, weight, spec.index[subject], scales[subject], medians[subject])
            for subject, weight in key.items()
            if subject in scales
        ),
        interest_terms=tuple(InterestTerm(d, scales.get(d), medians.get(d)) for d in top),
    )


def _distinctive_subjects(
    quantiles: dict[str, list[float]],
    spec: FeatureSpec,
    grid: list[float],
    population_median: np.ndarray,
) -> dict[str, float]:
    """Without a catalog entry: the subjects where this cohort's median beats the population's most."""
    median_at = int(np.searchsorted(grid, 50))
    lift = {
        s: quantiles[s][median_at] - float(population_median[spec.index[s]])
        for s in spec.subjects
        if s in quantiles
    }
    top = sorted(lift, key=lambda s: lift[s], reverse=True)[:KEY_SUBJECTS_WHEN_UNCATALOGUED]
    return dict.fromkeys(top, 1.0)
