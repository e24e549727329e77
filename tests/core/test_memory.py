"""glibc's mmap threshold: fixed, so large freed buffers are returned to the OS."""

import platform

import pytest

from app.core import memory
from app.core.memory import return_large_buffers_to_os

pytestmark = pytest.mark.unit


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_threshold_is_fixed_on_glibc() -> None:
    assert return_large_buffers_to_os(128 * 1024) is True


def test_elsewhere_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    class NotGlibc:  # musl has mallopt, as a no-op, but no gnu_get_libc_version
        def __init__(self, _: object) -> None:
            self.mallopt = lambda *_: pytest.fail("mallopt called outside glibc")

    monkeypatch.setattr(memory.ctypes, "CDLL", NotGlibc)
    assert return_large_buffers_to_os(128 * 1024) is False
