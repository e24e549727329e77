"""Schemas of the closed loop: outcomes in, their statistics, monitoring and store retrains."""

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.schemas.career import PredictRequest

Identifier = Annotated[str, Field(min_length=1, max_length=200)]
VERSION = "synthetic-20261126T044748482208Z-0c32a74b"  # in examples


class OutcomeRecord(BaseModel):
    """One student's career choice, as the platform observed it."""

    model_config = ConfigDict(extra="forbid")

    student: PredictRequest = Field(
        description="The student's features, exactly as `POST /api/v1/career/predict` takes "
        "them (checked by the same rules against the active model)."
    )
    career: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description="The career chosen: a catalog id or name (`GET /api/v1/career/careers`).",
        examples=["software_engineer"],
    )
    observed_at: AwareDatetime = Field(
        description="When the choice was observed: ISO 8601 with a time zone, not in the "
        "future, not older than OUTCOME_RETENTION_DAYS.",
        examples=["2026-11-30T09:15:00Z"],
    )
    subject_id: Identifier | None = Field(
        default=None,
        description="The gateway's pseudonymous id of the student, for erasure. Stored only "
        "as an HMAC-SHA256 under OUTCOME_HASH_KEY.",
    )
    idempotency_key: Identifier | None = Field(
        default=None,
        description="A record whose key was stored before is skipped (counted in "
        "`duplicates`), so a retried batch is not counted twice. Stored only as a keyed hash.",
    )


class OutcomeBatch(BaseModel):
    """A batch of outcomes: every record is stored, or (when any is invalid) none."""

    model_config = ConfigDict(extra="forbid")

    outcomes: list[OutcomeRecord] = Field(
        min_length=1,
        # The ceiling MAX_OUTCOME_BATCH may be set to; the setting itself is the limit.
        max_length=10_000,
        description="At most MAX_OUTCOME_BATCH records (default 1,000); 413 beyond.",
    )


OUTCOME_EXAMPLE: dict[str, Any] = {
    "outcomes": [
        {
            "student": {
                "academic_scores": {"math": 92, "physics": 85, "computer_science": 95},
                "interests": {"keywords": ["coding"]},
            },
            "career": "software_engineer",
            "observed_at": "2026-11-30T09:15:00Z",
            "subject_id": "gw-7f3a9c",
            "idempotency_key": "batch-2026-11-30-0001",
        }
    ]
}


class OutcomeIngest(BaseModel):
    """What a batch of outcomes did to the store."""

    stored: int = Field(description="Records stored now.", examples=[998])
    duplicates: int = Field(
        description="Records skipped: their idempotency key was stored before.", examples=[2]
    )
    model_version: str = Field(
        description="The active version that validated and scored them.", examples=[VERSION]
    )


class WeekCount(BaseModel):
    """Outcomes observed in one week."""

    week: str = Field(
        description="Monday of the ISO week (UTC) the outcomes were observed in.",
        examples=["2026-11-23"],
    )
    count: int = Field(description="Outcomes observed that week.", examples=[412])


class OutcomeStats(BaseModel):
    """What the outcome store holds."""

    total: int = Field(description="Outcomes stored.", examples=[5210])
    by_career: dict[str, int] = Field(
        description="Career -> outcomes, most first.",
        examples=[{"software_engineer": 640, "nurse": 512}],
    )
    by_week: list[WeekCount] = Field(description="Outcomes per observed week, oldest first.")
    new_since_active: int = Field(
        description="Outcomes received since the active model was trained (its created_at).",
        examples=[1480],
    )
    active_version: str | None = Field(description="The active model version.", examples=[VERSION])
    active_trained_at: str | None = Field(
        description="When the active version was trained (ISO 8601, UTC).",
        examples=["2026-11-26T04:47:48+00:00"],
    )
    oldest_observed_at: str | None = Field(
        description="The oldest outcome's observed_at (null when empty).",
        examples=["2026-09-01T08:00:00+00:00"],
    )
    newest_observed_at: str | None = Field(
        description="The newest outcome's observed_at (null when empty).",
        examples=["2026-11-30T09:15:00+00:00"],
    )
    retention_days: int = Field(
        description="OUTCOME_RETENTION_DAYS: older outcomes are deleted.", examples=[730]
    )


class Erasure(BaseModel):
    """What erasing one subject's outcomes did."""

    deleted: int = Field(
        description="Outcomes deleted; 0 when the subject has none (no error).", examples=[3]
    )


class DriftReport(BaseModel):
    """Population stability (PSI) of the window's inputs and answers against training."""

    features: dict[str, float | None] = Field(
        description="Feature -> PSI of its values in the window against the training "
        "reference; null until the window holds `min_samples` values of it."
    )
    max_psi: float | None = Field(description="The largest feature PSI.", examples=[0.08])
    max_feature: str | None = Field(
        description="The feature with the largest PSI.", examples=["math"]
    )
    predictions_psi: float | None = Field(description="PSI of the top-1 careers answered.")
    threshold: float = Field(description="DRIFT_PSI_THRESHOLD.")
    drifting: bool = Field(description="max_psi or predictions_psi at or above the threshold.")


class MonitoringWindow(BaseModel):
    """The requests drift is measured on."""

    size: int = Field(description="MONITORING_WINDOW: the last N predict/analyze requests.")
    requests: int = Field(description="Requests in the window now (this server process).")
    min_samples: int = Field(description="Values a PSI needs before it is reported.")


class LiveQuality(BaseModel):
    """The active version measured on real outcomes."""

    model_version: str | None = Field(description="The version measured.", examples=[VERSION])
    outcomes: int = Field(description="Outcomes scored by this version on arrival.")
    top1_accuracy: float | None = Field(
        description="Share of outcomes whose career was its top-1 answer.", examples=[0.58]
    )
    log_loss: float | None = Field(
        description="Mean log loss over the outcomes whose career the model knows."
    )
    error: str | None = Field(default=None, description="Why there are no numbers (store down).")


class Monitoring(BaseModel):
    """Drift and live quality of the active career model."""

    enabled: bool = Field(description="MONITORING_ENABLED.")
    model_version: str | None = Field(description="The active version.", examples=[VERSION])
    window: MonitoringWindow = Field(description="The window of recent requests and its size.")
    drift: DriftReport = Field(description="Drift of inputs and answers.")
    live_quality: LiveQuality = Field(description="Quality on reported outcomes.")
    retrain_policy: str = Field(description="RETRAIN_POLICY: manual or auto.")


class StoreRetrainRequest(BaseModel):
    """A retraining job on the outcome store (all fields optional)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"window_days": 180, "include_base_rows": True, "force": False}]
        },
    )

    window_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Outcomes observed in the last N days; default RETRAIN_WINDOW_DAYS.",
    )
    include_base_rows: bool | None = Field(
        default=None,
        description="Add the rows of the version it starts from when they can be rebuilt "
        "exactly (the synthetic reference set); default RETRAIN_INCLUDE_BASE_ROWS.",
    )
    force: bool = Field(
        default=False, description="Promote the candidate even if it fails the quality gate."
    )
