"""Large request buffers go back to the operating system when they are freed (glibc only).

glibc serves an allocation of at least M_MMAP_THRESHOLD bytes with its own mmap, unmapped
on free; smaller ones come from the heap, whose free space the process keeps. The
threshold starts at 128 KiB but is dynamic: each time a mapped block is freed it rises to
that block's size (up to 32 MiB on 64-bit). After one large upload, every buffer of a few
MiB (a decoded image, a base64 string, a JSON body) therefore lands on the heap, and a
burst of them leaves the process hundreds of MB larger for good. Setting the threshold
explicitly turns the dynamic adjustment off, so such buffers stay mapped and are returned
when freed. The price is a page fault per touched page of each new large block, which
slows large-tensor work (torch on CPU) a little: MALLOC_MMAP_THRESHOLD_KB=0 keeps glibc's
dynamic threshold.
"""

import ctypes
import logging

logger = logging.getLogger(__name__)

# From glibc's malloc.h; not exported by ctypes.
M_MMAP_THRESHOLD = -3


def return_large_buffers_to_os(threshold_bytes: int) -> bool:
    """Fix glibc's mmap threshold at `threshold_bytes`; False where this is not glibc or
    glibc refused the value (it is logged at debug level, the process runs unchanged)."""
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except (OSError, TypeError):
        libc = None
    # Only glibc has gnu_get_libc_version (musl has a mallopt that does nothing).
    if libc is None or not hasattr(libc, "gnu_get_libc_version"):
        logger.debug("not glibc: the allocator's mmap threshold is left as it is")
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, threshold_bytes) != 1:
        logger.debug("glibc refused an mmap threshold of %d bytes", threshold_bytes)
        return False
    logger.debug("glibc mmap threshold fixed at %d bytes", threshold_bytes)
    return True
