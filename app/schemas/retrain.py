"""Schemas of retraining and the model registry.

A job and a version's facts are persisted records (`app.domain.records`); the routes show
them as they are (`RetrainJob`, `VersionFacts`), so they are not declared again here.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RetrainJson(BaseModel):
    """The JSON form of a retraining request."""

    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, str | float | int | bool | None]] = Field(
        min_length=1,
        max_length=1_000_000,  # the body limit binds first; MAX_TRAINING_ROWS is checked too
        description="Rows of labelled data: column -> value.",
        examples=[
            [{"math_score": 91, "physics_score": 88, "career_aspiration": "Software Engineer"}]
        ],
    )
    mapping: dict[str, str] | None = Field(
        default=None,
        description="Source column -> feature name (see `GET /api/v1/career/model`) or `label`.",
        examples=[{"math_score": "math", "physics_score": "physics", "career_aspiration": "label"}],
    )
    force: bool = Field(
        default=False, description="Promote the candidate even if it fails the quality gate."
    )


class ModelVersion(BaseModel):
    version: str
    active: bool
    readable: bool = Field(description="False when the manifest cannot be read.")
    created_at: str | None = None
    source: str | None = None
    description: str | None = None
    data_sha256: str | None = None
    rows_used: int | None = None
    features: list[str] = []
    careers: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="Held-out metrics.")


class Activation(BaseModel):
    version: str
    active: bool
    previous: str | None
