"""The uniform response envelope shared by every route, success or error."""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

DataT = TypeVar("DataT")


class Meta(BaseModel):
    """Facts about the request itself, present on every response."""

    request_id: str = Field(
        description="The caller's X-Request-ID, or one made here; also sent as that header.",
        examples=["3f1c2a9e6b7d4e0f"],
    )
    api_version: str = Field(default="v1", description="The API's version.", examples=["v1"])
    duration_ms: float = Field(examples=[3.2], description="Time spent in the service so far.")


class ErrorBody(BaseModel):
    """What went wrong, in a stable code and a human sentence."""

    code: str = Field(examples=["VALIDATION_ERROR"], description="Stable UPPER_SNAKE error code.")
    message: str = Field(
        description="A sentence for people; never a stack trace.",
        examples=["The request body has 1 invalid field."],
    )
    details: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per-field problems or extra facts; empty when there are none.",
        examples=[[{"field": "academic_scores.math", "message": "must be at most 100"}]],
    )


class Envelope(BaseModel, Generic[DataT]):
    """Every response body: `data` on success, `error` on failure, `meta` always."""

    success: bool = Field(description="True when the request succeeded.", examples=[True])
    data: DataT | None = Field(default=None, description="The answer; null on failure.")
    error: ErrorBody | None = Field(default=None, description="What went wrong; null on success.")
    meta: Meta = Field(description="Facts about the request itself.")


class ErrorEnvelope(Envelope[None]):
    """An error response as documented in OpenAPI."""

    success: bool = Field(default=False, description="Always false here.", examples=[False])
