"""Uploads: where multipart files are spooled, and the retraining upload, parsed from the
request before the service sees it.

Multipart (a CSV `file`, optional `mapping` and `force` fields) or JSON (`records`,
`mapping`, `force`): either way the service gets a table of raw values, a mapping and a flag.
"""

import errno
import logging
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import Any, Literal

import pandas as pd
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette import formparsers
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.deps import SettingsDep
from app.core.context import upload_dir_var
from app.core.exceptions import (
    AppError,
    InvalidInput,
    PayloadTooLarge,
    StorageFailed,
    StorageFull,
    UnsupportedMediaType,
)
from app.schemas.retrain import RetrainJson
from app.services.career.tables import check_mapping, parse_csv, records_frame
from app.utils.text import parse_bool

logger = logging.getLogger(__name__)

# Disk-full errnos: the volume has no room (or the user's quota is spent).
_FULL = {errno.ENOSPC, errno.EDQUOT}


def storage_error(exc: OSError, where: str) -> AppError:
    """Our own disk failing, as the domain error it is (never the caller's 4xx), logged
    with its cause: only the log names the directory."""
    logger.error("cannot write %s: %s: %s", where, type(exc).__name__, exc)
    if exc.errno in _FULL:
        return StorageFull(
            "The service has no disk space left for this upload; retry later.", retry_after=30
        )
    return StorageFailed("The service could not store this upload.")


class UploadSpool(SpooledTemporaryFile[bytes]):
    """Starlette's spool for one multipart file (memory up to 1 MB, then a file), in the
    serving app's UPLOAD_DIR: a volume sized for uploads, apart from the /tmp that
    libraries use."""

    def __init__(self, max_size: int = 0) -> None:
        super().__init__(max_size=max_size, dir=upload_dir_var.get())

    # Rolling over to a file (creating it) and writing or flushing to it can fail on our
    # side: permissions, a missing directory, a full disk. The multipart parser would
    # report any exception as a body that cannot be decoded (a 422).
    def rollover(self) -> None:
        try:
            super().rollover()
        except OSError as exc:
            raise _spool_error(exc) from exc

    def write(self, s: Any) -> int:
        try:
            return super().write(s)
        except OSError as exc:
            raise _spool_error(exc) from exc

    def seek(self, *args: Any) -> int:
        try:
            return super().seek(*args)
        except OSError as exc:  # a buffered write reaching the full disk only now
            raise _spool_error(exc) from exc


def _spool_error(exc: OSError) -> AppError:
    return storage_error(exc, f"the upload spool in UPLOAD_DIR {upload_dir_var.get()}")


def spool_uploads_in_upload_dir() -> None:
    """Make Starlette's multipart parser spool into the request's UPLOAD_DIR.

    Starlette offers no setting for the spool's directory; its parser creates the spool
    through this module-level name, which is the narrowest place to choose it (setting
    tempfile.tempdir instead moved every library's temporary files too). The directory
    is read per request from the request middleware's context, so apps with different
    settings in one process (tests) each spool into their own.
    """
    formparsers.SpooledTemporaryFile = UploadSpool  # type: ignore[misc,assignment]


# The OpenAPI request body of the retrain route: the body is parsed here, not by FastAPI.
RETRAIN_BODY = {
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
            # Inline: FastAPI does not list a hand-parsed body in components.
            "application/json": {"schema": RetrainJson.model_json_schema()},
        },
    }
}


@dataclass(frozen=True)
class RetrainUpload:
    frame: pd.DataFrame
    mapping: dict[str, str] | None
    force: bool
    source: Literal["csv", "json"]


async def retrain_upload(request: Request, settings: SettingsDep) -> RetrainUpload:
    """The upload as a table, a mapping and `force`; 4xx for anything unreadable."""
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
        force = _form_bool(form.get("force"), "force")
        return RetrainUpload(frame, check_mapping(form.get("mapping")), force, "csv")
    if content_type.startswith("application/json"):
        raw = await request.body()
        try:  # validating a large body takes a while: off the event loop
            body = await run_in_threadpool(RetrainJson.model_validate_json, raw)
        except ValidationError as exc:
            raise RequestValidationError(_body_errors(exc)) from exc
        frame = await run_in_threadpool(
            records_frame, body.records, max_rows=settings.max_training_rows
        )
        return RetrainUpload(frame, body.mapping, body.force, "json")
    raise UnsupportedMediaType("Send multipart/form-data (CSV file) or application/json (records).")


def _form_bool(value: object, field: str) -> bool:
    parsed = parse_bool(str(value or "false"))
    if parsed is None:
        raise InvalidInput(f"{field} must be true or false.", details=[{"field": field}])
    return parsed


def _body_errors(exc: ValidationError) -> list[Any]:
    return [
        {**e, "loc": ("body", *e["loc"])}
        for e in exc.errors(include_url=False, include_input=False)
    ]
