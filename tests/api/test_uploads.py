"""Multipart uploads spool into UPLOAD_DIR; the process-wide temporary directory stays put."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

BIG = 1_500_000  # over Starlette's 1 MB in-memory spool: this one goes to a file


@pytest.fixture
def spooled_at(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Where each spool file really is, read back from its descriptor."""
    made: list[str] = []
    temporary_file = tempfile.TemporaryFile

    def spy(*args: Any, **kwargs: Any) -> Any:
        file = temporary_file(*args, **kwargs)
        made.append(os.readlink(f"/proc/self/fd/{file.fileno()}"))
        return file

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)  # what the spool rolls over to
    return made


def test_a_large_upload_spools_into_upload_dir_and_nothing_else_moves(
    make_client: Callable[..., TestClient], tmp_path: Path, spooled_at: list[str]
) -> None:
    system_temp = tempfile.gettempdir()
    first = make_client(upload_dir=tmp_path / "first")
    second = make_client(upload_dir=tmp_path / "second")
    assert tempfile.gettempdir() == system_temp and tempfile.tempdir != str(tmp_path / "first")

    for client in (first, second, first):
        client.post("/api/v1/clip/embed/image", files={"images": ("a.png", b"x" * BIG)})
    # Each app's spool in its own UPLOAD_DIR (an unnamed O_TMPFILE, hence the "#<inode>").
    folders = [str(Path(path.removesuffix(" (deleted)")).parent) for path in spooled_at]
    assert folders == [str(tmp_path / name) for name in ("first", "second", "first")]


def test_a_small_upload_stays_in_memory(
    make_client: Callable[..., TestClient], spooled_at: list[str]
) -> None:
    client = make_client()
    client.post("/api/v1/clip/embed/image", files={"images": ("a.png", b"x" * 1000)})
    assert spooled_at == []
