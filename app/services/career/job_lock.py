"""One retraining job at a time, across every process (and host) sharing the model directory.

A job's process is identified by pid *and* start time, so a recycled pid never keeps a
dead job alive; a holder on another host proves it is alive by a heartbeat instead.
"""

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core.exceptions import Conflict
from app.utils.files import atomic_write

logger = logging.getLogger(__name__)

LOCK = "LOCK"
# Every change of LOCK holds an exclusive flock on this file: judging a lock stale and
# taking it over is one step, whichever processes race for it.
LOCK_GUARD = "LOCK.guard"
# A lock held from another container or host (replicas sharing CAREER_MODEL_DIR) cannot
# be checked in /proc: its worker touches it every HEARTBEAT_S, and it counts as stale
# once untouched for FOREIGN_STALE_S.
HEARTBEAT_S = 10.0
FOREIGN_STALE_S = 120.0


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


# -- process identity -------------------------------------------------------------------------


def _boot_id() -> str:
    return read_text(Path("/proc/sys/kernel/random/boot_id")) or "boot"


def namespace_id() -> str:
    """This kernel boot and pid namespace: where a pid means something. Pods on one node
    share the boot id but not the namespace; other hosts share neither."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "pidns"
    return f"{_boot_id()}/{namespace}"


def is_here(start: str | None) -> bool:
    """Was this process identity recorded in this boot and pid namespace (so /proc can
    tell whether it still runs)?"""
    return start is not None and start.rsplit(":", 1)[0] == namespace_id()


def process_start(pid: int | None) -> str | None:
    """Who a pid is: boot id and start time (/proc/<pid>/stat field 22), or None when no
    such process runs (zombies included). A recycled pid gets another start time."""
    if not pid or pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        if Path("/proc/self/stat").exists():
            return None
        return _start_without_proc(pid)
    fields = stat[stat.rfind(")") + 2 :].split()  # the name in (...) may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return f"{namespace_id()}:{fields[19]}"


def _start_without_proc(pid: int) -> str | None:
    """No /proc (not Linux): the pid alone, the best this platform offers."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"{namespace_id()}:pid{pid}"


def same_process(pid: int | None, start: str | None) -> bool:
    """Is the process that was recorded as (pid, start) still running?"""
    return start is not None and process_start(pid) == start


# -- the lock ---------------------------------------------------------------------------------


class JobLock:
    """One retraining job at a time across every process sharing the model directory.

    LOCK holds {job_id, pid, start}: the submitting server until the worker starts, then
    the worker. It is stale once that process is gone. A holder this process cannot see
    (another container or host sharing the directory) counts as alive while it touches
    LOCK every HEARTBEAT_S, and as gone once LOCK is FOREIGN_STALE_S old. Every
    read-judge-write of LOCK runs under an exclusive flock on LOCK.guard, which the kernel
    drops if its holder dies.
    """

    def __init__(self, jobs_dir: Path) -> None:
        self.path = jobs_dir / LOCK
        self.guard = jobs_dir / LOCK_GUARD

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.guard, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        """The lock's record; a lock written by an older version (a bare job id) has no pid."""
        text = read_text(self.path)
        if not text and not self.path.exists():
            return None
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            return {"job_id": text, "pid": None, "start": None}
        return record

    def _live(self, holder: dict[str, Any]) -> bool:
        start = holder.get("start")
        if is_here(start):
            return same_process(holder.get("pid"), start)
        if start is None:  # a bare job id, written by an older version: no way to tell
            return False
        try:
            return time.time() - self.path.stat().st_mtime < FOREIGN_STALE_S
        except OSError:
            return False

    def beat(self, job_id: str) -> None:
        """The holder is alive: refresh LOCK's time (for servers that cannot see it)."""
        with self._guarded():
            holder = self.holder()
            if holder is not None and holder.get("job_id") == job_id:
                os.utime(self.path)

    def _write(self, job_id: str, pid: int, start: str | None) -> None:
        record = {"job_id": job_id, "pid": pid, "start": start}
        atomic_write(self.path, json.dumps(record).encode(), mode=0o644)

    def take(self, job_id: str) -> None:
        """Hold the lock for a new job (this process), or 409 while a live job holds it."""
        with self._guarded():
            holder = self.holder()
            if holder is not None and self._live(holder):
                raise Conflict(
                    f"Retraining job {holder['job_id']} is still running; one job runs at a time.",
                    details=[{"job_id": holder["job_id"]}],
                )
            if holder is not None:
                logger.warning(
                    "taking over the lock of retraining job %s: its process is gone",
                    holder.get("job_id"),
                )
            self._write(job_id, os.getpid(), process_start(os.getpid()))

    def hand_over(self, job_id: str, pid: int, start: str | None) -> None:
        """The worker has started: the lock lives as long as it does."""
        with self._guarded():
            holder = self.holder()
            if holder is not None and holder.get("job_id") == job_id:
                self._write(job_id, pid, start)

    def release(self, job_id: str) -> None:
        """Remove the lock, but only while it is this job's."""
        with self._guarded():
            holder = self.holder()
            if holder is not None and holder.get("job_id") == job_id:
                self.path.unlink(missing_ok=True)

    def release_if_stale(self) -> None:
        with self._guarded():
            holder = self.holder()
            if holder is not None and not self._live(holder):
                self.path.unlink(missing_ok=True)
                logger.warning("removed the stale lock of retraining job %s", holder.get("job_id"))

    def held_for(self, job_id: str) -> bool:
        """Is the lock this job's, held by a live process?"""
        holder = self.holder()
        return holder is not None and holder.get("job_id") == job_id and self._live(holder)
