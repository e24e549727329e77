"""Helpers shared by the benchmarks."""

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(settings: dict[str, str]) -> tuple["subprocess.Popen[bytes]", str]:
    """`python -m app` on a free loopback port with these settings on top of the
    environment, output discarded: the process and its base URL (not yet ready)."""
    port = free_port()
    env = {**os.environ, "FASTAPI_HOST": "127.0.0.1", "FASTAPI_PORT": str(port), **settings}
    server = subprocess.Popen(
        [sys.executable, "-m", "app"],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, f"http://127.0.0.1:{port}"


def wait_ready(base: str, timeout: float = 120) -> None:
    """Until the server at `base` answers 200 on /health/ready (every model loaded)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} did not become ready in {timeout:.0f} s")


def timed_ms(fn: Callable[[], object], runs: int, warm: int = 2) -> list[float]:
    """Milliseconds of each of `runs` calls, after `warm` untimed ones."""
    for _ in range(warm):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def photo_jpeg(seed: int, size: tuple[int, int] = (640, 480), quality: int = 90) -> bytes:
    """A JPEG with photo-like structure (smooth gradients plus noise), width x height."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack(
        [np.sin(x / (40 + 10 * c) + seed) * np.cos(y / (30 + 7 * c)) for c in range(3)], -1
    )
    pixels = np.clip(127 + 90 * base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()


# The public table the project stays compatible with (../shared/data/README.md).
PUBLIC_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "student-scores.csv"
# The public table's columns -> the service's feature names (and the label).
PUBLIC_MAPPING = {
    "math_score": "math",
    "history_score": "history",
    "physics_score": "physics",
    "chemistry_score": "chemistry",
    "biology_score": "biology",
    "english_score": "english",
    "geography_score": "geography",
    "weekly_self_study_hours": "weekly_self_study_hours",
    "absence_days": "absence_days",
    "part_time_job": "part_time_job",
    "extracurricular_activities": "extracurricular_activities",
    "career_aspiration": "label",
}
