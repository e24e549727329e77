"""The outcome batch, read and checked row by row before the service sees it.

Parsed here rather than by FastAPI so that a batch with several bad rows gets one 422
naming every one of them, schema errors and the service's own checks (unknown careers,
subjects, keywords, timestamps) together.
"""

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from app.core.handlers import validation_details
from app.schemas.outcomes import OUTCOME_EXAMPLE, OutcomeBatch, OutcomeRecord
from app.services.outcomes.service import ParsedBatch


class _Envelope(BaseModel):
    """The body around the rows; each row is checked on its own afterwards."""

    model_config = ConfigDict(extra="forbid")

    outcomes: list[Any] = Field(min_length=1)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` inlined (OpenAPI cannot resolve `#/$defs`)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                merged = {
                    **defs[ref.removeprefix("#/$defs/")],
                    **{k: v for k, v in node.items() if k != "$ref"},
                }
                return resolve(merged)
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return dict(resolve(schema))


OUTCOMES_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": inline_schema(OutcomeBatch),
                "example": OUTCOME_EXAMPLE,
            }
        },
    }
}


def parse_batch(raw: bytes, max_batch: int) -> ParsedBatch:
    """Rows checked against the schema one by one; the envelope's own errors raise at once."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
        ) from exc
    try:
        envelope = _Envelope.model_validate(document)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {**e, "loc": ("body", *e["loc"])}
                for e in exc.errors(include_url=False, include_input=False)
            ]
        ) from exc
    if len(envelope.outcomes) > max_batch:  # before any row is validated
        return ParsedBatch(records=[None] * len(envelope.outcomes))
    batch = ParsedBatch(records=[])
    for i, row in enumerate(envelope.outcomes):
        try:
            batch.records.append(OutcomeRecord.model_validate(row))
        except ValidationError as exc:
            batch.records.append(None)
            errors = [
                {**e, "loc": ("outcomes", i, *e["loc"])}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            batch.problems += [{"row": i, **detail} for detail in validation_details(errors)]
    return batch


async def outcome_batch(request: Request) -> ParsedBatch:
    """The request's outcome batch (a dependency of POST /api/v1/career/outcomes)."""
    raw = await request.body()
    limit: int = request.app.state.settings.max_outcome_batch
    return await run_in_threadpool(parse_batch, raw, limit)
