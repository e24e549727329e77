"""Career-model training from the command line: synthetic students (or a CSV).

    python -m app.train                      # default synthetic model, activated
    python -m app.train --csv data.csv --mapping '{"career_aspiration": "label"}'
    python -m app.train --if-missing         # what the run command and the Dockerfile do

It calls the same `prepare_frame` / `train_model` / `VersionRegistry.write` that the retrain
endpoint runs, so there is one way to train.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from app.config import get_settings
from app.services.career.bundle import VersionRegistry
from app.services.career.catalog import default_catalog
from app.services.career.preparation import prepare_frame
from app.services.career.synthetic import DEFAULT_STUDENTS, generate_students
from app.services.career.training import (
    DEFAULT_CANDIDATES,
    DEFAULT_SEED,
    TrainingConfig,
    train_model,
)


def build(
    store: VersionRegistry,
    *,
    frame: pd.DataFrame,
    mapping: dict[str, str] | None,
    source: str,
    description: str,
    config: TrainingConfig,
    activate: bool,
) -> str:
    catalog = default_catalog()
    data = prepare_frame(frame, mapping=mapping, min_rows_per_class=config.min_rows_per_class)
    trained = train_model(
        data, config=config, progress=lambda stage, _f: print(f"- {stage}", flush=True)
    )
    version = store.write(trained, data, catalog=catalog, source=source, description=description)
    if activate:
        store.set_active(version)
    holdout = trained.metrics["holdout"]
    print(
        f"version {version}{' (active)' if activate else ''}: "
        f"top1 {holdout['top1_accuracy']} top3 {holdout['top3_accuracy']} "
        f"macro-F1 {holdout['macro_f1']} log-loss {holdout['log_loss']} "
        f"baseline {holdout['baseline_top1_accuracy']} on {holdout['rows']} held-out students"
    )
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a career model bundle.")
    parser.add_argument("--model-dir", type=Path, default=None, help="default: CAREER_MODEL_DIR")
    parser.add_argument("--csv", type=Path, help="train on this CSV instead of synthetic students")
    parser.add_argument(
        "--mapping", default=None, help="JSON object: source column -> feature or 'label'"
    )
    parser.add_argument("--students", type=int, default=DEFAULT_STUDENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--candidates", default=",".join(DEFAULT_CANDIDATES), help="comma-separated model names"
    )
    parser.add_argument("--no-activate", action="store_true")
    parser.add_argument("--if-missing", action="store_true", help="do nothing if a model is active")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    store = VersionRegistry(args.model_dir or get_settings().career_model_dir)
    if args.if_missing and store.active_version() is not None:
        print(f"career model {store.active_version()} is active in {store.root}; nothing to build")
        return 0
    config = TrainingConfig(seed=args.seed, candidates=tuple(args.candidates.split(",")))
    if args.csv:
        frame = pd.read_csv(args.csv)
        source, description = "csv", f"Trained offline on {args.csv.name}."
    else:
        frame = generate_students(default_catalog(), args.students, seed=args.seed)
        source = "synthetic"
        description = (
            f"Default model: {args.students} synthetic students (seed {args.seed}) generated from "
            f"the {len(default_catalog())}-career catalog."
        )
    mapping = json.loads(args.mapping) if args.mapping else None
    build(
        store,
        frame=frame,
        mapping=mapping,
        source=source,
        description=description,
        config=config,
        activate=not args.no_activate,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
