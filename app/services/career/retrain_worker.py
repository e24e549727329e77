"""Child process of one retraining job: `python -m app.services.career.retrain_worker DIR JOB`.

Runs at low priority so serving keeps its CPU; reports progress into the job file.
"""

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from app.core.exceptions import AppError
from app.services.career.bundle import BundleError, ModelStore
from app.services.career.catalog import Career
from app.services.career.retrain import JOBS_DIR, release_lock, write_job
from app.services.career.training import (
    TrainedModel,
    TrainingConfig,
    evaluate,
    prepare_frame,
    train_model,
)

logger = logging.getLogger("app.retrain")


def quality_gate(
    trained: TrainedModel, store: ModelStore, *, min_lift: float, tolerance: float
) -> dict[str, Any]:
    """Does the candidate clearly beat the baseline and, comparably, the active model?"""
    holdout = trained.metrics["holdout"]
    reasons = []
    lift = holdout["top1_accuracy"] - holdout["baseline_top1_accuracy"]
    if lift < min_lift:
        reasons.append(
            f"top-1 accuracy {holdout['top1_accuracy']:.4f} beats the majority baseline "
            f"{holdout['baseline_top1_accuracy']:.4f} by {lift:.4f}, less than the required {min_lift}"
        )
    active_report: dict[str, Any] | None = None
    active = store.active_version()
    if active:
        try:
            bundle = store.load(active)
        except BundleError as exc:
            active_report = {
                "version": active,
                "compared": False,
                "why": f"active model does not load: {exc}",
            }
        else:
            if bundle.spec.names != trained.spec.names:
                active_report = {
                    "version": active,
                    "compared": False,
                    "why": "feature specs differ, so the models answer different questions",
                }
            else:
                majority = max(
                    set(trained.holdout_y.tolist()), key=trained.holdout_y.tolist().count
                )
                theirs = evaluate(
                    bundle.estimator,
                    trained.holdout_X,
                    trained.holdout_y,
                    trained.classes,
                    majority,
                )
                active_report = {"version": active, "compared": True, "holdout": theirs}
                if holdout["top1_accuracy"] < theirs["top1_accuracy"] - tolerance:
                    reasons.append(
                        f"top-1 accuracy {holdout['top1_accuracy']:.4f} is worse than the active model's "
                        f"{theirs['top1_accuracy']:.4f} on the same held-out rows by more than {tolerance}"
                    )
    return {
        "passed": not reasons,
        "reasons": reasons,
        "min_lift": min_lift,
        "tolerance": tolerance,
        "lift_over_baseline": round(lift, 4),
        "active_model": active_report,
    }


def run(root: Path, job_id: str) -> int:
    store = ModelStore(root)
    path = root / JOBS_DIR / f"{job_id}.json"
    job = json.loads(path.read_text(encoding="utf-8"))
    job.update(state="running", stage="preparing data", progress=0.05, pid=os.getpid())
    write_job(path, job)
    data_path = root / JOBS_DIR / f"{job_id}.csv"
    config = job["config"]
    try:
        frame = pd.read_csv(data_path, dtype=str)
        data = prepare_frame(
            frame, mapping=job["mapping"] or None, min_rows_per_class=config["min_rows_per_class"]
        )
        job["rows"] = data.report

        def progress(stage: str, fraction: float) -> None:
            job.update(stage=stage, progress=round(fraction, 2))
            write_job(path, job)

        trained = train_model(data, config=TrainingConfig(), progress=progress)
        job["metrics"] = trained.metrics
        progress("quality gate", 0.95)
        gate = quality_gate(
            trained, store, min_lift=config["min_lift"], tolerance=config["tolerance"]
        )
        job["gate"] = gate
        job["reasons"] = gate["reasons"]
        if gate["passed"] or job["force"]:
            description = (
                f"Retrained from an upload of {data.report['rows_received']} rows "
                f"({data.report['unique_students']} unique students)"
                + (" with force despite the quality gate." if not gate["passed"] else ".")
            )
            version = store.write(
                trained, data, catalog=_catalog(store), source="retrain", description=description
            )
            store.set_active(version)
            job.update(
                candidate_version=version,
                activated=True,
                state="succeeded",
                stage="done",
                progress=1.0,
            )
        else:
            job.update(state="rejected", stage="done", progress=1.0)
    except AppError as exc:
        job.update(
            state="failed", error=exc.message, reasons=[d.get("message", "") for d in exc.details]
        )
    except Exception as exc:  # recorded for the caller; the traceback goes to the log
        logger.exception("retrain job %s failed", job_id)
        job.update(state="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        write_job(path, job)
        data_path.unlink(missing_ok=True)
        release_lock(root, job_id)
    return 0


def _catalog(store: ModelStore) -> list[Career]:
    """The active model's catalog travels on, so known careers keep their descriptions and
    key subjects; careers it lacks get key subjects derived from the data."""
    active = store.active_version()
    if active:
        try:
            return list(store.load(active).catalog.values())
        except BundleError:
            pass
    return []


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.nice(10)
    return run(Path(sys.argv[1]), sys.argv[2])


if __name__ == "__main__":
    sys.exit(main())
