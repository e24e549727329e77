"""The career model registry: retraining jobs, versions, activation and rollback."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import CareerDep, RetrainDep
from app.api.responses import errors
from app.api.uploads import RETRAIN_BODY, RetrainUpload, retrain_upload
from app.core.envelope import ok
from app.core.security import require_admin_key
from app.domain.records import RetrainJob
from app.schemas.envelope import Envelope
from app.schemas.retrain import Activation, ModelVersion

router = APIRouter(prefix="/career", tags=["career models"])
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Names this submission: a repeat with the same key and data answers the "
        "job the first created (409 with other data).",
    ),
]
Admin = [Depends(require_admin_key)]


@router.post(
    "/retrain",
    status_code=202,
    response_model=Envelope[RetrainJob],
    responses=errors(400, 401, 403, 409, 413, 415, 422),
    dependencies=Admin,
    openapi_extra=RETRAIN_BODY,
    summary="Start a retraining job (admin)",
)
async def retrain(
    upload: Annotated[RetrainUpload, Depends(retrain_upload)],
    jobs: RetrainDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Multipart `file` (CSV) + optional `mapping` and `force`, or JSON `records`/`mapping`/`force`.

    Answers 202 with the job at once; poll `GET /api/v1/career/retrain/{job_id}`. With an
    `Idempotency-Key`, a repeat of the submission (a retry after a lost answer) answers the
    job the first one created instead of starting another.
    """
    job = await run_in_threadpool(
        jobs.submit,
        upload.frame,
        mapping=upload.mapping,
        force=upload.force,
        source=upload.source,
        idempotency_key=idempotency_key,
    )
    return ok(job, status_code=202)


@router.get(
    "/retrain/{job_id}",
    response_model=Envelope[RetrainJob],
    responses=errors(401, 403, 404),
    dependencies=Admin,
    summary="Retraining job status (admin)",
)
def retrain_status(job_id: str, jobs: RetrainDep) -> Response:
    """State, progress, row counts, metrics, candidate version and every reason.

    A job that succeeded may still have `activated: false`: the active version changed while
    it trained (`not_activated_reason`), and that change wins. A job whose process is gone
    (a killed pod) is started again by a server sharing the model directory (its
    `reasons` say so), or, when it cannot be, `failed` with the reason in `error`.
    """
    return ok(jobs.get(job_id))


@router.get(
    "/models",
    response_model=Envelope[list[ModelVersion]],
    responses=errors(401),
    summary="Career model versions",
)
def list_models(career: CareerDep) -> Response:
    """Every version, newest first, with created_at, data hash, held-out metrics and the active flag."""
    return ok(career.versions())


@router.post(
    "/models/{version}/activate",
    response_model=Envelope[Activation],
    responses=errors(401, 403, 404, 409, 422),
    dependencies=Admin,
    summary="Activate a version or roll back (admin)",
)
def activate(version: str, career: CareerDep) -> Response:
    """Switch the served model without a restart; a version that fails its checks is refused."""
    return ok(career.activate_version(version))
