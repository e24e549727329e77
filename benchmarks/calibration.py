"""How well calibrated the training recipe is, and how precisely 400 students can tell.

    .venv/bin/python -m benchmarks.calibration [--seed 7] [--draws 2000]

The model card's expected calibration error (15 equal-width bins on the top-1
confidence) is measured on one held-out split of 400 students. This script puts that one
number in context, on the public `student-scores.csv` (synthetic students without it):

1. the default training run, as `python -m app.train` does it: its chosen model and
   held-out ECE;
2. the same recipe (that candidate, temperature-scaled over grouped CV folds) fitted five
   times, each time without one fifth of the students, so that every student is predicted
   by a model that never saw them: ECE per fifth and pooled over all students;
3. the ECE a perfectly calibrated model with the same confidences scores on 400 students:
   labels drawn from its own top-1 confidence, `--draws` times.

If the pooled ECE is small and the per-fifth values spread like the perfectly calibrated
ones, the held-out value is sampling noise rather than miscalibration.
"""

import argparse
import statistics

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from app.services.career.catalog import default_catalog
from app.services.career.evaluation import (
    aligned_proba,
    perfect_calibration_ece,
    scores,
)
from app.services.career.preparation import PreparedData, prepare_frame
from app.services.career.synthetic import generate_students
from app.services.career.training import (
    DEFAULT_SEED,
    TrainingConfig,
    calibrated,
    cv_splits,
    train_model,
)
from benchmarks.common import PUBLIC_CSV, PUBLIC_MAPPING

HOLDOUT_STUDENTS = 400


def load() -> tuple[str, PreparedData]:
    if PUBLIC_CSV.exists():
        frame = pd.read_csv(PUBLIC_CSV, dtype=str)
        return PUBLIC_CSV.name, prepare_frame(frame, mapping=PUBLIC_MAPPING)
    students = generate_students(default_catalog(), 2000, seed=DEFAULT_SEED)
    return "2,000 synthetic students", prepare_frame(students)


def out_of_fold(
    data: PreparedData, chosen: str, seed: int
) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """Every student's probabilities from the recipe fitted without their fifth, the
    classes, and the fifths (the first is the default run's held-out split)."""
    X, y, groups = data.X, data.y, data.groups
    classes = sorted(set(y.tolist()))
    config = TrainingConfig(seed=seed, candidates=(chosen,))
    proba = np.zeros((len(y), len(classes)))
    fifths = []
    outer = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    for fit_idx, test_idx in outer.split(X, y, groups):
        splits = cv_splits(X[fit_idx], y[fit_idx], groups[fit_idx], config)
        model = calibrated(chosen, splits, seed).fit(X[fit_idx], y[fit_idx])
        proba[test_idx] = aligned_proba(model, X[test_idx], classes)
        fifths.append(test_idx)
    return proba, classes, fifths


def row(name: str, metrics: dict[str, float]) -> str:
    return (
        f"| {name} | {metrics['rows']} | {metrics['top1_accuracy']:.4f} "
        f"| {metrics['log_loss']:.4f} | {metrics['expected_calibration_error']:.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()

    source, data = load()
    trained = train_model(data, config=TrainingConfig(seed=args.seed))
    chosen = trained.metrics["chosen_model"]
    proba, classes, fifths = out_of_fold(data, chosen, args.seed)
    y = data.y

    print(f"\n{source}, {len(y)} students, seed {args.seed}, chosen model {chosen}:\n")
    print("| measured on | students | top-1 | log-loss | ECE |\n|---|---|---|---|---|")
    print(row("the default run's held-out split", trained.metrics["holdout"]))
    for k, idx in enumerate(fifths, start=1):
        metrics = scores(y[idx], proba[idx], classes, trained.majority)
        print(row(f"fifth {k}, out of fold", metrics))
    print(row("all students, out of fold", scores(y, proba, classes, trained.majority)))

    noise = perfect_calibration_ece(proba.max(axis=1), HOLDOUT_STUDENTS, args.draws, args.seed)
    print(
        f"\nA perfectly calibrated model with these confidences, {HOLDOUT_STUDENTS} students, "
        f"{args.draws} draws: ECE median {statistics.median(noise):.4f}, "
        f"90th percentile {np.percentile(noise, 90):.4f}, "
        f"<= 0.05 in {np.mean(noise <= 0.05):.0%} of draws."
    )


if __name__ == "__main__":
    main()
