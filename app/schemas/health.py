"""Schemas of the health probes."""

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.domain.enums import Backend, DecodeMode, ModelState, Precision


class StatusPart(BaseModel):
    """A part of a model's /health status, built by the service that owns it: frozen, and
    an undeclared field is an error (never dropped)."""

    # Serialised, a default is always written: the schema says so (required fields).
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


class ClipCandidate(StatusPart):
    backend: Backend = Field(description="`torch` or `onnx` (ONNX Runtime).")
    precision: Precision = Field(description="`fp32`, `bf16`, `fp16` or `int8`.")
    recipe: str | None = Field(
        default=None,
        description="int8 only: the quantisation recipe (`u8s8`, `u8s8-per-channel`, "
        "`u8s8-reduce-range`, `u8u8`, `u8u8-per-channel`).",
    )
    threshold: float | None = Field(description="Parity gate: the min cosine it needed.")
    min_cosine: float | None = Field(
        description="Lowest cosine to torch fp32 over the probe images and texts."
    )
    same_best_tag: bool | None = Field(
        description="Every probe image with a clear best tag gets the one torch fp32 picks."
    )
    clear_probes: int | None = Field(
        description="Probe images whose best tag leads by >= 0.5 logits under torch fp32 "
        "(the others are ties; a random-init model has none)."
    )
    passed: bool = Field(description="Passed the parity gate, so it may serve.")
    ms_per_image: dict[str, float] | None = Field(
        description="Image tower ms per image by batch size, measured here (auto only), in "
        "the rounds that timed every passing candidate together on TORCH_THREADS threads. "
        "The winner's thread count is timed afterwards, in rounds of its own: its outcome "
        "gives those figures."
    )
    threads: int | None = Field(
        default=None,
        description="Intra-op threads it ran with: TORCH_THREADS, or 1 for the ONNX winner "
        "where one thread measured faster (a small model spends more on waking threads than "
        "they save).",
    )
    error: str | None = Field(description="Why it was skipped, failed or dropped.")
    outcome: str | None = Field(
        default=None, description="Why it serves, or why it does not (skipped, failed, slower)."
    )


class ClipPreprocess(StatusPart):
    mode: DecodeMode = Field(
        description="What preprocesses images: `exact` decodes JPEGs at least at 4x the input "
        "(and 1024 px), `fast` at the smallest DCT scale that keeps `factor` x the input."
    )
    setting: Literal["auto", "exact", "fast"] = Field(description="CLIP_PREPROCESS.")
    factor: int | None = Field(
        default=None,
        description="`fast` decodes the shorter side to >= this many times the input: the "
        "smallest factor (1, 2, 4) measured to agree with open_clip's transform.",
    )
    min_cosine: float | None = Field(
        description="Fast against open_clip's transform: lowest embedding cosine over the "
        "parity sets (measured at start-up, on this model)."
    )
    same_answers: bool | None = Field(
        description="Fast gives the same best tag as open_clip's transform on every probe."
    )


ChosenBy = Literal["measured", "preference", "remembered"]
"""How the serving CLIP runtime was chosen (ClipRuntime.chosen_by)."""


class ClipRuntime(StatusPart):
    backend: Backend = Field(description="What runs the forward passes.")
    precision: Precision = Field(description="The number format it runs in.")
    recipe: str | None = Field(default=None, description="int8: the quantisation recipe.")
    chosen_by: ChosenBy = Field(
        description="`measured`: the fastest passing candidate, timed at this start; "
        "`preference`: the first to pass under a forced setting; `remembered`: this kind of "
        "machine's earlier measurement, gated again against the stored reference."
    )
    min_cosine: float | None = Field(description="The serving runtime's parity to torch fp32.")
    ms_per_image: dict[str, float] | None = Field(
        description="Its ms per image by batch size, as its candidate entry gives it; null "
        "when forced (no timing)."
    )
    threads: int = Field(
        description="Intra-op threads of each forward pass: TORCH_THREADS, or 1 where the "
        "ONNX winner measured faster on one thread."
    )
    candidates: list[ClipCandidate] = Field(
        description="Every runtime considered (CLIP_BACKEND, CLIP_PRECISION), in order."
    )
    device: str = Field(description="`cpu` or `cuda`.")
    preprocess: ClipPreprocess | None = Field(
        default=None, description="Image preprocessing and its measured agreement."
    )
    gpu_jpeg_decode: bool = Field(description="JPEGs are decoded on the GPU in batches.")


class ClipBatching(StatusPart):
    max_batch: int = Field(description="CLIP_MAX_BATCH: most rows in one forward pass.")
    wait_ms: float = Field(description="Longest wait for more rows now (CLIP_BATCH_WAIT_MS).")
    wait_auto: bool = Field(description="The wait follows the last forward pass (0 = auto).")
    batches: int = Field(description="Image forward passes so far.")
    images: int = Field(description="Images embedded by those passes.")
    mean_batch_size: float = Field(description="images / batches.")
    text_batches: int = Field(description="Text forward passes so far.")
    texts: int = Field(description="Texts embedded by those passes.")


class ClipCache(StatusPart):
    hits: int = Field(description="Images answered from the cache.")
    misses: int = Field(description="Images that had to be embedded.")
    size_mb: float = Field(description="Memory held, at most CLIP_CACHE_MB.")
    entries: int = Field(description="Embeddings held.")


class CareerPredictor(StatusPart):
    kind: Literal["compiled", "sklearn"] = Field(
        description="`compiled`: the numpy predictor verified against sklearn at load; "
        "`sklearn`: sklearn's own predict_proba (the compiler refused or does not know the model)."
    )
    model: str | None = Field(
        description="The classifier the training chose, e.g. `random_forest`."
    )
    problem: str | None = Field(
        description="Why the compiled predictor is not used, when it was refused."
    )


class ModelStatus(StatusPart):
    """What every served model reports in /health. Each model's own type adds its fields
    and a `kind` that tells them apart; the service builds it, and /health shows it as
    built (an undeclared field is an error, never dropped)."""

    kind: str = Field(description="Which model's status this is.")
    state: ModelState = Field(
        description="`loading`, `loaded`, `unavailable` (see `error`) or `disabled`."
    )
    version: str | None = Field(description="Model version or weights tag.")
    load_seconds: float | None = Field(description="How long the last load took.")
    error: str | None = Field(description="Why the model is not loaded, when it is not.")


class CareerStatus(ModelStatus):
    kind: Literal["career"] = Field(default="career", description="Which model's status this is.")
    predictor: CareerPredictor | None = Field(
        default=None, description="How the career model predicts, once loaded."
    )


class ClipStatus(ModelStatus):
    kind: Literal["clip"] = Field(default="clip", description="Which model's status this is.")
    runtime: ClipRuntime | None = Field(default=None, description="CLIP, once loaded.")
    batching: ClipBatching | None = Field(default=None, description="CLIP's dynamic batcher.")
    cache: ClipCache | None = Field(
        default=None, description="CLIP's image-embedding cache (CLIP_CACHE_MB)."
    )
    preprocess_workers: int | None = Field(
        default=None, description="CLIP_PREPROCESS_WORKERS: decode worker processes."
    )
    decode_workers_replaced: int | None = Field(
        default=None,
        description="Decode workers killed past IMAGE_DECODE_TIMEOUT_MS or lost over "
        "IMAGE_DECODE_MAX_MB (or a crash), each replaced; their images answered 422.",
    )
    in_flight: int | None = Field(
        default=None, description="CLIP images and texts admitted and not yet answered."
    )
    max_waiting: int | None = Field(default=None, description="CLIP_MAX_WAITING (the budget).")
    overloaded: int | None = Field(default=None, description="CLIP requests refused with 429.")


class HealthBase(BaseModel):
    status: Literal["ok", "loading", "degraded"] = Field(
        description="`ok`: every enabled model loaded; `loading`: one still loading; "
        "`degraded`: one could not load (its `error` says why)."
    )
    version: str = Field(description="Service version.")
    uptime_seconds: float = Field(description="Seconds since the process started.")


def health_schema(statuses: Sequence[type[ModelStatus]]) -> type[HealthBase]:
    """/health's answer for these served models: `models` maps each name to one of their
    status types, told apart by `kind`."""
    one: Any = statuses[0] if len(statuses) == 1 else Union[tuple(statuses)]  # noqa: UP007
    if len(statuses) > 1:
        one = Annotated[one, Field(discriminator="kind")]
    models = Field(description="Each served model by name; `kind` says which status type.")
    return create_model("Health", __base__=HealthBase, models=(dict[str, one], models))


class Liveness(BaseModel):
    status: Literal["alive"] = Field(description="The process answers.")


class Readiness(BaseModel):
    ready: bool = Field(description="Every model asked for is loaded.")
    reasons: list[str] = Field(description="Why not ready; empty when ready.")
