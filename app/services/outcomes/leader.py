"""Which process runs the retraining scheduler: exactly one across every replica.

On PostgreSQL, the holder of a session-level advisory lock on a dedicated connection: the
server drops the lock when that connection ends (a crash, a network split), and another
replica takes over at its next try. Otherwise (SQLite: one host, or replicas sharing the
model volume), the holder of an exclusive flock on a file in CAREER_MODEL_DIR, which the
kernel drops when its process dies.
"""

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from app.db.engine import make_engine

logger = logging.getLogger(__name__)

LEADER_FILE = ".scheduler.lock"
# pg_try_advisory_lock key: "skill-compass retrain scheduler" (any constant int64).
LEADER_LOCK_KEY = 0x5C0DE_0002


class Leadership(Protocol):
    def hold(self) -> bool:
        """Be the leader now if possible; True while this process is it."""

    def release(self) -> None:
        """Stop being the leader (at shutdown)."""


class FileLeadership:
    """Leader while holding LOCK_EX on one file (non-blocking tries)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LEADER_FILE
        self._fd: int | None = None

    def hold(self) -> bool:
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            logger.exception("cannot open the scheduler lock %s", self.path)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        logger.info("this process runs the retraining scheduler (flock on %s)", self.path.name)
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class PostgresLeadership:
    """Leader while a dedicated connection holds pg_try_advisory_lock(LEADER_LOCK_KEY)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._connection: Connection | None = None

    def hold(self) -> bool:
        if self._connection is not None:
            try:  # still connected, so still holding the lock
                self._connection.execute(text("SELECT 1"))
                return True
            except sa_exc.SQLAlchemyError:
                logger.warning("lost the scheduler's database connection: leadership given up")
                self._drop()
        try:
            self._engine = self._engine or make_engine(self.url, pooled=False)
            connection = self._engine.connect()
        except sa_exc.SQLAlchemyError:
            return False
        try:
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK_KEY}
            ).scalar_one()
            connection.commit()  # the lock is the session's, not the transaction's
        except sa_exc.SQLAlchemyError:
            connection.close()
            return False
        if not got:
            connection.close()
            return False
        self._connection = connection
        logger.info("this process runs the retraining scheduler (PostgreSQL advisory lock)")
        return True

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                self._connection.close()
            self._connection = None

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": LEADER_LOCK_KEY}
                )
                self._connection.commit()
            except sa_exc.SQLAlchemyError:
                pass
        self._drop()
        if self._engine is not None:
            self._engine.dispose()
