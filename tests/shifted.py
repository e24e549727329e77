"""A shifted student population for the closed loop's tests, made by the synthetic
generator: a few careers far more popular than the training mix, and higher STEM scores."""

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from app.services.career.catalog import default_catalog
from app.services.career.features import HABITS, RIASEC, SUBJECTS
from app.services.career.synthetic import generate_students

FAVOURED = ("Software Engineer", "Data Scientist", "Game Developer", "Scientist", "Doctor")
STEM = ("math", "physics", "chemistry", "computer_science")
STEM_SHIFT = 12.0


def shifted_students(n: int, seed: int) -> pd.DataFrame:
    """Students who choose mostly the FAVOURED careers and score STEM_SHIFT higher in STEM."""
    catalog = [
        dataclasses.replace(c, popularity=c.popularity * (10.0 if c.name in FAVOURED else 0.02))
        for c in default_catalog()
    ]
    frame = generate_students(catalog, n, seed=seed)
    for subject in STEM:
        frame[subject] = np.clip(frame[subject] + STEM_SHIFT, 0, 100)
    return frame


def usual_students(n: int, seed: int) -> pd.DataFrame:
    """Students from the training population of the fixture model."""
    return generate_students(default_catalog(), n, seed=seed)


def as_request(row: pd.Series) -> dict[str, Any]:
    """One generated student as predict's JSON body."""
    scores = {s: float(row[s]) for s in SUBJECTS if pd.notna(row[s])}
    body: dict[str, Any] = {"academic_scores": scores or {"math": 50.0}}
    riasec = {d: float(row[d]) for d in RIASEC if pd.notna(row[d])}
    if riasec:
        body["interests"] = {"riasec": riasec}
    habits: dict[str, Any] = {}
    for name, feature in HABITS.items():
        if pd.notna(row[name]):
            habits[name] = bool(row[name]) if feature.kind == "boolean" else float(row[name])
    if habits:
        body["habits"] = habits
    return body


def as_outcome(row: pd.Series, observed_at: str, **extra: Any) -> dict[str, Any]:
    return {"student": as_request(row), "career": row["label"], "observed_at": observed_at, **extra}
