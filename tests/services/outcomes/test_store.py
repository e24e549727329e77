"""The outcome store on SQLite and on a real PostgreSQL server: migrations, idempotency,
erasure, retention, the reads training and reports use, and a database that is down."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from app.core.exceptions import StoreUnavailable
from app.db import migrate
from app.services.outcomes.store import OutcomeStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC)


def outcome(i: int, **changes: Any) -> dict[str, Any]:
    row = {
        "received_at": NOW,
        "observed_at": NOW - timedelta(days=i),
        "week": "2026-11-30",
        "career": "Doctor" if i % 2 else "Teacher",
        "features": {"math": float(60 + i)},
        "subject_hash": None,
        "idempotency_hash": None,
        "model_version": "v1",
        "top1_correct": i % 3 == 0,
        "log_loss": 0.5 + i,
    }
    row.update(changes)
    return row


def db_command(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "app.db", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_documented_command_migrates_up_and_down(database_url: str) -> None:
    assert "at revision None" in db_command(database_url, "current")
    assert f"at revision {migrate.head()}" in db_command(database_url, "upgrade")
    engine = create_engine(database_url)
    columns = {c["name"] for c in inspect(engine).get_columns("outcomes")}
    assert {"subject_hash", "idempotency_hash", "features", "observed_at"} <= columns
    assert "student" not in columns and "subject_id" not in columns  # no raw identifiers
    assert "at revision None" in db_command(database_url, "downgrade", "base")
    assert "outcomes" not in inspect(engine).get_table_names()
    engine.dispose()
    db_command(database_url, "upgrade")  # and up again, idempotent with the store's own


def test_the_store_migrates_on_first_use_and_stores_all_or_nothing(database_url: str) -> None:
    store = OutcomeStore(database_url)
    assert store.add([outcome(i) for i in range(5)]) == 5
    with pytest.raises(Exception):  # noqa: B017 - a NOT NULL violation in the third row
        store.add([outcome(10), outcome(11), outcome(12, career=None)])
    assert store.counts(None)["total"] == 5  # nothing of the failed batch
    store.close()


def test_idempotency_keys_skip_records_stored_before(database_url: str) -> None:
    store = OutcomeStore(database_url)
    first = [outcome(i, idempotency_hash=f"k{i}") for i in range(4)] + [outcome(9)]
    assert store.add(first) == 5
    again = [outcome(i, idempotency_hash=f"k{i}") for i in range(2, 6)] + [outcome(9)]
    assert store.add(again) == 3  # k4, k5 and the one without a key
    assert store.counts(None)["total"] == 8
    store.close()


def test_erasure_retention_counts_quality_and_window(database_url: str) -> None:
    store = OutcomeStore(database_url)
    store.add([outcome(i, subject_hash="a" * 64 if i < 3 else None) for i in range(10)])
    counts = store.counts(NOW - timedelta(seconds=1))
    assert counts["total"] == 10 and counts["new"] == 10
    assert counts["by_career"] == {"Doctor": 5, "Teacher": 5}
    assert counts["by_week"] == [("2026-11-30", 10)]
    assert counts["newest"] == NOW and counts["oldest"] == NOW - timedelta(days=9)
    assert store.count_since(NOW) == 0
    n, top1, loss = store.quality("v1")
    assert (n, top1, loss) == (10, pytest.approx(0.4), pytest.approx(5.0))
    assert store.quality("other") == (0, None, None)
    window = store.window(NOW - timedelta(days=4, hours=1), limit=3)
    assert [w.observed_at for w in window] == [NOW - timedelta(days=d) for d in (2, 1, 0)]
    assert store.erase("a" * 64) == 3
    assert store.erase("a" * 64) == 0  # unknown now: nothing, no error
    assert store.purge(NOW - timedelta(days=7, hours=1)) == 2  # days 8 and 9
    assert store.counts(None)["total"] == 5
    store.close()


def test_a_database_that_is_down_is_unavailable_fast_and_recovers(tmp_path: Path) -> None:
    closed = "postgresql+psycopg://postgres@127.0.0.1:9/none"  # port 9: nothing listens
    store = OutcomeStore(closed)
    with pytest.raises(StoreUnavailable) as raised:
        store.counts(None)
    assert raised.value.retry_after and "127.0.0.1" not in raised.value.message
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.counts(None)  # within RETRY_S: refused without another connection attempt
    assert store.error and time.monotonic() - started < 1.0
    # A SQLite file in a directory that cannot be created is unavailable too.
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable):
        OutcomeStore(f"sqlite:///{blocker}/sub/outcomes.sqlite3").ping()
