"""Service settings, read once from the environment or `.env`."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every knob of the service; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    fastapi_host: str = "0.0.0.0"
    fastapi_port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    cors_origins: CommaList = ["http://localhost:3000"]
    debug: bool = False
    log_format: Literal["text", "json"] = "text"
    docs_enabled: bool = True
    # Operations: Prometheus metrics at /metrics; how long SIGTERM waits for requests in
    # flight; OpenTelemetry export (needs requirements-otel.txt) when an endpoint is set.
    metrics_enabled: bool = True
    shutdown_grace_seconds: int = Field(default=30, ge=1, le=3600)
    otel_exporter_otlp_endpoint: str = ""
    otel_service_name: str = "skill-compass-ml"

    api_keys: CommaList = []
    admin_api_keys: CommaList = []
    # Without API_KEYS, `python -m app` listens on 127.0.0.1 whatever FASTAPI_HOST says,
    # unless this is true: an open service is never reachable from other hosts by accident.
    allow_unauthenticated_network: bool = False

    career_model_dir: Path = Path("ml_models/career")
    clip_model_cache_dir: Path = Path("ml_models/clip")
    upload_dir: Path = Path("uploads")

    # Hostile clients: a body must arrive within BODY_TIMEOUT_SECONDS of its request's
    # head (408 after); a process holds at most MAX_BODY_MB_IN_FLIGHT of bodies at once (429
    # beyond), at least the largest body a route accepts; uvicorn answers 503 once
    # MAX_CONNECTIONS connections are open, and closes idle ones after KEEP_ALIVE_SECONDS.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    max_body_mb_in_flight: float = Field(default=256.0, gt=0)
    max_connections: int = Field(default=512, ge=2)
    keep_alive_seconds: int = Field(default=5, ge=1, le=3600)

    max_json_body_kb: int = Field(default=64, ge=1)
    max_upload_mb: float = Field(default=10.0, gt=0)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_images_per_request: int = Field(default=8, ge=1, le=256)
    # What one image may cost beyond its bytes and pixels: structure no real photo has
    # (progressive scans; JPEG markers, PNG chunks, GIF blocks), and the decode worker's
    # deadline and memory. Over any of them: 422 IMAGE_TOO_COMPLEX.
    image_max_scans: int = Field(default=64, ge=1)
    image_max_chunks: int = Field(default=1024, ge=16)
    image_decode_timeout_ms: int = Field(default=2500, ge=50)
    image_decode_max_mb: int = Field(default=256, ge=32)

    max_training_upload_mb: float = Field(default=20.0, gt=0)
    max_training_rows: int = Field(default=200_000, ge=10)
    retrain_min_lift: float = Field(default=0.05, ge=0, le=1)
    retrain_tolerance: float = Field(default=0.02, ge=0, le=1)
    # Records of ended jobs (CAREER_MODEL_DIR/.jobs/<id>.json) are deleted after this long.
    retrain_job_retention_days: float = Field(default=30, gt=0)
    model_poll_seconds: float = Field(default=2.0, gt=0)
    # How often each server looks for retraining jobs whose process is gone (a killed pod)
    # to take them over or record them as failed.
    retrain_sweep_seconds: float = Field(default=15.0, gt=0)

    # Closed loop (app/services/outcomes): the outcome store, drift monitoring, automatic
    # retraining. Empty DATABASE_URL = a SQLite file in CAREER_MODEL_DIR (one host);
    # postgresql+psycopg://... for several replicas.
    database_url: str = ""
    # HMAC-SHA256 key for subject ids and idempotency keys. Empty = a random per-install key
    # kept in CAREER_MODEL_DIR/.outcome-hash-key (mode 0600), created on first use.
    outcome_hash_key: SecretStr = SecretStr("")
    max_outcome_batch: int = Field(default=1000, ge=1, le=10_000)
    outcome_retention_days: int = Field(default=730, ge=1, le=36_500)
    retrain_policy: Literal["manual", "auto"] = "manual"
    retrain_min_new_outcomes: int = Field(default=1000, ge=1)
    retrain_window_days: int = Field(default=180, ge=1, le=36_500)
    retrain_min_interval_seconds: int = Field(default=86_400, ge=0)
    retrain_include_base_rows: bool = True
    retrain_check_seconds: float = Field(default=60.0, gt=0, le=86_400)
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    monitoring_enabled: bool = True
    monitoring_window: int = Field(default=5000, ge=10, le=10_000_000)

    clip_enabled: bool = True
    clip_model_name: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    clip_model_config: Path | None = None
    clip_device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = Field(default=2, ge=1, le=256)
    # auto: every runtime that passes the parity gate is timed here and the fastest serves.
    clip_backend: Literal["auto", "torch", "onnx"] = "auto"
    clip_precision: Literal["auto", "fp32", "bf16", "int8", "fp16"] = "auto"
    # 0 = automatic: 0.995 for int8, 0.999 for the others.
    clip_min_cosine: float = Field(default=0.0, ge=0, le=1)
    # exact: decode at >= 4x the input (and 1024 px); fast: >= 2x; auto: fast where its
    # measured agreement with open_clip's transform holds (parity.FAST_MIN_COSINE).
    clip_preprocess: Literal["auto", "exact", "fast"] = "auto"
    # 0 = automatic for the four below: CPU count, 32 (CPU) or 256 (CUDA), 2 x CLIP_MAX_BATCH.
    clip_preprocess_workers: int = Field(default=0, ge=0, le=256)
    clip_max_batch: int = Field(default=0, ge=0, le=4096)
    clip_max_waiting: int = Field(default=0, ge=0)
    clip_batch_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    clip_cache_mb: float = Field(default=64.0, ge=0)
    clip_gpu_decode: bool = True
    clip_match_threshold: float = Field(default=0.25, ge=-1, le=1)
    clip_similar_threshold: float = Field(default=0.9, ge=-1, le=1)
    clip_related_threshold: float = Field(default=0.7, ge=-1, le=1)
    max_tags: int = Field(default=32, ge=1, le=1000)
    max_tag_length: int = Field(default=200, ge=1)
    max_texts_per_request: int = Field(default=64, ge=1, le=1000)
    max_text_length: int = Field(default=300, ge=1, le=100_000)

    @field_validator("cors_origins", "api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_keys", "admin_api_keys")
    @classmethod
    def _no_placeholder_keys(cls, value: list[str]) -> list[str]:
        # Example manifests once shipped REPLACE-ME keys that the service then accepted: a
        # key anyone can read in the repository is no key.
        if any("REPLACE-ME" in key.upper() for key in value):
            raise ValueError("a key is still an example placeholder (REPLACE-ME): set real keys")
        return value

    @field_validator("clip_model_config", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "Settings":
        if self.clip_related_threshold > self.clip_similar_threshold:
            raise ValueError("CLIP_RELATED_THRESHOLD must not exceed CLIP_SIMILAR_THRESHOLD")
        return self

    @model_validator(mode="after")
    def _budget_holds_the_largest_body(self) -> "Settings":
        if self.max_body_bytes_in_flight < self.largest_body_bytes:
            least = -(-self.largest_body_bytes // (1024 * 1024))
            raise ValueError(
                f"MAX_BODY_MB_IN_FLIGHT must be at least {least}, the largest body a route "
                "accepts (MAX_IMAGES_PER_REQUEST x MAX_UPLOAD_MB plus base64's third, "
                "MAX_TRAINING_UPLOAD_MB, MAX_JSON_BODY_KB): a smaller budget would refuse "
                "that body even with nothing else in flight"
            )
        return self

    @model_validator(mode="after")
    def _runtime_exists(self) -> "Settings":
        backend, precision, device = self.clip_backend, self.clip_precision, self.clip_device
        never = {("onnx", "bf16"), ("onnx", "fp16"), ("torch", "int8")}
        if (backend, precision) in never:
            raise ValueError(f"CLIP_BACKEND={backend} has no {precision} runtime")
        if device == "cuda" and (backend == "onnx" or precision in ("int8", "bf16")):
            raise ValueError("on CUDA, CLIP serves torch fp32 or fp16 only")
        if device == "cpu" and precision == "fp16":
            raise ValueError("CLIP_PRECISION=fp16 needs CUDA; on CPU use bf16 or int8")
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_training_upload_bytes(self) -> int:
        return int(self.max_training_upload_mb * 1024 * 1024)

    @property
    def max_json_body_bytes(self) -> int:
        return self.max_json_body_kb * 1024

    @property
    def image_body_bytes(self) -> int:
        """One image's share of a body: base64's third more, and multipart or JSON framing."""
        return self.max_upload_bytes * 4 // 3 + 64 * 1024

    @property
    def training_body_bytes(self) -> int:
        return self.max_training_upload_bytes + 64 * 1024

    @property
    def largest_body_bytes(self) -> int:
        """The largest body any route accepts (the served models' body limits, app/served)."""
        images = self.image_body_bytes * max(2, self.max_images_per_request)  # compare: 2
        return max(self.max_json_body_bytes, self.training_body_bytes, images)

    @property
    def max_body_bytes_in_flight(self) -> int:
        return int(self.max_body_mb_in_flight * 1024 * 1024)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings instance (tests build their own and pass it to create_app)."""
    return Settings()
