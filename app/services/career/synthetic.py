"""Seeded generator of synthetic students whose career choices follow the career catalog.

How a student is made (every draw comes from one numpy Generator, so a seed fixes all):
1. Interests: six RIASEC scores (0-100). Each student leans towards one or two randomly
   drawn Holland letters (+25 and +12) on top of N(45, 15) noise, the way real interest
   profiles have one or two peaks.
2. Subject scores (0-100): general ability g ~ N(0, 1) lifts every subject (10 points per
   sd); each subject adds its own N(0, 8) aptitude and a nudge from related interests
   (investigative -> sciences and math, artistic -> art and English, and so on).
3. Habits: weekly self-study hours grow with ability; absence days are Poisson and fall
   with ability; 16% have a part-time job and 20% extracurricular activities, as in the
   public Student Scores table.
4. Career: each career's utility = 1.4 x academic fit (mean z-score on its key subjects,
   weighted) + 3.0 x interest fit (correlation of the student's RIASEC profile with the
   career's Holland code) + log popularity + Gumbel noise. The student picks the best.
   The noise is what real choices have: family, chance, money, information.
5. Missing values like real records have: 1% of each subject score, 12% of students
   without an interest inventory, 4% of each habit.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from app.domain.enums import RIASEC
from app.services.career.catalog import Career, default_catalog
from app.services.career.features import HABITS, SUBJECTS
from app.services.career.preparation import DEFAULT_SEED

# Which interests lift which subjects (points per interest point above 50).
INTEREST_SUBJECT_LINKS: dict[str, dict[str, float]] = {
    "realistic": {"physics": 0.12, "geography": 0.08, "computer_science": 0.05},
    "investigative": {
        "math": 0.15,
        "physics": 0.15,
        "chemistry": 0.15,
        "biology": 0.12,
        "computer_science": 0.12,
    },
    "artistic": {"art": 0.25, "english": 0.12, "history": 0.05},
    "social": {"english": 0.08, "history": 0.1, "biology": 0.05},
    "enterprising": {"economics": 0.2, "english": 0.05},
    "conventional": {"math": 0.1, "economics": 0.12, "computer_science": 0.05},
}
# The default model's training data: this many students from this seed.
DEFAULT_STUDENTS = 8000
ACADEMIC_WEIGHT = 1.4
INTEREST_WEIGHT = 3.0
NOISE_SCALE = 0.6


def generate_students(catalog: list[Career], n: int, *, seed: int) -> pd.DataFrame:
    """`n` synthetic students with a `student_id`, every feature and a `label` (career)."""
    rng = np.random.default_rng(seed)
    n_dims = len(RIASEC)

    interests = rng.normal(45, 15, size=(n, n_dims))
    first = rng.integers(0, n_dims, size=n)
    second = (first + rng.integers(1, n_dims, size=n)) % n_dims
    interests[np.arange(n), first] += 25
    interests[np.arange(n), second] += 12
    interests = np.clip(interests, 0, 100)

    ability = rng.normal(0, 1, size=n)
    scores = np.empty((n, len(SUBJECTS)))
    for j, subject in enumerate(SUBJECTS):
        lift = sum(
            weight * (interests[:, RIASEC.index(dim)] - 50)
            for dim, links in INTEREST_SUBJECT_LINKS.items()
            for subj, weight in links.items()
            if subj == subject
        )
        scores[:, j] = 68 + 10 * ability + rng.normal(0, 8, size=n) + lift
    scores = np.clip(np.round(scores), 0, 100)

    study = np.clip(np.round(rng.normal(17 + 5 * ability, 7)), 0, 50)
    absence = np.clip(rng.poisson(np.exp(1.2 - 0.3 * ability)), 0, 30).astype(float)
    part_time = (rng.random(n) < 0.16).astype(float)
    extracurricular = (rng.random(n) < 0.2).astype(float)

    z = (scores - scores.mean(axis=0)) / scores.std(axis=0)
    centred = interests - interests.mean(axis=1, keepdims=True)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True) + 1e-9
    utilities = np.empty((n, len(catalog)))
    for c, career in enumerate(catalog):
        weights = np.array([career.subjects.get(s, 0.0) for s in SUBJECTS])
        academic = z @ weights / max(weights.sum(), 1e-9)
        profile = np.array([career.interest_profile()[d] for d in RIASEC])
        profile = (profile - profile.mean()) / (np.linalg.norm(profile - profile.mean()) + 1e-9)
        interest = centred @ profile
        utilities[:, c] = (
            ACADEMIC_WEIGHT * academic + INTEREST_WEIGHT * interest + np.log(career.popularity)
        )
    utilities += rng.gumbel(0, NOISE_SCALE, size=utilities.shape)
    labels = np.array([career.name for career in catalog], dtype=object)[utilities.argmax(axis=1)]

    frame = pd.DataFrame(scores, columns=list(SUBJECTS))
    for j, dim in enumerate(RIASEC):
        frame[dim] = np.round(interests[:, j], 1)
    frame["weekly_self_study_hours"] = study
    frame["absence_days"] = absence
    frame["part_time_job"] = part_time
    frame["extracurricular_activities"] = extracurricular

    for subject in SUBJECTS:
        frame.loc[rng.random(n) < 0.01, subject] = np.nan
    frame.loc[rng.random(n) < 0.12, list(RIASEC)] = np.nan
    for habit in HABITS:
        frame.loc[rng.random(n) < 0.04, habit] = np.nan

    frame.insert(0, "student_id", [f"S{seed:03d}-{i:06d}" for i in range(n)])
    frame["label"] = labels
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_STUDENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    args = parser.parse_args()
    frame = generate_students(default_catalog(), args.n, seed=args.seed)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} students to {args.out}")


if __name__ == "__main__":
    main()
