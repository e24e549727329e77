"""Records the service persists: a retraining job's file, a career model version's
manifest and a CLIP artifact's manifest.

Each is read and written by this one class everywhere (the server, the retraining worker,
the routers). The API schemas may show them (`RetrainJob`, `GateReport` and `VersionFacts`
are API components too), but these never import a schema. Files written by earlier
versions of the service must keep reading: a field added here needs a default for them.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.domain.enums import JobState, JobTrigger


class ActiveComparison(BaseModel):
    """The candidate against the model that was active, on the candidate's held-out rows."""

    version: str = Field(description="The version that was active when the candidate was judged.")
    compared: bool = Field(description="False when the two could not be compared (`why`).")
    why: str | None = Field(default=None, description="Why the two could not be compared.")
    holdout: dict[str, Any] | None = Field(
        default=None, description="The active model's metrics on the same held-out rows."
    )


class GateReport(BaseModel):
    """The quality gate's verdict on a candidate, with the numbers it was judged on."""

    passed: bool = Field(description="True when the candidate may be activated.", examples=[True])
    reasons: list[str] = Field(description="Why the gate refused the candidate (empty if passed).")
    min_lift: float = Field(
        description="The lift over the majority baseline a candidate needs (RETRAIN_MIN_LIFT).",
        examples=[0.05],
    )
    tolerance: float = Field(
        description="How much worse than the active model a candidate may be (RETRAIN_TOLERANCE).",
        examples=[0.02],
    )
    lift_over_baseline: float = Field(
        description="Held-out top-1 minus the majority baseline's top-1.", examples=[0.41]
    )
    active_model: ActiveComparison | None = Field(
        default=None, description="The candidate against the active model, when there was one."
    )


class RetrainJob(BaseModel):
    """A retraining job: the fields every reader sees (the API shows exactly these)."""

    id: str = Field(description="The job's id: 16 hex digits.", examples=["3f9c2a7d41b8e605"])
    state: JobState = Field(description="Where the job is in its life cycle.", examples=["running"])
    stage: str = Field(description="What the job is doing now.", examples=["training"])
    progress: float = Field(
        ge=0, le=1, description="Share of the job done, 0 to 1.", examples=[0.4]
    )
    created_at: str = Field(
        description="When the job was submitted (ISO 8601, UTC).",
        examples=["2026-12-01T10:00:00+00:00"],
    )
    updated_at: str = Field(
        description="When the job's record last changed (ISO 8601, UTC).",
        examples=["2026-12-01T10:01:30+00:00"],
    )
    source: str = Field(
        description="`csv` or `json` (uploads), `store` (the outcome store).", examples=["csv"]
    )
    trigger: JobTrigger = Field(
        default="upload",
        description="`upload`, `store` (an admin's retrain on the outcome store) or `auto` "
        "(the scheduler, RETRAIN_POLICY=auto).",
    )
    reason: str | None = Field(
        default=None, description="Why an automatic job started: the threshold(s) crossed."
    )
    force: bool = Field(description="Whether the candidate is promoted even if the gate fails.")
    mapping: dict[str, str] = Field(
        description="Source column -> feature name or `label`, as submitted.",
        examples=[{"math_score": "math", "career_aspiration": "label"}],
    )
    rows: dict[str, Any] = Field(
        description="Rows received and used, unique students, every drop reason with its count, "
        "values blanked as invalid, ignored columns, rows per career.",
        examples=[
            {
                "rows_received": 5000,
                "rows_used": 4870,
                "unique_students": 4870,
                "rows_dropped": {"missing label": 130},
                "ignored_columns": ["email"],
            }
        ],
    )
    metrics: dict[str, Any] | None = Field(
        description="Held-out top-1, top-3, macro-F1, log loss and majority baseline; "
        "cross-validation per candidate.",
        examples=[{"holdout": {"top1_accuracy": 0.61, "top3_accuracy": 0.88, "log_loss": 1.42}}],
    )
    gate: GateReport | None = Field(
        description="Quality-gate numbers and the comparison with the active model."
    )
    reasons: list[str] = Field(description="Why the candidate was rejected or the job failed.")
    candidate_version: str | None = Field(
        description="The version the job trained (null until it is written).",
        examples=["retrain-20261201T100312Z-5e1f0c2a"],
    )
    base_version: str | None = Field(
        default=None,
        description="The active version when the job was submitted. The candidate is "
        "activated only if ACTIVE still names it when training ends.",
    )
    activated: bool = Field(description="Whether the candidate became the active version.")
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


def _older_record_defaults() -> dict[str, Any]:
    """What a job file written by an earlier version may lack (fresh containers each time)."""
    return {
        "stage": "queued",
        "progress": 0.0,
        "created_at": "",
        "updated_at": "",
        "source": "csv",
        "force": False,
        "mapping": {},
        "rows": {},
        "metrics": None,
        "gate": None,
        "reasons": [],
        "candidate_version": None,
        "activated": False,
        "error": None,
    }


class JobRecord(RetrainJob):
    """A job's file in CAREER_MODEL_DIR/.jobs/: the job plus who works on it. Written by
    the server and the worker."""

    pid: int | None = None
    pid_start: str | None = None
    config: JobConfig | None = None
    # How many processes have started on this job: a server whose worker was lost (a
    # killed or evicted pod) starts it again, up to MAX_ATTEMPTS in all.
    attempts: int = 1
    # sha256 of the submission's Idempotency-Key: a repeat answers this job.
    idempotency_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_record(cls, data: Any) -> Any:
        """A record from an older version may lack fields the API requires of a job."""
        if isinstance(data, dict):
            return _older_record_defaults() | data
        return data

    def public(self) -> RetrainJob:
        """The job without its worker's fields, as the API shows it."""
        return RetrainJob.model_validate(self.model_dump(include=set(RetrainJob.model_fields)))


class VersionFacts(BaseModel):
    """What a model version is: where it came from, its inputs, data and metrics."""

    version: str = Field(
        description="The version's name: its source, a UTC timestamp and a short hash.",
        examples=["synthetic-20261126T044748482208Z-0c32a74b"],
    )
    created_at: str = Field(description="When the version was trained (ISO 8601, UTC).")
    source: str = Field(description="What it was trained on: `synthetic`, `csv`, `json`, `store`.")
    description: str = Field(description="One line on the version, for people.")
    feature_spec: list[dict[str, Any]] = Field(
        description="The model's inputs in order: name, group, kind, bounds, description."
    )
    metrics: dict[str, Any] = Field(
        description="Held-out and cross-validated metrics of the version."
    )
    data: dict[str, Any] = Field(
        description="The training data: sha256, rows used, students, rows per career."
    )
    libraries: dict[str, str] = Field(
        description="Library versions it was trained with (scikit-learn, numpy, ...)."
    )


class Manifest(VersionFacts):
    """A model version's manifest.json: its facts, its careers and the sha256 of every
    artifact. Written by the version registry (`bundle.VersionRegistry`), read by every loader."""

    model_config = ConfigDict(extra="allow")  # newer writers may add fields

    classes: list[str]
    artifacts: dict[str, str] = Field(default_factory=dict)


class ArtifactManifest(BaseModel):
    """`manifest.json` of one CLIP artifact (an ONNX export, the probe reference, a
    remembered runtime choice) under CLIP_MODEL_CACHE_DIR: what it was built from and the
    sha256 of each of its files. What the builder of each kind adds (`meta`, `opset`,
    `recipe`, `chosen`, ...) follows in `extras`, as written."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format: int
    kind: str
    model: str
    weights_sha256: str
    variant: str = ""
    versions: dict[str, str]
    created_at: str
    build_seconds: float
    files: dict[str, str]

    @property
    def extras(self) -> dict[str, Any]:
        """The builder's own fields."""
        return dict(self.model_extra or {})
