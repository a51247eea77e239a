"""One BLAS thread for the calling thread, so several Python threads can each run their own sgemm.

numpy's OpenBLAS splits every sgemm over all cores. Worker threads that interleave small GEMMs
with numpy work then fight OpenBLAS's spinning threads (measured 5-10x slower on 2 busy cores).
OpenBLAS >= 0.3.27 has a per-thread setting, `openblas_set_num_threads_local`, which this calls
through ctypes on the library numpy already loaded (no new dependency). Where it is missing
(another BLAS, an older OpenBLAS, numpy's copy not found) `blas_limit_available()` is False and
callers stay on one Python thread.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

_SYMBOL = "openblas_set_num_threads_local"


def _numpy_uses_openblas() -> bool:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # numpy without the dict form of its build configuration
        return False
    return "openblas" in str(blas.get("name", "")).lower()


def _numpy_openblas() -> list[str]:
    """numpy's OpenBLAS: the copy bundled in its wheel, else the only OpenBLAS this process has
    mapped (Linux); never a guess between several, which could limit another library's BLAS."""
    numpy_dir = os.path.dirname(np.__file__)  # also a prefix of the wheels' numpy.libs/
    mapped: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if path.startswith("/") and "openblas" in os.path.basename(path).lower() and path not in mapped:
                    mapped.append(path)
    except OSError:
        mapped = [path for folder in (numpy_dir + ".libs", os.path.join(numpy_dir, ".dylibs"))
                  for path in sorted(glob.glob(os.path.join(folder, "*openblas*")))]
    bundled = [path for path in mapped if path.startswith(numpy_dir)]
    return bundled or (mapped if len(mapped) == 1 else [])


@functools.lru_cache(maxsize=1)
def _setter() -> Callable[[int], int] | None:
    if not _numpy_uses_openblas():
        return None
    for path in _numpy_openblas():
        try:
            function = getattr(ctypes.CDLL(path), _SYMBOL)
        except (OSError, AttributeError):
            continue
        function.restype, function.argtypes = ctypes.c_int, [ctypes.c_int]
        return function
    return None


def blas_limit_available() -> bool:
    """True when `one_blas_thread()` really limits numpy's BLAS for the calling thread."""
    return _setter() is not None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's sgemm runs on the calling thread alone inside the block (other threads keep theirs)."""
    setter = _setter()
    if setter is None:
        yield
        return
    previous = setter(1)
    try:
        yield
    finally:
        setter(previous)
