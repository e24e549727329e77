"""Settings: parsing, and documentation that stays in step with the code."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.main import create_app
from app.served import SERVED
from app.served.contract import body_limit

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


@pytest.mark.parametrize("document", [".env.example", "docs/configuration.md"])
def test_every_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in text]
    assert not missing, f"{document} does not mention {missing}"


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"max_images_per_request": 1},
        {"max_training_upload_mb": 200, "max_body_mb_in_flight": 300},
        {"max_json_body_kb": 150_000, "max_body_mb_in_flight": 200},
    ],
)
def test_largest_body_is_the_largest_route_limit(values: dict[str, Any]) -> None:
    settings = Settings(_env_file=None, clip_enabled=False, **values)  # type: ignore[call-arg]
    app = create_app(settings)
    limit = body_limit(settings, SERVED)
    paths = list(app.openapi()["paths"])
    assert "/api/v1/clip/compare" in paths
    assert max(limit(path) for path in paths) == settings.largest_body_bytes


def test_the_body_budget_must_hold_the_largest_body() -> None:
    with pytest.raises(ValidationError, match="MAX_BODY_MB_IN_FLIGHT must be at least 108"):
        Settings(_env_file=None, max_body_mb_in_flight=100)  # type: ignore[call-arg]
    # 20 images of 10 MiB, base64: 268 MiB, over the default budget of 256.
    with pytest.raises(ValidationError, match="at least 268"):
        Settings(_env_file=None, max_images_per_request=20)  # type: ignore[call-arg]
    assert Settings(_env_file=None, max_body_mb_in_flight=108).max_body_bytes_in_flight == (
        108 * 1024 * 1024
    )


@pytest.mark.parametrize("field", ["api_keys", "admin_api_keys"])
def test_placeholder_keys_from_an_example_are_refused(field: str) -> None:
    """The example Secret's REPLACE-ME-admin-key was accepted as an admin key."""
    with pytest.raises(ValidationError, match="REPLACE-ME"):
        Settings(_env_file=None, **{field: "real-key,REPLACE-ME-admin-key"})  # type: ignore[arg-type]
    assert Settings(_env_file=None, **{field: "k1,k2"}).model_dump()[field] == ["k1", "k2"]  # type: ignore[arg-type]
