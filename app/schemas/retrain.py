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
    """A career model version on disk, as the version list shows it."""

    version: str = Field(
        description="The version's name.", examples=["retrain-20261201T100312Z-5e1f0c2a"]
    )
    active: bool = Field(description="Whether ACTIVE names it.")
    readable: bool = Field(description="False when the manifest cannot be read.")
    created_at: str | None = Field(
        default=None,
        description="When it was trained (ISO 8601, UTC).",
        examples=["2026-12-01T10:03:12+00:00"],
    )
    source: str | None = Field(
        default=None, description="What it was trained on.", examples=["csv"]
    )
    description: str | None = Field(default=None, description="One line on it, for people.")
    data_sha256: str | None = Field(default=None, description="sha256 of its training rows.")
    rows_used: int | None = Field(
        default=None, description="Training rows it learnt from.", examples=[4870]
    )
    features: list[str] = Field(
        default=[], description="Its input features, in order.", examples=[["math", "physics"]]
    )
    careers: int | None = Field(
        default=None, description="How many careers it can recommend.", examples=[24]
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict,
        description="Held-out metrics.",
        examples=[{"holdout": {"top1_accuracy": 0.61, "top3_accuracy": 0.88}}],
    )


class Activation(BaseModel):
    """What an activation or rollback did."""

    version: str = Field(
        description="The version now active.", examples=["retrain-20261201T100312Z-5e1f0c2a"]
    )
    active: bool = Field(description="True: it is the active version now.")
    previous: str | None = Field(
        description="The version active before (null if none was).",
        examples=["synthetic-20261126T044748482208Z-0c32a74b"],
    )
