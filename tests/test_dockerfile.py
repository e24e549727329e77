"""What the Dockerfile promises, checked where no Docker engine runs (as on the dev VM).

The image build itself needs an engine; these tests keep its promises from drifting: the
two targets (serving without torch, torch from its own index only), the model built at
build time by the numeric non-root user the server runs as, and a HEALTHCHECK command that really tells a live server from a dead one.
"""

import json
import os
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


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions, by stage name (`FROM x AS name`)."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for kind, args in instructions():
        if kind == "FROM":
            current = found.setdefault(args.split()[-1], [])
        current.append((kind, args))
    return found


def requirement_names(path: Path) -> set[str]:
    """Distribution names a requirements file installs, `-r` includes followed."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
        elif line:
            names.add(re.split(r"[=<>!~\[ ]", line)[0].lower().replace("_", "-"))
    return names


TORCH_PACKAGES = {"torch", "torchvision", "open-clip-torch"}


def test_the_default_target_serves_without_torch() -> None:
    """The last stage (what a plain `docker build` makes) installs the serving set only."""
    built = stages()
    assert list(built)[-1] == "serve"
    serve_deps = " ".join(args for kind, args in built["serve-deps"] if kind == "RUN")
    assert "-r requirements-serve.txt" in serve_deps and "requirements.txt " not in serve_deps
    assert not requirement_names(ROOT / "requirements-serve.txt") & TORCH_PACKAGES
    assert requirement_names(ROOT / "requirements.txt") >= TORCH_PACKAGES
    assert requirement_names(ROOT / "requirements-serve.txt") < requirement_names(
        ROOT / "requirements.txt"
    )
    copied = [args for kind, args in built["serve"] if kind == "COPY" and "--from=" in args]
    assert copied == ["--from=serve-deps /opt/venv /opt/venv"]


def test_torch_comes_only_from_the_wanted_index_and_is_checked() -> None:
    """No fallback to PyPI's CUDA wheels: only the PyTorch index, pip's configuration off,
    and a check after the install that the build is the wanted one (CPU: no CUDA)."""
    runs = [args for kind, args in stages()["torch-deps"] if kind == "RUN"]
    [install] = [args for args in runs if "torch_pins" in args]
    assert 'PIP_CONFIG_FILE=/dev/null pip install --index-url "$TORCH_INDEX_URL"' in install
    assert "extra-index-url" not in (ROOT / "Dockerfile").read_text()
    assert "torch.version.cuda" in install
    args = " ".join(a for kind, a in stages()["torch-deps"] if kind == "ARG")
    assert "TORCH_VARIANT=cpu" in args


def test_no_build_step_needs_a_model_hub() -> None:
    """Weights come from the prefetch Job or a volume: the default build works offline."""
    runs = " ".join(args for kind, args in instructions() if kind == "RUN")
    assert "app.prefetch" not in runs
    assert "python -m app.train --if-missing" in " ".join(
        args for kind, args in stages()["serve"] if kind == "RUN"
    )


def test_the_base_image_is_pinned_by_digest_in_the_release_builds() -> None:
    """The Dockerfile names the tag (any builder can build it as it is, an offline one
    included); the release builds replace that FROM with a named context pinned by digest."""
    froms = [args for kind, args in instructions() if kind == "FROM"]
    tag = froms[0].split()[0]
    assert froms[0] == f"{tag} AS python" and "$" not in tag and "@" not in tag
    # every other stage builds on that one
    assert all(f.split()[0] in stages() for f in froms[1:])
    pinned = rf"docker-image://docker\.io/library/{re.escape(tag)}@sha256:[0-9a-f]{{64}}"
    bake = (ROOT / "docker-bake.hcl").read_text()
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    bake_pins = re.findall(pinned, bake)
    compose_pins = re.findall(rf'"{re.escape(tag)}": ({pinned})', compose)
    assert len(bake_pins) == 1 and f'"{tag}" = PYTHON_BASE' in bake
    assert len(compose_pins) == 2  # the serve and torch builds
    assert set(compose_pins) == set(bake_pins)  # one digest everywhere
    assert os.access(ROOT / "scripts" / "pin-base-image.sh", os.X_OK)


def test_the_shared_build_script_can_read_the_base_image() -> None:
    """../shared/tools/container/build-image.sh reads the first FROM's image name with
    this sed expression and makes an offline stand-in of that name: it must be a name."""
    first = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("FROM")
    )
    name = re.sub(r"^FROM\s+(\S*).*", r"\1", first)
    assert re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+", name), name


def test_each_image_runs_as_a_numeric_non_root_user() -> None:
    for name in ("serve", "torch"):
        steps = stages()[name]
        kinds = [kind for kind, _ in steps]
        user = steps[kinds.index("USER")][1]
        assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user), user
        assert kinds.count("USER") == 1
        assert json.loads(dict(steps)["CMD"]) == ["python", "-m", "app"]
    serve = stages()["serve"]
    kinds = [kind for kind, _ in serve]
    train_at = next(i for i, (k, a) in enumerate(serve) if "python -m app.train" in a)
    assert kinds.index("USER") < train_at < kinds.index("CMD")


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
    assert made[0] < kinds.index("USER")  # in the common stage, as root
    for name in writable:
        assert f'"${name}"' in made[1]
    assert "chown -R 10001:10001 /srv" in made[1]
    assert all(path.startswith("/srv/") for path in writable.values())


def test_the_image_bakes_in_neither_keys_nor_the_keyless_opt_in() -> None:
    """Keys come from whoever runs the image; without them it listens on loopback only."""
    env = " ".join(args for kind, args in instructions() if kind in ("ENV", "ARG"))
    assert "API_KEYS" not in env
    assert "ALLOW_UNAUTHENTICATED_NETWORK" not in env
    assert "-e API_KEYS=" in (ROOT / "Dockerfile").read_text()  # says how to run it


# The serving image's Python: torch, torchvision and open_clip cannot be imported.
_WITHOUT_TORCH = """
import importlib.abc, json, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "open_clip"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NotInstalled())
from fastapi.testclient import TestClient
from app.config import Settings
from app.main import create_app
from tests.conftest import wait_for_models

settings = Settings(_env_file=None, career_model_dir=sys.argv[1], upload_dir=sys.argv[2],
                    clip_model_cache_dir=sys.argv[3], clip_enabled=True)
with TestClient(create_app(settings)) as client:
    health = wait_for_models(client)
    predict = client.post("/api/v1/career/predict", json={"academic_scores": {"math": 90}})
    print(json.dumps({
        "models": {k: [v["state"], v["error"]] for k, v in health["models"].items()},
        "predict": predict.status_code,
        "ready_career": client.get("/health/ready?model=career").status_code,
        "clip": client.post("/api/v1/clip/embed/text", json={"texts": ["a"]}).json()["error"]["code"],
        "torch_loaded": "torch" in sys.modules,
    }))
"""


def test_the_torch_free_image_serves_career_and_says_why_clip_is_not(
    career_model_dir: Path, tmp_path: Path
) -> None:
    """What the `serve` target runs until CLIP can load without torch: career answers, the
    pod is ready for career, and CLIP is unavailable with its reason (no torch)."""
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(career_model_dir), str(tmp_path / "u"),
         str(tmp_path / "clip")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["models"]["career"] == ["loaded", None]
    state, error = result["models"]["clip"]
    assert state == "unavailable" and "torch" in error
    assert (result["predict"], result["ready_career"]) == (200, 200)
    assert result["clip"] == "MODEL_UNAVAILABLE"
    assert result["torch_loaded"] is False
