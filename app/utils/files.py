"""Files and directories that other processes read while this one writes them."""

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from app.utils.hashing import sha256_file


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace a file so readers see the old or the new content, never part of either; a
    failed write (a full disk) leaves the old file and no temporary one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StagedDirectory:
    """A directory built in a private staging directory beside its final place, then
    published whole by one rename: readers see all of it or none, and a process killed
    mid-build leaves only a hidden `.staging-<name>-*` directory (which readers skip and
    the owner may sweep). Leaving the `with` block removes the staging directory, so a
    failed build leaves nothing.

        with StagedDirectory(root / name) as staged:
            ...write files into staged.path...
            staged.publish("manifest.json", manifest_bytes_naming(staged.digests()))
    """

    def __init__(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.path = Path(tempfile.mkdtemp(prefix=f".staging-{target.name}-", dir=target.parent))

    def __enter__(self) -> "StagedDirectory":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.path, ignore_errors=True)  # already gone once published

    def digests(self) -> dict[str, str]:
        """The sha256 of every file staged so far, by file name in sorted order."""
        return {p.name: sha256_file(p) for p in sorted(self.path.iterdir()) if p.is_file()}

    def publish(
        self,
        manifest_name: str,
        manifest: bytes,
        *,
        replace_if: Callable[[Path], bool] | None = None,
    ) -> None:
        """Write the manifest, flush every file to disk and rename the directory into
        place. A target that exists already is an OSError; with `replace_if`, it is instead
        replaced when `replace_if(target)` says so (it is unsound) and kept otherwise
        (another process published it first)."""
        (self.path / manifest_name).write_bytes(manifest)
        for item in self.path.iterdir():
            if item.is_file():
                with item.open("rb") as fh:
                    os.fsync(fh.fileno())
        self.path.chmod(0o755)  # mkdtemp makes it private; readers may be other users
        try:
            os.rename(self.path, self.target)
        except OSError:
            if replace_if is None:
                raise
            if replace_if(self.target):
                discard_directory(self.target)
                os.rename(self.path, self.target)


def discard_directory(path: Path) -> None:
    """Move a directory out of readers' way (atomically, to a hidden `.trash-<name>-*`
    beside it), then delete it; nothing if it is already gone."""
    trash = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(path, trash)
    except OSError:
        return  # already gone: another process got there first
    shutil.rmtree(trash, ignore_errors=True)
