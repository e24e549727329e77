"""Closed-loop routes: outcomes in, their statistics and erasure, monitoring of the active
model, and retraining jobs listed or started on the outcome store."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from app.api.deps import OutcomesDep, RetrainDep
from app.api.outcomes_body import OUTCOMES_BODY, outcome_batch
from app.api.responses import documented, errors
from app.core.envelope import ok
from app.core.security import require_admin_key
from app.domain.records import RetrainJob
from app.schemas.envelope import Envelope
from app.schemas.outcomes import (
    Erasure,
    Monitoring,
    OutcomeIngest,
    OutcomeStats,
    StoreRetrainRequest,
)
from app.services.outcomes.service import ParsedBatch

router = APIRouter(prefix="/career", tags=["closed loop"])
Admin = [Depends(require_admin_key)]

# 503 on these routes: the store is down, or (for outcomes) no model is loaded to check them.
STORE_503 = documented(
    503,
    "The outcome store (database) is unavailable: `STORE_UNAVAILABLE`, with `Retry-After`; "
    "predict, analyze and CLIP are unaffected. Or the career model is not loaded "
    "(`MODEL_LOADING`, `MODEL_UNAVAILABLE`): it defines which outcomes are valid.",
    "STORE_UNAVAILABLE",
    "The outcome store (database) is unavailable; predictions are not affected. Retry later.",
)


def _with(
    responses: dict[int | str, dict[str, Any]], extra: dict[int | str, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    return {**responses, **extra}


@router.post(
    "/outcomes",
    response_model=Envelope[OutcomeIngest],
    responses=_with(errors(401, 413, 422), STORE_503),
    openapi_extra=OUTCOMES_BODY,
    summary="Report the careers students chose",
)
def post_outcomes(
    batch: Annotated[ParsedBatch, Depends(outcome_batch)], outcomes: OutcomesDep
) -> Response:
    """A batch of outcomes (at most MAX_OUTCOME_BATCH): each student checked as predict checks
    it, against the active model, and scored by it. Any invalid row: one 422 naming every bad
    row (`details[].row`), and nothing is stored."""
    return ok(outcomes.ingest(batch))


@router.get(
    "/outcomes/stats",
    response_model=Envelope[OutcomeStats],
    responses=_with(errors(401), STORE_503),
    summary="Outcome counts",
)
def outcome_stats(outcomes: OutcomesDep) -> Response:
    """Totals by career and by week, and how many arrived since the active model was trained."""
    return ok(outcomes.stats())


@router.delete(
    "/outcomes",
    response_model=Envelope[Erasure],
    responses=_with(errors(401, 403, 422), STORE_503),
    dependencies=Admin,
    summary="Erase a subject's outcomes (admin)",
)
def erase_outcomes(
    subject_id: Annotated[str, Query(min_length=1, max_length=200)], outcomes: OutcomesDep
) -> Response:
    """Deletes every outcome reported with this `subject_id`; 200 with `deleted: 0` when there
    are none (erasure is idempotent and does not say whether a subject was ever known)."""
    return ok(outcomes.erase(subject_id))


@router.get(
    "/monitoring",
    response_model=Envelope[Monitoring],
    responses=errors(401),
    summary="Drift and live quality of the active model",
)
def monitoring(outcomes: OutcomesDep) -> Response:
    """PSI per feature and of the top-1 careers over this process's last MONITORING_WINDOW
    predict/analyze requests, against the training reference; top-1 and log loss of the
    active model on the outcomes it scored (`live_quality.error` when the store is down)."""
    return ok(outcomes.monitoring())


@router.get(
    "/retrain",
    response_model=Envelope[list[RetrainJob]],
    responses=errors(401, 403),
    dependencies=Admin,
    summary="Retraining jobs, newest first (admin)",
)
def list_retrain_jobs(jobs: RetrainDep) -> Response:
    """Every job on record with its `trigger` (`upload`, `store`, `auto`) and, for automatic
    jobs, the `reason` they started."""
    return ok(jobs.history())


@router.post(
    "/retrain/store",
    status_code=202,
    response_model=Envelope[RetrainJob],
    responses=_with(errors(401, 403, 409, 413, 422), STORE_503),
    dependencies=Admin,
    summary="Retrain on the outcome store (admin)",
)
def retrain_on_store(body: StoreRetrainRequest, outcomes: OutcomesDep) -> Response:
    """A job (`trigger: store`) on the outcomes of the last `window_days`, optionally with the
    rows of the active version, through the same checks, quality gate and registry as an
    upload. Poll `GET /api/v1/career/retrain/{job_id}`."""
    job = outcomes.retrain(
        trigger="store",
        window_days=body.window_days,
        include_base_rows=body.include_base_rows,
        force=body.force,
    )
    return ok(job, status_code=202)
