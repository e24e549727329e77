"""Feature spec of a career model and the translation of a student into a feature row.

A model's spec travels in its bundle's manifest: requests are validated against the
*active* model's spec, so a model retrained on other columns serves with its own.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.core.exceptions import InvalidInput
from app.domain.enums import RIASEC

FeatureGroup = Literal["subject", "interest", "habit"]

SUBJECTS: tuple[str, ...] = (
    "math",
    "physics",
    "chemistry",
    "biology",
    "computer_science",
    "english",
    "history",
    "geography",
    "economics",
    "art",
)

# Published interest keywords, each pointing at one or two RIASEC dimensions (primary first).
INTEREST_KEYWORDS: dict[str, tuple[str, ...]] = {
    "building things": ("realistic",),
    "repairing machines": ("realistic", "investigative"),
    "working outdoors": ("realistic",),
    "construction": ("realistic", "conventional"),
    "sports": ("realistic", "social"),
    "coding": ("investigative", "conventional"),
    "robotics": ("realistic", "investigative"),
    "math puzzles": ("investigative",),
    "science experiments": ("investigative", "realistic"),
    "research": ("investigative",),
    "medicine": ("investigative", "social"),
    "nature": ("investigative", "realistic"),
    "space": ("investigative",),
    "video games": ("investigative", "artistic"),
    "drawing": ("artistic",),
    "music": ("artistic",),
    "writing": ("artistic", "social"),
    "design": ("artistic", "realistic"),
    "photography": ("artistic",),
    "theatre": ("artistic", "social"),
    "fashion": ("artistic", "enterprising"),
    "helping people": ("social",),
    "teaching": ("social",),
    "volunteering": ("social",),
    "psychology": ("social", "investigative"),
    "social media": ("social", "enterprising"),
    "debate": ("enterprising", "social"),
    "leadership": ("enterprising",),
    "business": ("enterprising", "conventional"),
    "sales": ("enterprising",),
    "investing": ("enterprising", "conventional"),
    "politics": ("enterprising", "social"),
    "law": ("enterprising", "investigative"),
    "organizing": ("conventional",),
    "accounting": ("conventional", "enterprising"),
    "data analysis": ("conventional", "investigative"),
    "planning": ("conventional", "enterprising"),
}

# Scores derived from keywords alone: unmentioned dimensions sit at the floor, the most
# mentioned one at the ceiling. Chosen to stay inside the range real profiles have.
KEYWORD_FLOOR, KEYWORD_CEILING = 25.0, 90.0
SECONDARY_WEIGHT = 0.5


@dataclass(frozen=True)
class Feature:
    """One model input: a subject score, a RIASEC interest or a study habit."""

    name: str
    group: FeatureGroup
    kind: Literal["number", "boolean"]
    minimum: float
    maximum: float
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "kind": self.kind,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Feature":
        return cls(
            name=str(data["name"]),
            group=data["group"],
            kind=data["kind"],
            minimum=float(data["minimum"]),
            maximum=float(data["maximum"]),
            description=str(data.get("description", "")),
        )


HABITS: dict[str, Feature] = {
    "weekly_self_study_hours": Feature(
        "weekly_self_study_hours", "habit", "number", 0, 100, "Hours of self-study per week."
    ),
    "absence_days": Feature(
        "absence_days", "habit", "number", 0, 365, "Days absent from school this year."
    ),
    "part_time_job": Feature(
        "part_time_job", "habit", "boolean", 0, 1, "Whether the student has a part-time job."
    ),
    "extracurricular_activities": Feature(
        "extracurricular_activities",
        "habit",
        "boolean",
        0,
        1,
        "Whether the student takes part in extracurricular activities.",
    ),
}


def subject_feature(name: str) -> Feature:
    return Feature(name, "subject", "number", 0, 100, f"{name.replace('_', ' ').title()} score.")


def interest_feature(name: str) -> Feature:
    return Feature(name, "interest", "number", 0, 100, f"RIASEC {name} interest, 0-100.")


def known_feature(name: str) -> Feature:
    """The standard definition of a feature name the service understands."""
    if name in HABITS:
        return HABITS[name]
    if name in RIASEC:
        return interest_feature(name)
    if name in SUBJECTS:
        return subject_feature(name)
    raise KeyError(name)


def default_features() -> list[Feature]:
    """The features of the default (synthetic) model: every subject, interest and habit."""
    return (
        [subject_feature(s) for s in SUBJECTS]
        + [interest_feature(r) for r in RIASEC]
        + list(HABITS.values())
    )


class FeatureSpec:
    """The ordered inputs of one model; the column order of its feature matrix."""

    def __init__(self, features: list[Feature]) -> None:
        self.features = features
        self.names = [f.name for f in features]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.subjects = [f.name for f in features if f.group == "subject"]
        self.interests = [f.name for f in features if f.group == "interest"]
        self.habits = [f.name for f in features if f.group == "habit"]

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_list(cls, data: Sequence[Mapping[str, Any]]) -> "FeatureSpec":
        return cls([Feature.from_dict(item) for item in data])


def interests_from_keywords(keywords: list[str]) -> dict[str, float]:
    """RIASEC scores implied by interest keywords (already validated against the vocabulary)."""
    weights = dict.fromkeys(RIASEC, 0.0)
    for keyword in keywords:
        primary, *secondary = INTEREST_KEYWORDS[keyword]
        weights[primary] += 1.0
        for dim in secondary:
            weights[dim] += SECONDARY_WEIGHT
    top = max(weights.values()) or 1.0
    span = KEYWORD_CEILING - KEYWORD_FLOOR
    return {dim: round(KEYWORD_FLOOR + span * w / top, 2) for dim, w in weights.items()}


def normalise_keyword(keyword: str) -> str:
    return " ".join(keyword.lower().replace("_", " ").replace("-", " ").split())


@dataclass
class StudentRow:
    """A student as the model sees them, with the facts the response reports."""

    values_list: list[float]  # one value per feature, NaN where missing
    interests: dict[str, float]  # RIASEC profile used for interest fit (may be partial)
    imputed: list[str]  # model features that were missing and will be imputed
    ignored: list[str]  # inputs the active model does not use

    def __post_init__(self) -> None:
        self.values = np.array(self.values_list, dtype=float)  # the model's input row
        # The centred RIASEC vector, once per request for every career's fit; None unless
        # all six dimensions are known. Six floats: plain Python beats numpy's call overhead.
        self.interest_centred: list[float] | None = None
        self.interest_norm = 0.0
        if self.interests.keys() >= set(RIASEC):
            profile = [self.interests[d] for d in RIASEC]
            mean = sum(profile) / len(RIASEC)
            self.interest_centred = [v - mean for v in profile]
            self.interest_norm = math.hypot(*self.interest_centred)


def build_row(
    spec: FeatureSpec,
    *,
    academic_scores: Mapping[str, float],
    riasec: Mapping[str, float] | None,
    keywords: list[str] | None,
    habits: Mapping[str, float | bool | None] | None,
) -> StudentRow:
    """Validate names against the spec and lay the student out as one feature row."""
    problems: list[dict[str, Any]] = []
    scores = {name.strip().lower(): float(value) for name, value in academic_scores.items()}
    unknown = sorted(set(scores) - set(spec.subjects))
    for name in unknown:
        problems.append(
            {
                "field": f"academic_scores.{name}",
                "message": f"Unknown subject '{name}' for the active model.",
                "type": "unknown_subject",
                "allowed": spec.subjects,
            }
        )
    known_keywords: list[str] = []
    for i, raw in enumerate(keywords or []):
        keyword = normalise_keyword(raw)
        if keyword in INTEREST_KEYWORDS:
            known_keywords.append(keyword)
        else:
            problems.append(
                {
                    "field": f"interests.keywords.{i}",
                    "message": f"Unknown interest keyword '{raw}'.",
                    "type": "unknown_keyword",
                    "allowed": sorted(INTEREST_KEYWORDS),
                }
            )
    if problems:
        noun = "field" if len(problems) == 1 else "fields"
        raise InvalidInput(f"The request has {len(problems)} invalid {noun}.", details=problems)

    profile = interests_from_keywords(known_keywords) if known_keywords else {}
    profile.update({k: float(v) for k, v in (riasec or {}).items()})

    given: dict[str, float] = dict(scores)
    given.update({k: v for k, v in profile.items() if k in spec.interests})
    for name, value in (habits or {}).items():
        if value is not None and name in spec.habits:
            given[name] = float(value)

    ordered = [given.get(name, math.nan) for name in spec.names]
    imputed = [name for name in spec.names if name not in given]
    ignored = [
        f"habits.{name}"
        for name, value in (habits or {}).items()
        if value is not None and name not in spec.habits
    ]
    return StudentRow(values_list=ordered, interests=profile, imputed=imputed, ignored=ignored)
