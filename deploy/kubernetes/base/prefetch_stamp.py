"""Stamp the CLIP cache once `python -m app.prefetch` has filled it; wait for that stamp.

    python prefetch_stamp.py write           # the prefetch Job, right after app.prefetch
    python prefetch_stamp.py wait [SECONDS]  # each serving pod's init container

The serving pods mount CLIP_MODEL_CACHE_DIR read-only: they can neither download the
weights nor build the ONNX runtimes, and a CLIP model that fails to load stays
`unavailable` until its process restarts. A pod started before the Job finished (the
first `kubectl apply -k` creates both at once; a new image whose library versions need
new exports) would so stay unready for good. Each pod therefore waits here until the cache
was built for what it is about to load: the same CLIP settings and the same library
versions (the runtimes' directory names include them), and CAREER_MODEL_DIR has an
ACTIVE career model.

One stamp per (settings, versions) pair, so that during a rolling upgrade the old and the
new pods each find theirs. Standard library only; it reads the same environment as the
service (the Job and the pods take it from one ConfigMap). Shipped to the pods by the
configMapGenerator in kustomization.yaml.
"""

import hashlib
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# What the runtimes in the cache depend on. CLIP_DEVICE is left out: prefetch builds on CPU.
# Packages present in both images (the Job runs the torch target, the pods may run the
# torch-free one): a torch version here would never match a pod without torch.
SETTINGS = (
    "CLIP_MODEL_NAME",
    "CLIP_PRETRAINED",
    "CLIP_MODEL_CONFIG",
    "CLIP_BACKEND",
    "CLIP_PRECISION",
)
PACKAGES = ("onnx", "onnxruntime")
STAMPS = ".prefetched"
DEFAULT_WAIT_S = 900.0
POLL_S = 2.0
REPORT_EVERY_S = 30.0


def identity() -> dict[str, dict[str, str]]:
    """The settings and library versions a cache is built for (unset settings as "")."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "none"
    return {"settings": {k: os.environ.get(k, "") for k in SETTINGS}, "versions": versions}


def clip_cache() -> Path:
    return Path(os.environ.get("CLIP_MODEL_CACHE_DIR", "ml_models/clip"))


def career_dir() -> Path:
    return Path(os.environ.get("CAREER_MODEL_DIR", "ml_models/career"))


def stamp_path(ident: dict[str, dict[str, str]]) -> Path:
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return clip_cache() / STAMPS / f"{digest}.json"


def write() -> int:
    ident = identity()
    path = stamp_path(ident)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(ident, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # readers see the whole stamp or none
    print(f"stamped {path}: {json.dumps(ident, sort_keys=True)}", flush=True)
    return 0


def missing() -> list[str]:
    ident = identity()
    problems = []
    if not stamp_path(ident).is_file():
        problems.append(
            f"no prefetch stamp in {clip_cache()} for {json.dumps(ident, sort_keys=True)}: "
            "has the prefetch Job run with this image and these CLIP settings?"
        )
    if not (career_dir() / "ACTIVE").is_file():
        problems.append(f"no ACTIVE career model in {career_dir()}")
    return problems


def wait(timeout_s: float) -> int:
    started = time.monotonic()
    reported = -REPORT_EVERY_S
    while True:
        problems = missing()
        waited = time.monotonic() - started
        if not problems:
            print(f"the CLIP cache and the career model are ready ({waited:.0f}s)", flush=True)
            return 0
        if waited >= timeout_s:
            print(f"gave up after {waited:.0f}s: " + "; ".join(problems), file=sys.stderr)
            return 1
        if waited - reported >= REPORT_EVERY_S:
            print(f"waiting ({waited:.0f}s): " + "; ".join(problems), flush=True)
            reported = waited
        time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "write":
        return write()
    if len(argv) >= 2 and argv[1] == "wait":
        return wait(float(argv[2]) if len(argv) > 2 else DEFAULT_WAIT_S)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
