"""Alembic, driven from code: `upgrade(engine)` brings a database to the newest schema.

Replicas starting together may race to migrate: on PostgreSQL the upgrade holds a
transaction-level advisory lock, on SQLite an flock beside the database file, so one
migrates and the others find the schema done.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key: "skill-compass outcomes migrate" (any constant int64).
MIGRATION_LOCK_KEY = 0x5C0DE_0001


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _sqlite_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    fd = os.open(f"{database}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate to `revision` (the newest by default); returns the revision now current."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            if current(connection) != head() or revision != "head":
                command.upgrade(alembic_config(connection), revision)
            return current(connection)
    with _sqlite_lock(engine), engine.begin() as connection:
        if current(connection) != head() or revision != "head":
            command.upgrade(alembic_config(connection), revision)
        return current(connection)


def downgrade(engine: Engine, revision: str) -> str | None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)
        return current(connection)
