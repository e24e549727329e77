"""Service settings, read once from the environment or `.env`."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
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

    api_keys: CommaList = []

    career_model_dir: Path = Path("research/models")
    clip_model_cache_dir: Path = Path("ml_models/clip")
    upload_dir: Path = Path("uploads")

    max_json_body_kb: int = Field(default=64, ge=1)

    @field_validator("cors_origins", "api_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def max_json_body_bytes(self) -> int:
        return self.max_json_body_kb * 1024


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings instance (tests build their own and pass it to create_app)."""
    return Settings()
