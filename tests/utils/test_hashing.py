"""A checkpoint's digest is read once, and read again whenever the file changes."""

import hashlib
import os
from pathlib import Path

import pytest

from app.utils import hashing
from app.utils.hashing import sha256_file_remembered

pytestmark = pytest.mark.unit


def test_the_digest_is_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"first")
    memo = tmp_path / "memo"
    reads: list[Path] = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda path: reads.append(path) or real(path))

    assert sha256_file_remembered(weights, memo) == hashlib.sha256(b"first").hexdigest()
    assert sha256_file_remembered(weights, memo) == hashlib.sha256(b"first").hexdigest()
    assert len(reads) == 1  # the second start did not read the file

    weights.write_bytes(b"other")  # same size; a new modification time
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert sha256_file_remembered(weights, memo) == hashlib.sha256(b"other").hexdigest()
    assert len(reads) == 2


def test_an_unwritable_or_corrupt_memo_only_costs_a_read(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"data")
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")  # the memo folder cannot be made here
    assert sha256_file_remembered(weights, blocked) == hashlib.sha256(b"data").hexdigest()
    memo = tmp_path / "memo"
    sha256_file_remembered(weights, memo)
    for entry in memo.iterdir():
        entry.write_text("{not json")
    assert sha256_file_remembered(weights, memo) == hashlib.sha256(b"data").hexdigest()
