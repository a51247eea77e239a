"""One writer at a time per saved directory: an exclusive `flock` on a lock file beside it.

Atomic renames give readers whole versions, but two writers that each load, change and save the
same index would silently drop one's change (the second save replaces the first). Every
read-modify-write of an index or model directory therefore holds `write_lock(target)`; a second
writer waits (up to a timeout, then a one-line error naming the holder). Readers never lock.
The lock is re-entrant within a thread, so a command may hold it around a load, an add and the
save that takes it again. The lock file (`.NAME.lock`) stays: deleting it would race.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from .errors import VectorIndexError

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process lock, only the in-process one
    fcntl = None  # type: ignore[assignment]

DEFAULT_LOCK_TIMEOUT = 600.0  # seconds a writer waits for another to finish
_POLL_SECONDS = 0.05
_HOLDER_MAX_BYTES = 4096

_timeout = DEFAULT_LOCK_TIMEOUT  # what write_lock waits when not told (the CLI's --lock-timeout sets it)
_registry_lock = threading.Lock()
_thread_locks: dict[str, threading.RLock] = {}
_process_holds: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth) held by this process


class LockTimeout(VectorIndexError):
    """Another writer held the lock for longer than the timeout."""


def lock_path(target: str | os.PathLike) -> Path:
    target = Path(target).absolute()
    return target.parent / f".{target.name}.lock"


def _holder_text() -> str:
    command = " ".join(Path(sys.argv[0]).name if i == 0 else arg for i, arg in enumerate(sys.argv))[:300]
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")})


def describe_holder(path: Path) -> str:
    """`pid 12 on HOST (siamese index add ...), since ...` as recorded by the holder, or a fallback."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(_HOLDER_MAX_BYTES).decode("utf-8"))
        return f"pid {int(data['pid'])} on {str(data['host'])[:64]} ({str(data['command'])[:120]}), since {str(data['since'])[:32]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _acquire_file(path: Path, target: Path, timeout: float) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{target} is being written by {describe_holder(path)}; waited {timeout:g} s. "
                        f"Run again when it has finished, or give --lock-timeout SECONDS to wait longer"
                    ) from None
                time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_text().encode("utf-8"), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def write_lock(target: str | os.PathLike, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive writer lock of `target` (a directory or file path) for the block."""
    timeout = _timeout if timeout is None else float(timeout)
    target = Path(target)
    path = lock_path(target)
    key = str(path)
    with _registry_lock:
        in_process = _thread_locks.setdefault(key, threading.RLock())
    if not in_process.acquire(timeout=timeout):
        raise LockTimeout(f"{target} is being written by another thread of this process; waited {timeout:g} s")
    try:
        held = _process_holds.get(key)
        if held is not None:  # re-entered by the thread that holds it
            _process_holds[key] = (held[0], held[1] + 1)
            try:
                yield
            finally:
                fd, depth = _process_holds[key]
                _process_holds[key] = (fd, depth - 1)
            return
        fd = _acquire_file(path, target, timeout) if fcntl is not None else -1
        _process_holds[key] = (fd, 1)
        try:
            yield
        finally:
            del _process_holds[key]
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
    finally:
        in_process.release()


def set_lock_timeout(seconds: float) -> None:
    """How long every later `write_lock` of this process waits for another writer."""
    global _timeout
    if not (0 <= seconds < float("inf")):
        raise VectorIndexError(f"--lock-timeout must be a number of seconds >= 0, got {seconds}")
    _timeout = float(seconds)
