"""Career model administration: retraining jobs, the version registry, activation and rollback."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.deps import CareerDep, RetrainDep, SettingsDep
from app.api.responses import errors
from app.core.envelope import ok
from app.core.exceptions import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.core.security import require_admin_key
from app.schemas.envelope import Envelope
from app.schemas.retrain import Activation, ModelVersion, RetrainJob, RetrainJson
from app.services.career.retrain import check_mapping, parse_csv, records_frame

router = APIRouter(prefix="/career", tags=["career models"])
Admin = [Depends(require_admin_key)]

_RETRAIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "UTF-8 CSV with a header row.",
                        },
                        "mapping": {
                            "type": "string",
                            "description": "JSON object: column -> feature or `label`.",
                        },
                        "force": {"type": "boolean", "default": False},
                    },
                }
            },
            # Inline: the body is parsed by hand, so FastAPI does not list it in components.
            "application/json": {"schema": RetrainJson.model_json_schema()},
        },
    }
}


def _form_bool(value: object, field: str) -> bool:
    text = str(value or "false").strip().lower()
    if text not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
        raise InvalidInput(f"{field} must be true or false.", details=[{"field": field}])
    return text in {"true", "1", "yes", "on"}


@router.post(
    "/retrain",
    status_code=202,
    response_model=Envelope[RetrainJob],
    responses=errors(400, 401, 403, 409, 413, 415, 422),
    dependencies=Admin,
    openapi_extra=_RETRAIN_BODY,
    summary="Start a retraining job (admin)",
)
async def retrain(request: Request, settings: SettingsDep, jobs: RetrainDep) -> Response:
    """Multipart `file` (CSV) + optional `mapping` and `force`, or JSON `records`/`mapping`/`force`.

    Answers 202 with the job at once; poll `GET /api/v1/career/retrain/{job_id}`.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput(
                "A CSV `file` field is required.", details=[{"field": "file", "message": "missing"}]
            )
        data = await upload.read(settings.max_training_upload_bytes + 1)
        if len(data) > settings.max_training_upload_bytes:
            raise PayloadTooLarge(f"The file is larger than {settings.max_training_upload_mb} MB.")
        frame = await run_in_threadpool(parse_csv, data, max_rows=settings.max_training_rows)
        mapping, force, source = (
            check_mapping(form.get("mapping")),
            _form_bool(form.get("force"), "force"),
            "csv",
        )
    elif content_type.startswith("application/json"):
        raw = await request.body()
        try:  # a 20 MB body takes seconds to validate: off the event loop
            body = await run_in_threadpool(RetrainJson.model_validate_json, raw)
        except ValidationError as exc:
            raise RequestValidationError(_body_errors(exc)) from exc
        frame = await run_in_threadpool(
            records_frame, body.records, max_rows=settings.max_training_rows
        )
        mapping, force, source = body.mapping, body.force, "json"
    else:
        raise UnsupportedMediaType(
            "Send multipart/form-data (CSV file) or application/json (records)."
        )
    job = await run_in_threadpool(jobs.submit, frame, mapping=mapping, force=force, source=source)
    return ok(RetrainJob.model_validate(job), status_code=202)


def _body_errors(exc: ValidationError) -> list[Any]:
    return [
        {**e, "loc": ("body", *e["loc"])}
        for e in exc.errors(include_url=False, include_input=False)
    ]


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
    (crash, shutdown) is `failed` with the reason in `error`.
    """
    return ok(RetrainJob.model_validate(jobs.get(job_id)))


@router.get(
    "/models",
    response_model=Envelope[list[ModelVersion]],
    responses=errors(401),
    summary="Career model versions",
)
def list_models(career: CareerDep) -> Response:
    """Every version, newest first, with created_at, data hash, held-out metrics and the active flag."""
    return ok([ModelVersion.model_validate(v) for v in career.store.describe()])


@router.post(
    "/models/{version}/activate",
    response_model=Envelope[Activation],
    responses=errors(401, 403, 404, 409, 422),
    dependencies=Admin,
    summary="Activate a version or roll back (admin)",
)
def activate(version: str, career: CareerDep) -> Response:
    """Switch the served model without a restart; a version that fails its checks is refused."""
    previous = career.store.active_version()
    career.activate(version)
    return ok(Activation(version=version, active=True, previous=previous))
