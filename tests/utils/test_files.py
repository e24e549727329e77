"""Staged publishing of a directory: whole or nothing, checksummed, first publisher wins."""

import json
import stat
from pathlib import Path

import pytest

from app.utils.files import StagedDirectory, discard_directory
from app.utils.hashing import sha256_file

pytestmark = pytest.mark.unit


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def stage(target: Path, files: dict[str, bytes]) -> StagedDirectory:
    staged = StagedDirectory(target)
    for name, data in files.items():
        (staged.path / name).write_bytes(data)
    return staged


def test_a_published_directory_holds_its_files_and_a_manifest_of_their_sha256(
    tmp_path: Path,
) -> None:
    target = tmp_path / "cache" / "v1"  # the parent is made
    with stage(target, {"b.bin": b"bee", "a.txt": b"ay"}) as staged:
        assert not target.exists() and staged.path.parent == target.parent
        assert staged.path.name.startswith(".staging-v1-")
        digests = staged.digests()
        staged.publish("manifest.json", json.dumps(digests).encode())
    assert list(digests) == ["a.txt", "b.bin"]
    assert digests["b.bin"] == sha256_file(target / "b.bin")
    assert json.loads((target / "manifest.json").read_text()) == digests
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # readable by other users
    assert leftovers(target.parent) == []


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), stage(tmp_path / "v1", {"a": b"half"}):
        raise RuntimeError("killed mid-build")
    assert list(tmp_path.iterdir()) == []


def test_a_taken_target_is_an_error_unless_the_caller_decides(tmp_path: Path) -> None:
    target = tmp_path / "v1"
    target.mkdir()
    (target / "theirs").write_bytes(b"first")
    with pytest.raises(OSError), stage(target, {"ours": b"second"}) as staged:
        staged.publish("manifest.json", b"{}")
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("unsound", [False, True])
def test_replace_if_says_whether_a_taken_target_is_replaced(tmp_path: Path, unsound: bool) -> None:
    target = tmp_path / "v1"
    target.mkdir()
    (target / "theirs").write_bytes(b"first")
    seen = []

    def replace_if(path: Path) -> bool:
        seen.append(path)
        return unsound

    with stage(target, {"ours": b"second"}) as staged:
        staged.publish("manifest.json", b"{}", replace_if=replace_if)
    assert seen == [target]
    names = sorted(p.name for p in target.iterdir())
    assert names == (["manifest.json", "ours"] if unsound else ["theirs"])
    assert leftovers(tmp_path) == []  # neither staging nor trash


def test_discarding_a_directory_that_is_gone_does_nothing(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "f").write_bytes(b"x")
    discard_directory(tmp_path / "old")
    discard_directory(tmp_path / "old")
    assert list(tmp_path.iterdir()) == []
