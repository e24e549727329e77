"""`python -m app` without API_KEYS listens on loopback unless told otherwise."""

from typing import Any

import pytest

from app.__main__ import listen_host
from app.config import Settings

pytestmark = pytest.mark.unit


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "ml.internal"])
def test_without_keys_a_network_host_becomes_loopback_with_a_warning(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert listen_host(settings(fastapi_host=host)) == "127.0.0.1"
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert f"not on FASTAPI_HOST={host}" in warning.getMessage()
    assert "ALLOW_UNAUTHENTICATED_NETWORK=true" in warning.getMessage()


@pytest.mark.parametrize(
    "values",
    [
        {"api_keys": "gateway-key"},
        {"allow_unauthenticated_network": True},
        {"api_keys": "gateway-key", "allow_unauthenticated_network": True},
    ],
)
def test_keys_or_the_opt_in_keep_the_host(
    values: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    assert listen_host(settings(fastapi_host="0.0.0.0", **values)) == "0.0.0.0"
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_stay_as_they_are(host: str, caplog: pytest.LogCaptureFixture) -> None:
    assert listen_host(settings(fastapi_host=host)) == host
    assert not caplog.records


def test_the_opt_in_is_off_by_default() -> None:
    assert Settings.model_fields["allow_unauthenticated_network"].default is False
