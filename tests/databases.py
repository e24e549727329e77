"""Database fixtures for the outcome store's tests: each test runs on SQLite and on a real
PostgreSQL server. PostgreSQL is probed once per session (TEST_POSTGRES_URL, default the
local server as `postgres`); where none answers, its cases are skipped with the reason,
never passed silently. Each PostgreSQL case gets a database of its own, dropped after."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The server's maintenance URL, or a skip saying why PostgreSQL cases cannot run."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        pytest.skip(
            f"PostgreSQL cases skipped: no server at {make_url(POSTGRES_URL).render_as_string()} "
            f"({reason}); start one or set TEST_POSTGRES_URL"
        )
    finally:
        engine.dispose()
    return POSTGRES_URL


def fresh_postgres_database(admin_url: str) -> tuple[str, str]:
    """Create an empty database; (its URL, its name)."""
    name = f"test_outcomes_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), name


def drop_postgres_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (the schema is not created: the store migrates)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outcomes-test.sqlite3'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    url, name = fresh_postgres_database(admin_url)
    try:
        yield url
    finally:
        drop_postgres_database(admin_url, name)
