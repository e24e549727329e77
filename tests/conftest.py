"""Shared fixtures: settings isolated from the developer's .env, a copied model dir, clients."""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from benchmarks.common import free_port

# The outcome store's database fixtures (SQLite and PostgreSQL), for every test module.
pytest_plugins = ["tests.databases"]

FIXTURES = Path(__file__).parent / "fixtures"
CAREER_MODELS = FIXTURES / "career_models"
TINY_CLIP = {
    "clip_enabled": True,
    "clip_model_name": "tiny-clip",
    "clip_pretrained": str(FIXTURES / "clip" / "tiny-clip.pt"),
    "clip_model_config": str(FIXTURES / "clip" / "tiny-clip.json"),
    "clip_device": "cpu",
    # torch fp32: the reference runtime, so answers equal open_clip's exactly. Tests of the
    # other runtimes and of the automatic choice set these themselves.
    "clip_backend": "torch",
    "clip_precision": "fp32",
}
# The same as environment variables, for a real server (`serve`).
TINY_CLIP_ENV = {key.upper(): str(value) for key, value in TINY_CLIP.items()}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test is `unit` or `integration` (a module's `pytestmark`), never both or neither,
    so `-m unit` is the whole fast suite."""
    unclassified = [
        item.nodeid
        for item in items
        if len({"unit", "integration"} & {m.name for m in item.iter_markers()}) != 1
    ]
    if unclassified:
        raise pytest.UsageError(
            "tests need exactly one of the unit/integration markers: " + ", ".join(unclassified)
        )


@pytest.fixture
def career_model_dir(tmp_path: Path) -> Path:
    """A private copy of the committed career model directory (tests may write to it)."""
    target = tmp_path / "career_models"
    shutil.copytree(CAREER_MODELS, target)
    return target


@pytest.fixture
def make_settings(tmp_path: Path, career_model_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "career_model_dir": career_model_dir,
            "upload_dir": tmp_path / "uploads",
            "clip_model_cache_dir": tmp_path / "clip-cache",
            # CLIP routes are tested with the tiny fixture model (tests/api/test_clip.py);
            # elsewhere it stays off so each app starts in milliseconds.
            "clip_enabled": False,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


def wait_for_models(client: TestClient, timeout: float = 120) -> dict[str, Any]:
    """Poll /health until no model is `loading` (CLIP loads in the background); its data."""
    deadline = time.monotonic() + timeout
    while True:
        health: dict[str, Any] = client.get("/health").json()["data"]
        if all(model["state"] != "loading" for model in health["models"].values()):
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"models still loading after {timeout} s: {health}")
        time.sleep(0.02)


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """Start apps with the given settings; each runs its lifespan and is closed afterwards.
    Unless `wait=False`, the client is returned once every model has finished loading."""
    clients: list[TestClient] = []

    def make(wait: bool = True, **overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        if wait:
            wait_for_models(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Check an error envelope and return its `error` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["meta"]["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(body["error"])


def serve(
    model_dir: Path, tmp: Path, log: Path | None = None, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """The real server (`python -m app`) on a free port, once ready: its process and URL.
    `settings` are environment variables on top of the defaults here (CLIP off); `log`
    receives the server's log lines."""
    port = free_port()
    env = {
        **os.environ,
        "FASTAPI_HOST": "127.0.0.1",
        "FASTAPI_PORT": str(port),
        "CAREER_MODEL_DIR": str(model_dir),
        "CLIP_ENABLED": "false",
        "ADMIN_API_KEYS": "admin-key",
        "MODEL_POLL_SECONDS": "0.5",
        "UPLOAD_DIR": str(tmp / f"uploads-{port}"),
        "CLIP_MODEL_CACHE_DIR": str(tmp / f"clip-cache-{port}"),
        **settings,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if log is None else log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not start")
