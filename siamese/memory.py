"""Give freed heap memory back to the operating system between chunks of a long build.

glibc's malloc raises its trim threshold once large buffers have been freed, so the chunk-sized
buffers of a chunked build (items read, model outputs) stay mapped after they are freed and add
up to several chunks of resident memory on top of the index itself. `malloc_trim(0)` releases
them; it takes well under a millisecond per call. Elsewhere (musl, macOS, Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Callable

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        logger.debug("malloc_trim is not available; freed memory stays with the allocator")
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> None:
    """Return memory the allocator holds but no object uses (glibc only; otherwise nothing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
