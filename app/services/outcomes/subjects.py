"""Keyed hashes of the gateway's identifiers: a subject id or an idempotency key is stored
only as HMAC-SHA256 under a secret key, so the store alone cannot be joined back to a
person, and an erasure request can still find that person's rows."""

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from app.core.exceptions import StoreUnavailable

logger = logging.getLogger(__name__)

KEY_FILE = ".outcome-hash-key"
KEY_BYTES = 32


class KeyedHasher:
    """HMAC-SHA256 with one key; `purpose` separates the kinds of identifier, so a subject
    id and an idempotency key with the same text never share a hash."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an HMAC key must not be empty")
        self._key = key

    def __call__(self, value: str, *, purpose: str) -> str:
        message = purpose.encode() + b"\0" + value.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def install_key(folder: Path) -> bytes:
    """The per-install key in `folder` (mode 0600), created on first use. Replicas racing
    to create it agree: the file appears whole (hard link of a finished temp file) or not at
    all, and the losers read the winner's."""
    path = folder / KEY_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(KEY_BYTES) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
                logger.warning(
                    "OUTCOME_HASH_KEY is not set: created a per-install key in %s; back it up "
                    "with the outcome store (erasure by subject id needs the same key)",
                    path,
                )
            except FileExistsError:
                pass  # another process made it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
        return _read(path)
    except OSError as exc:
        raise StoreUnavailable(
            "OUTCOME_HASH_KEY is not set and the per-install key cannot be created in "
            f"CAREER_MODEL_DIR: {exc.strerror or type(exc).__name__}."
        ) from exc


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise StoreUnavailable(f"{path.name} in CAREER_MODEL_DIR does not hold a usable key.")
    return key
