"""What the Dockerfile promises, checked where no Docker engine runs (as on the dev VM).

The image build itself needs an engine; these tests keep its promises from drifting: the
pins installed, the model built at build time by the non-root user the server runs as,
and a HEALTHCHECK command that really tells a live server from a dead one.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import serve

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            steps.append((keyword.upper(), " ".join(arguments.split())))
    return steps


def test_image_installs_the_pins_and_builds_the_model_as_a_non_root_user() -> None:
    steps = instructions()
    kinds = [kind for kind, _ in steps]
    runs = [(i, args) for i, (kind, args) in enumerate(steps) if kind == "RUN"]
    assert any("pip install" in args and "-r requirements.txt" in args for _, args in runs)

    user_at = kinds.index("USER")
    assert steps[user_at][1] not in {"root", "0"}
    assert "USER" not in kinds[user_at + 1 :]  # nothing switches back to root
    train_at = next(i for i, args in runs if "python -m app.train" in args)
    assert user_at < train_at < kinds.index("CMD")
    assert json.loads(dict(steps)["CMD"]) == ["python", "-m", "app"]


def test_healthcheck_command_tells_a_live_server_from_a_dead_one(
    career_model_dir: Path, tmp_path: Path
) -> None:
    healthcheck = dict(instructions())["HEALTHCHECK"]
    assert "/health/live" in healthcheck
    program, *arguments = shlex.split(healthcheck.split(" CMD ", 1)[1])
    assert program == "python"

    process, base = serve(career_model_dir, tmp_path)
    port = base.rsplit(":", 1)[1]
    command = [sys.executable, *(a.replace(":8000/", f":{port}/") for a in arguments)]
    try:
        assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0


def test_every_directory_the_service_writes_is_created_for_the_app_user() -> None:
    """WORKDIR /srv is root's: the app user could not create uploads/ at start (it
    crashed). Each writable setting points into a directory made and chowned before USER."""
    steps = instructions()
    kinds = [kind for kind, _ in steps]
    env = " ".join(args for kind, args in steps if kind == "ENV")
    writable = {}
    for name in ("UPLOAD_DIR", "CAREER_MODEL_DIR", "CLIP_MODEL_CACHE_DIR"):
        found = re.search(rf"{name}=(\S+)", env)
        assert found, f"{name} is not set in the image"
        writable[name] = found.group(1)
    made = next(
        (i, args) for i, (kind, args) in enumerate(steps) if kind == "RUN" and "mkdir" in args
    )
    assert made[0] < kinds.index("USER")
    for name in writable:
        assert f'"${name}"' in made[1]
    assert "chown -R app:app /srv" in made[1]
    assert all(path.startswith("/srv/") for path in writable.values())


def test_the_image_bakes_in_neither_keys_nor_the_keyless_opt_in() -> None:
    """Keys come from whoever runs the image; without them it listens on loopback only."""
    env = " ".join(args for kind, args in instructions() if kind in ("ENV", "ARG"))
    assert "API_KEYS" not in env
    assert "ALLOW_UNAUTHENTICATED_NETWORK" not in env
    assert "-e API_KEYS=" in (ROOT / "Dockerfile").read_text()  # says how to run it
