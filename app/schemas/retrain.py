"""Schemas of retraining and the model registry."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.domain.enums import JobState, JobTrigger


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


class ActiveComparison(BaseModel):
    """The candidate against the model that was active, on the candidate's held-out rows."""

    version: str
    compared: bool = Field(description="False when the two could not be compared (`why`).")
    why: str | None = None
    holdout: dict[str, Any] | None = Field(
        default=None, description="The active model's metrics on the same held-out rows."
    )


class GateReport(BaseModel):
    """The quality gate's verdict on a candidate, with the numbers it was judged on."""

    passed: bool
    reasons: list[str]
    min_lift: float
    tolerance: float
    lift_over_baseline: float = Field(
        description="Held-out top-1 minus the majority baseline's top-1."
    )
    active_model: ActiveComparison | None = None


class RetrainJob(BaseModel):
    """A retraining job as the API shows it."""

    id: str
    state: JobState
    stage: str = Field(description="What the job is doing now.")
    progress: float = Field(ge=0, le=1)
    created_at: str
    updated_at: str
    source: str = Field(description="`csv` or `json` (uploads), `store` (the outcome store).")
    trigger: JobTrigger = Field(
        default="upload",
        description="`upload`, `store` (an admin's retrain on the outcome store) or `auto` "
        "(the scheduler, RETRAIN_POLICY=auto).",
    )
    reason: str | None = Field(
        default=None, description="Why an automatic job started: the threshold(s) crossed."
    )
    force: bool
    mapping: dict[str, str]
    rows: dict[str, Any] = Field(
        description="Rows received and used, unique students, every drop reason with its count, "
        "values blanked as invalid, ignored columns, rows per career."
    )
    metrics: dict[str, Any] | None = Field(
        description="Held-out top-1, top-3, macro-F1, log loss and majority baseline; cross-validation per candidate."
    )
    gate: GateReport | None = Field(
        description="Quality-gate numbers and the comparison with the active model."
    )
    reasons: list[str] = Field(description="Why the candidate was rejected or the job failed.")
    candidate_version: str | None
    base_version: str | None = Field(
        default=None,
        description="The active version when the job was submitted. The candidate is "
        "activated only if ACTIVE still names it when training ends.",
    )
    activated: bool
    not_activated_reason: str | None = Field(
        default=None,
        description="Why a candidate that passed (or was forced) was not activated: the "
        "active version changed during training, and that activation or rollback stands.",
    )
    error: str | None = Field(
        description="Why the job failed: the data, the disk, the training process gone, "
        "or the service shutting down."
    )


class JobConfig(BaseModel):
    """What a job was submitted with, for its worker: the gate's policy and the data."""

    min_lift: float
    tolerance: float
    min_rows_per_class: int
    feature_spec: list[dict[str, Any]]
    data_sha256: str


class JobRecord(RetrainJob):
    """A job's file in CAREER_MODEL_DIR/.jobs/: the job plus who works on it. Written by
    the server and the worker; a record from an older version may lack fields."""

    stage: str = "queued"
    progress: float = Field(default=0.0, ge=0, le=1)
    created_at: str = ""
    updated_at: str = ""
    source: str = "csv"
    force: bool = False
    mapping: dict[str, str] = Field(default_factory=dict)
    rows: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    gate: GateReport | None = None
    reasons: list[str] = Field(default_factory=list)
    candidate_version: str | None = None
    activated: bool = False
    error: str | None = None
    pid: int | None = None
    pid_start: str | None = None
    config: JobConfig | None = None
    # How many processes have started on this job: a server whose worker was lost (a
    # killed or evicted pod) starts it again, up to MAX_ATTEMPTS in all.
    attempts: int = 1
    # sha256 of the submission's Idempotency-Key: a repeat answers this job.
    idempotency_key: str | None = None

    def public(self) -> RetrainJob:
        return RetrainJob.model_validate(self.model_dump(include=set(RetrainJob.model_fields)))


class VersionFacts(BaseModel):
    """What a model version is: where it came from, its inputs, data and metrics."""

    version: str
    created_at: str
    source: str
    description: str
    feature_spec: list[dict[str, Any]]
    metrics: dict[str, Any]
    data: dict[str, Any]
    libraries: dict[str, str]


class Manifest(VersionFacts):
    """A model version's manifest.json: its facts, its careers and the sha256 of every
    artifact. Written by ModelStore, read by every loader."""

    model_config = ConfigDict(extra="allow")  # newer writers may add fields

    classes: list[str]
    artifacts: dict[str, str] = Field(default_factory=dict)


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
