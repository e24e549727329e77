"""Which database, and engines for it: a SQLite file in CAREER_MODEL_DIR unless
DATABASE_URL names another (PostgreSQL for several replicas)."""

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.config import Settings

SQLITE_FILE = "outcomes.sqlite3"
# Seconds to wait for a connection before the store counts as unavailable: a request
# waits at most this long, never the minute of a TCP default.
CONNECT_TIMEOUT_S = 3
# SQLite: how long a writer waits for another's lock before "database is locked".
SQLITE_BUSY_MS = 5000


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the default SQLite file beside the model versions."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{Path(settings.career_model_dir).resolve() / SQLITE_FILE}"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, *, pooled: bool = True) -> Engine:
    """An engine that connects lazily (nothing happens until first use) and fails fast."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if not pooled:
        kwargs = {"poolclass": NullPool}
    if parsed.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    elif parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(parsed, **kwargs)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (stats, monitoring) never block the writer, and the reverse.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
