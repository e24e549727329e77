"""Schemas of the health probes."""

from typing import Literal

from pydantic import BaseModel, Field


class ModelHealth(BaseModel):
    state: Literal["loaded", "unavailable", "disabled"]
    version: str | None = Field(description="Model version or weights tag.")
    load_seconds: float | None
    error: str | None = Field(description="Why the model is not loaded, when it is not.")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str = Field(description="Service version.")
    uptime_seconds: float
    models: dict[str, ModelHealth]


class Liveness(BaseModel):
    status: Literal["alive"]


class Readiness(BaseModel):
    ready: bool
    reasons: list[str] = Field(description="Why not ready; empty when ready.")
