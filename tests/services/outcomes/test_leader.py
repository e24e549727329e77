"""Exactly one scheduler across processes: two real processes contend for leadership (the
flock on the shared model volume, and PostgreSQL's advisory lock); when the leader dies,
the other takes over."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.databases import drop_postgres_database, fresh_postgres_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

CONTENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from app.services.outcomes.leader import FileLeadership, PostgresLeadership
    kind, where = sys.argv[1], sys.argv[2]
    leadership = FileLeadership(Path(where)) if kind == "file" else PostgresLeadership(where)
    deadline = time.monotonic() + 60
    was = None
    while time.monotonic() < deadline:
        now = leadership.hold()
        if now != was:
            print("leader" if now else "follower", flush=True)
            was = now
        time.sleep(0.05)
    """
)


def contender(kind: str, where: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CONTENDER, kind, where],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def contend(kind: str, where: str) -> None:
    one = contender(kind, where)
    try:
        assert first_line(one) == "leader"
        two = contender(kind, where)
        try:
            assert first_line(two) == "follower"  # the lock is held: not two leaders
            one.kill()  # a crash: the kernel (or the server) drops the lock
            one.wait()
            assert first_line(two) == "leader"
        finally:
            two.kill()
            two.wait()
    finally:
        one.kill()
        one.wait()


def test_one_leader_on_a_shared_volume(tmp_path: Path) -> None:
    contend("file", str(tmp_path))


def test_one_leader_with_a_postgres_advisory_lock(postgres_admin_url: str) -> None:
    url, name = fresh_postgres_database(postgres_admin_url)
    try:
        started = time.monotonic()
        contend("postgres", url)
        assert time.monotonic() - started < 60
    finally:
        drop_postgres_database(postgres_admin_url, name)
