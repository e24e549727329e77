"""The quality gate: may a retrained candidate replace the active model?"""

from app.domain.records import ActiveComparison, GateReport
from app.services.career.bundle import BundleError, VersionRegistry
from app.services.career.evaluation import evaluate
from app.services.career.training import TrainedModel


def quality_gate(
    trained: TrainedModel, store: VersionRegistry, *, min_lift: float, tolerance: float
) -> GateReport:
    """Does the candidate clearly beat the majority baseline and, comparably, the active
    model (both on the candidate's held-out students)?"""
    holdout = trained.metrics["holdout"]
    reasons = []
    lift = holdout["top1_accuracy"] - holdout["baseline_top1_accuracy"]
    if lift < min_lift:
        reasons.append(
            f"top-1 accuracy {holdout['top1_accuracy']:.4f} beats the majority baseline "
            f"{holdout['baseline_top1_accuracy']:.4f} by {lift:.4f}, less than the required {min_lift}"
        )
    comparison = _compare_with_active(trained, store)
    if comparison is not None and comparison.holdout is not None:
        theirs = comparison.holdout
        if holdout["top1_accuracy"] < theirs["top1_accuracy"] - tolerance:
            reasons.append(
                f"top-1 accuracy {holdout['top1_accuracy']:.4f} is worse than the active model's "
                f"{theirs['top1_accuracy']:.4f} on the same held-out rows by more than {tolerance}"
            )
    return GateReport(
        passed=not reasons,
        reasons=reasons,
        min_lift=min_lift,
        tolerance=tolerance,
        lift_over_baseline=round(lift, 4),
        active_model=comparison,
    )


def _compare_with_active(trained: TrainedModel, store: VersionRegistry) -> ActiveComparison | None:
    """The active model's metrics on the candidate's held-out rows, or why there are none."""
    active = store.active_version()
    if not active:
        return None
    try:
        bundle = store.load(active)
    except BundleError as exc:
        return ActiveComparison(
            version=active, compared=False, why=f"active model does not load: {exc}"
        )
    if bundle.spec.names != trained.spec.names:
        return ActiveComparison(
            version=active,
            compared=False,
            why="feature specs differ, so the models answer different questions",
        )
    theirs = evaluate(
        bundle.estimator, trained.holdout_X, trained.holdout_y, trained.classes, trained.majority
    )
    return ActiveComparison(version=active, compared=True, holdout=theirs)
