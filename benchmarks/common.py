"""Helpers shared by the benchmarks."""

import io
import socket
import time
from collections.abc import Callable

import numpy as np
from PIL import Image


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
