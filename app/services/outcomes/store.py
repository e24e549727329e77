"""The outcome store: reported career choices in a relational database (SQLAlchemy Core).

Connects lazily and migrates on first use, so the service starts whatever the database is
doing. Every failure to reach or use the database becomes `StoreUnavailable` (503), and
after one, calls fail fast for RETRY_S instead of each waiting for a connect timeout.
"""

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, delete, func, select, text
from sqlalchemy import exc as sa_exc

from app.core.exceptions import StoreUnavailable
from app.db.engine import is_postgres, make_engine, redacted
from app.db.tables import outcomes

logger = logging.getLogger(__name__)

# After a failed connection, calls answer 503 at once for this long before trying again.
RETRY_S = 2.0
RETRY_AFTER_S = 5


# One statement for every batch, on both databases: the drivers run it as a plain
# executemany (psycopg pipelines it, prepared once) and sum the rows inserted, which is
# `stored`; an idempotency hash seen before is skipped. The Core insert construct would
# instead build one statement of every row's values per batch (several times slower on
# PostgreSQL) and report no row count. Typed parameters keep the columns' conversions.
_COLUMNS = [column for column in outcomes.c if column.name != "id"]
_INSERT = text(
    f"INSERT INTO outcomes ({', '.join(c.name for c in _COLUMNS)}) "
    f"VALUES ({', '.join(':' + c.name for c in _COLUMNS)}) "
    "ON CONFLICT (idempotency_hash) DO NOTHING"
).bindparams(*(bindparam(c.name, type_=c.type) for c in _COLUMNS))


@dataclass(frozen=True)
class StoredOutcome:
    """One outcome as training reads it back."""

    id: int
    observed_at: datetime
    career: str
    features: dict[str, float]
    subject_hash: str | None


class OutcomeStore:
    """Reads and writes the `outcomes` table; thread-safe (one engine, pooled connections)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = is_postgres(url)
        self._engine: Engine | None = None
        self._ready = False
        self._guard = threading.Lock()
        self._retry_at = 0.0
        self.error: str | None = None

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> Engine:
        if self._ready and self._engine is not None:
            return self._engine
        with self._guard:
            if self._ready and self._engine is not None:
                return self._engine
            if time.monotonic() < self._retry_at:
                raise self._unavailable()
            try:
                # Alembic is imported here, in the background, not on the way to /health/live.
                from app.db import migrate

                engine = self._engine or make_engine(self.url)
                self._engine = engine
                migrate.upgrade(engine)
            except (sa_exc.SQLAlchemyError, OSError) as exc:
                self._failed(exc)
                raise self._unavailable() from exc
            self._ready = True
            self.error = None
            logger.info("outcome store ready at %s", redacted(self.url))
            return engine

    def _failed(self, exc: BaseException) -> None:
        reason = _reason(exc)
        if reason != self.error:  # said once per kind of failure, not once per request
            logger.error("outcome store unavailable at %s: %s", redacted(self.url), reason)
        self.error = reason
        self._retry_at = time.monotonic() + RETRY_S

    def _unavailable(self) -> StoreUnavailable:
        # The driver's words stay in the log: they name hosts, ports and files.
        return StoreUnavailable(
            "The outcome store (database) is unavailable; predictions are not affected. "
            "Retry later.",
            retry_after=RETRY_AFTER_S,
        )

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction; database failures become StoreUnavailable (the migration is
        re-checked on the next call, in case the database was replaced)."""
        engine = self._connect()
        try:
            with engine.begin() as connection:
                yield connection
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
            self._ready = False
            self._failed(exc)
            raise self._unavailable() from exc
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            self._ready = False
            self._failed(exc)
            raise self._unavailable() from exc

    def ping(self) -> None:
        """Connect (and migrate) now; StoreUnavailable if that fails."""
        self._connect()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    # -- writes ----------------------------------------------------------------------------

    def add(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert outcomes, skipping any whose idempotency hash is already stored; returns
        how many were stored. One transaction: all of them or none."""
        if not rows:
            return 0
        with self._begin() as connection:
            result = connection.execute(_INSERT, list(rows))
        return int(result.rowcount)

    def erase(self, subject_hash: str) -> int:
        with self._begin() as connection:
            result = connection.execute(
                delete(outcomes).where(outcomes.c.subject_hash == subject_hash)
            )
        return int(result.rowcount or 0)

    def purge(self, observed_before: datetime) -> int:
        with self._begin() as connection:
            result = connection.execute(
                delete(outcomes).where(outcomes.c.observed_at < observed_before)
            )
        return int(result.rowcount or 0)

    # -- reads -----------------------------------------------------------------------------

    def counts(self, received_after: datetime | None) -> dict[str, Any]:
        """Total, per career, per week, received after a time, and the observed range."""
        with self._begin() as connection:
            total, oldest, newest = connection.execute(
                select(
                    func.count(), func.min(outcomes.c.observed_at), func.max(outcomes.c.observed_at)
                )
            ).one()
            by_career = connection.execute(
                select(outcomes.c.career, func.count())
                .group_by(outcomes.c.career)
                .order_by(func.count().desc(), outcomes.c.career)
            ).all()
            by_week = connection.execute(
                select(outcomes.c.week, func.count())
                .group_by(outcomes.c.week)
                .order_by(outcomes.c.week)
            ).all()
            new = self._count_since(connection, received_after)
        return {
            "total": int(total),
            "by_career": {career: int(n) for career, n in by_career},
            "by_week": [(week, int(n)) for week, n in by_week],
            "new": new,
            "oldest": oldest,
            "newest": newest,
        }

    def count_since(self, received_after: datetime | None) -> int:
        with self._begin() as connection:
            return self._count_since(connection, received_after)

    @staticmethod
    def _count_since(connection: Connection, received_after: datetime | None) -> int:
        query = select(func.count()).select_from(outcomes)
        if received_after is not None:
            query = query.where(outcomes.c.received_at > received_after)
        return int(connection.execute(query).scalar_one())

    def quality(self, model_version: str) -> tuple[int, float | None, float | None]:
        """(outcomes scored by this version, their top-1 accuracy, their mean log loss)."""
        correct = func.sum(case((outcomes.c.top1_correct.is_(True), 1), else_=0))
        with self._begin() as connection:
            n, hits, loss = connection.execute(
                select(func.count(), correct, func.avg(outcomes.c.log_loss)).where(
                    outcomes.c.model_version == model_version
                )
            ).one()
        n = int(n)
        return n, (int(hits) / n if n else None), (float(loss) if loss is not None else None)

    def window(self, observed_since: datetime, limit: int) -> list[StoredOutcome]:
        """The newest `limit` outcomes observed since a time, oldest first."""
        query = (
            select(
                outcomes.c.id,
                outcomes.c.observed_at,
                outcomes.c.career,
                outcomes.c.features,
                outcomes.c.subject_hash,
            )
            .where(outcomes.c.observed_at >= observed_since)
            .order_by(outcomes.c.observed_at.desc(), outcomes.c.id.desc())
            .limit(limit)
        )
        with self._begin() as connection:
            rows = connection.execute(query).all()
        return [StoredOutcome(*row) for row in reversed(rows)]


def _reason(exc: BaseException) -> str:
    """The driver's first line, without the URL or the SQL (no passwords in answers)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    else:
        text = str(exc) or type(exc).__name__
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
