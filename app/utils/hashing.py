"""Content hashing."""

import hashlib
import json
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file_remembered(path: Path, memo_dir: Path) -> str:
    """`sha256_file`, remembered in `memo_dir` under the file's identity (device, inode,
    size, modification time in ns): a checkpoint of hundreds of MB is read once, not at
    every start. Any change to the file changes its identity and it is hashed again; a
    memo that cannot be read or written is simply not used."""
    stat = path.stat()
    identity = f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = memo_dir / f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]}.json"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
        if known.get("identity") == identity and isinstance(known.get("sha256"), str):
            return str(known["sha256"])
    except (OSError, ValueError, AttributeError):
        pass
    digest = sha256_file(path)
    try:
        memo_dir.mkdir(parents=True, exist_ok=True)
        temporary = memo.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"identity": identity, "sha256": digest}), "utf-8")
        temporary.replace(memo)
    except OSError:  # a read-only cache: hash again next time
        pass
    return digest
