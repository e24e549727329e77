"""Helpers shared by the benchmarks."""

import socket
import time
from collections.abc import Callable


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
