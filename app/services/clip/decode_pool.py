"""Image decoding in worker processes, each with a deadline and a memory limit.

A decoder bomb that nobody has found yet must cost one worker and one answer, never the
server. So every image is opened, decoded and preprocessed in a child process
(`decode_worker`): one that misses IMAGE_DECODE_TIMEOUT_MS is killed, one that needs more
than IMAGE_DECODE_MAX_MB fails its allocation or dies, and either way a fresh worker
takes its place and the image is answered 422 IMAGE_TOO_COMPLEX. Before decoding, the
worker scans the file's structure (`image_structure`) and refuses scan, marker and chunk
floods; the scan reads the whole file, so it runs there too, under the same deadline, and
not on the server's CPU.

Each worker has a slot of shared memory for one image's bytes and its pixels, so a job
crosses the process boundary as one copy each way, without pickling. Callers are threads
(the engine's preprocess pool, as many threads as workers): each takes an idle worker,
waits for its answer and gives it back.
"""

import contextlib
import logging
import multiprocessing
import queue
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from app.core import exceptions
from app.core.exceptions import AppError, ImageTooComplex
from app.services.clip.decode_worker import WorkerSetup, output_bytes, serve
from app.services.clip.preprocess import ImageSpec
from app.utils.image_structure import StructureLimits

logger = logging.getLogger(__name__)

# forkserver: workers start from a clean process that has imported only the decoder's
# modules (no torch, no threads of the server), and a replacement starts in milliseconds.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["app.services.clip.decode_worker"])


@dataclass(frozen=True)
class DecodeBudget:
    """What one image may cost: bytes and pixels (checked before decoding), structure
    (checked by a scan), and the time and memory its decoding may take."""

    max_bytes: int
    max_pixels: int
    structure: StructureLimits
    timeout_s: float
    memory_mb: int


class _Worker:
    """One child process, its pipe and its shared-memory slot (kept across restarts)."""

    def __init__(self, setup: WorkerSetup, shm: SharedMemory) -> None:
        self.setup = setup
        self.shm = shm
        self.conn: Connection
        self.process: BaseProcess
        self.start()

    def start(self) -> None:
        self.conn, child = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(
            target=serve, args=(child, self.setup), name="clip-decode", daemon=True
        )
        self.process.start()
        child.close()

    def restart(self) -> None:
        self.stop(grace_s=0)
        self.start()

    def stop(self, grace_s: float = 1.0) -> None:
        if grace_s and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class DecodePool:
    """Decode and preprocess images in `size` worker processes; see the module doc."""

    def __init__(self, size: int, spec: ImageSpec | None, budget: DecodeBudget) -> None:
        self.spec = spec
        self.budget = budget
        self.replaced = 0  # workers killed (deadline) or lost (memory, crash)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        for _ in range(size):
            shm = SharedMemory(create=True, size=budget.max_bytes + output_bytes(spec))
            setup = WorkerSetup(
                shm.name,
                budget.max_bytes,
                spec,
                budget.max_pixels,
                budget.memory_mb,
                budget.structure,
            )
            worker = _Worker(setup, shm)
            self._workers.append(worker)
            self._idle.put(worker)

    def prepare(self, data: bytes, field: str) -> Any:
        """The model's input for one image (an upright RGB image without a spec); blocks.

        Raises the decoder's own errors (400, 413, 415) or ImageTooComplex (422)."""
        worker = self._idle.get()
        try:
            return self._run(worker, data, field)
        finally:
            self._idle.put(worker)

    def _run(self, worker: _Worker, data: bytes, field: str) -> Any:
        memory = worker.shm.buf
        assert memory is not None
        memory[: len(data)] = data
        try:
            worker.conn.send((len(data), field))
            if not worker.conn.poll(self.budget.timeout_s):
                self._replace(worker, f"{field} missed the decode deadline")
                ms = round(self.budget.timeout_s * 1000)
                raise ImageTooComplex(
                    f"{field} takes longer than {ms} ms to decode (IMAGE_DECODE_TIMEOUT_MS).",
                    details=[
                        {"field": field, "limit_ms": ms, "setting": "IMAGE_DECODE_TIMEOUT_MS"}
                    ],
                )
            reply = worker.conn.recv()
        except (EOFError, OSError) as exc:  # the worker died: out of memory, or a crash
            self._replace(worker, f"the decoder of {field} died ({exc!r})")
            raise ImageTooComplex(
                f"{field} could not be decoded within IMAGE_DECODE_MAX_MB "
                f"({self.budget.memory_mb} MB).",
                details=[{"field": field, "setting": "IMAGE_DECODE_MAX_MB"}],
            ) from exc
        if reply[0] != "ok":
            if reply[0] == "exhausted" or not worker.process.is_alive():
                worker.process.join(1)  # it exits after saying so
                self._replace(worker, f"{field} exhausted its worker")
            raise _domain_error(*reply[1:])
        if self.spec is None:
            return reply[1]
        height, width = self.spec.size
        pixels = np.ndarray(
            (3, height, width), np.float32, buffer=memory, offset=self.budget.max_bytes
        )
        return pixels.copy()

    def _replace(self, worker: _Worker, why: str) -> None:
        self.replaced += 1
        logger.warning("replacing a CLIP decode worker: %s", why)
        worker.restart()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
            worker.shm.close()
            with contextlib.suppress(FileNotFoundError):
                worker.shm.unlink()


def _domain_error(name: str, message: str, details: list[dict[str, Any]]) -> AppError:
    """The worker's error as the same domain error, rebuilt here (errors are not pickled)."""
    kind = getattr(exceptions, name, None)
    if not (isinstance(kind, type) and issubclass(kind, AppError)):
        kind = exceptions.InvalidImage
    return kind(message, details=details)
