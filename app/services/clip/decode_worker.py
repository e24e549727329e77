"""The decode worker: one child process that turns image bytes into the model's input.

It runs what a hostile file can make expensive (the structure scan, Pillow's header
parsers, the decoders, resizing) apart from the server, under an address-space limit; the
parent (`decode_pool`) adds a deadline and replaces a worker that misses it or dies. Bytes
come in and pixels go out through shared memory; the pipe carries only small messages. It
imports no torch.
"""

import resource
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from app.core.exceptions import AppError, ImageTooComplex
from app.services.clip.preprocess import MIN_DECODED_SIDE, ImageSpec, region_of, to_array
from app.utils.image_structure import StructureLimits, check_structure
from app.utils.images import load_image, open_image


@dataclass(frozen=True)
class WorkerSetup:
    """What every job of a worker shares: where the bytes and pixels live, and the limits."""

    shm_name: str
    in_capacity: int  # bytes of shared memory for the input; the output follows
    spec: ImageSpec | None
    max_pixels: int
    memory_mb: int
    structure: StructureLimits


def output_bytes(spec: ImageSpec | None) -> int:
    """Shared memory for one preprocessed image (float32, 3 x height x width)."""
    return 0 if spec is None else 3 * spec.size[0] * spec.size[1] * 4


def serve(conn: Connection, setup: WorkerSetup) -> None:
    """Answer jobs `(length, field)` until told `None`: `("ok", None)` with the pixels in
    shared memory, `("ok", image)` without a spec, or `("error", name, message, details)`
    (`"exhausted"` in place of `"error"` when this worker is spent and exits)."""
    # The parent creates and unlinks the segment. Under the forkserver this process shares
    # the parent's resource tracker, so attaching adds nothing to it; unregistering here
    # would remove the parent's own entry, and its unlink at shutdown would then make the
    # tracker print a KeyError traceback.
    shm = SharedMemory(name=setup.shm_name)
    memory = shm.buf
    assert memory is not None
    out = None
    if setup.spec is not None:
        height, width = setup.spec.size
        out = np.ndarray((3, height, width), np.float32, buffer=memory, offset=setup.in_capacity)
    _limit_memory(setup.memory_mb)
    try:
        while (job := conn.recv()) is not None:
            length, field = job
            try:
                # The pixels are written straight into shared memory (`out`).
                conn.send(("ok", _prepare(bytes(memory[:length]), field, setup, out)))
            except AppError as exc:
                conn.send(("error", type(exc).__name__, exc.message, exc.details))
            except MemoryError:
                conn.send(_over_memory(field, setup.memory_mb))
                return  # its heap may be in pieces: the parent starts a fresh worker
    finally:
        del out, memory  # no view may outlive the mapping
        shm.close()


def _prepare(data: bytes, field: str, setup: WorkerSetup, out: np.ndarray | None) -> Any:
    """None once the pixels are in `out`; without a spec, the decoded image itself."""
    check_structure(data, setup.structure, name=field)
    image = open_image(data, max_pixels=setup.max_pixels, name=field)
    try:
        if setup.spec is None or out is None:  # open_clip's own transform runs in the server
            upright = load_image(image, min_side=MIN_DECODED_SIDE, name=field).image
            # An RGB picture needs no conversion, so it may be `image` itself, which is
            # closed below: the parent gets a copy that outlives it.
            return upright.copy() if upright is image else upright
        decoded = load_image(
            image, min_side=setup.spec.min_side, region=region_of(setup.spec), name=field
        )
        to_array(decoded, setup.spec, out)
        return None
    finally:
        image.close()


def _over_memory(field: str, memory_mb: int) -> tuple[str, str, str, list[dict[str, Any]]]:
    """The answer of a worker that ran out of memory and exits ("exhausted": the parent
    replaces it; an "error" leaves the worker serving)."""
    error = ImageTooComplex(
        f"{field} needs more than {memory_mb} MB to decode (IMAGE_DECODE_MAX_MB).",
        details=[{"field": field, "limit_mb": memory_mb, "setting": "IMAGE_DECODE_MAX_MB"}],
    )
    return ("exhausted", type(error).__name__, error.message, error.details)


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what the worker uses now plus `memory_mb`: an allocation
    beyond it fails (MemoryError) instead of growing until the kernel kills something."""
    with open("/proc/self/status") as status:
        used_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = used_kb * 1024 + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
