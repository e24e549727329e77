"""Multipart uploads spool into UPLOAD_DIR; the process-wide temporary directory stays put."""

import errno
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import assert_error

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


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 507, "STORAGE_FULL"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), 507, "STORAGE_FULL"),
        (PermissionError(errno.EACCES, "Permission denied"), 500, "STORAGE_ERROR"),
    ],
)
def test_a_spool_that_cannot_be_written_is_the_services_5xx_not_the_callers_422(
    make_client: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    failure: OSError,
    status: int,
    code: str,
) -> None:
    """UPLOAD_DIR full or not writable: the body was fine, our disk was not. It used to
    answer 422 "The body could not be decoded as multipart/form-data"."""
    client = make_client(api_keys="k", admin_api_keys="admin")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[assignment,method-assign]
    logger = logging.getLogger("app.api.uploads")
    monkeypatch.setattr(logger, "handlers", [*logger.handlers, handler])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(tempfile, "TemporaryFile", broken)  # what the spool rolls over to
    for path, headers, files in (
        # a route whose form FastAPI reads, and the retrain route, which reads its own
        ("/api/v1/clip/embed/image", {"X-API-Key": "k"}, {"images": ("a.png", b"x" * BIG)}),
        ("/api/v1/career/retrain", {"X-API-Key": "admin"}, {"file": ("t.csv", b"x" * BIG)}),
    ):
        records.clear()
        error = assert_error(client.post(path, headers=headers, files=files), status, code)
        assert "decoded" not in error["message"]
        [record] = records
        assert record.levelno == logging.ERROR
        assert "UPLOAD_DIR" in record.getMessage() and str(failure.strerror) in record.getMessage()
    # A small upload never touches the disk, and still works.
    small = client.post(
        "/api/v1/clip/embed/image", headers={"X-API-Key": "k"}, files={"images": ("a", b"x")}
    )
    assert small.status_code != status


def test_a_full_disk_met_by_a_later_write_is_a_507(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool's file was created, then the disk filled while it was written."""
    client = make_client()
    temporary_file = tempfile.TemporaryFile

    class FillsUp:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._file = temporary_file(*args, **kwargs)

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._file, name)

    monkeypatch.setattr(tempfile, "TemporaryFile", FillsUp)
    response = client.post("/api/v1/clip/embed/image", files={"images": ("a.png", b"x" * BIG)})
    error = assert_error(response, 507, "STORAGE_FULL")
    assert response.headers["Retry-After"] == "30"
    assert "disk space" in error["message"]
