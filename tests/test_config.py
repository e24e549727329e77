"""Settings: parsing, and documentation that stays in step with the code."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_comma_lists_and_empty_values() -> None:
    s = Settings(
        _env_file=None,
        cors_origins="https://a.test, https://b.test",
        api_keys="",
        clip_model_config="",
    )  # type: ignore[call-arg]
    assert s.cors_origins == ["https://a.test", "https://b.test"]
    assert s.api_keys == [] and s.clip_model_config is None


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "k1,k2")
    monkeypatch.setenv("FASTAPI_PORT", "9001")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.api_keys == ["k1", "k2"] and s.fastapi_port == 9001


def test_unsafe_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, fastapi_port=0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(_env_file=None, clip_related_threshold=0.95, clip_similar_threshold=0.9)  # type: ignore[call-arg]


@pytest.mark.parametrize("document", [".env.example", "README.md"])
def test_every_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in text]
    assert not missing, f"{document} does not mention {missing}"
