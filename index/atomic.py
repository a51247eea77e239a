"""Crash-safe writes: build a file or directory beside its target, fsync, then rename into place.

A reader (or a process that is killed mid-save) sees either the old version or the new one,
never a mix. The temporaries of a writer that was killed are deleted by the next save of the same
target on the same host. Used by both packages: `siamese.checkpoint` imports it from here.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import glob
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .locking import write_lock
from .outputs import OutputRefused, check_output_directory, check_output_file, write_marker


def fsync_directory(path: Path) -> None:
    """Persist a directory entry (the rename itself) on POSIX; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_prefix(target: Path) -> str:
    """`.NAME.tmp-HOST-PID-`: whose temporary this is, so a later writer can tell an abandoned one
    (its process is gone) from one being written right now."""
    host = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
    return f".{target.name}.tmp-{host}-{os.getpid()}-"


def _remove_abandoned(target: Path) -> None:
    """Delete temporaries beside `target` left by writers of this host that were killed mid-save
    (a live or foreign writer's are kept). Only while `target` exists: until it does, a leftover
    may hold the only complete copy."""
    if not target.exists():
        return
    host_prefix = _temp_prefix(target).rsplit("-", 2)[0] + "-"
    for entry in target.parent.glob(f"{glob.escape(host_prefix)}*"):
        pid = entry.name[len(host_prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG)


def as_os_error(exc: BaseException, target: Path) -> OSError | None:
    """The OSError behind a library's own exception for a failed write (faiss's RuntimeError
    "write error ... (No space left on device)", SQLite's "database or disk is full", safetensors'
    "Os { code: 28 ... }"), so callers report every disk-full or read-only failure the same way;
    an OSError that names no file gets `target`'s name."""
    if isinstance(exc, OSError):
        return OSError(exc.errno, exc.strerror, str(target)) if exc.errno and not exc.filename else None
    if not isinstance(exc, Exception):
        return None
    text = str(exc)
    found = re.search(r"Os \{ code: (\d+)", text)
    number = int(found.group(1)) if found else None
    if number is None:
        number = next((n for n in _ENVIRONMENT_ERRNOS if os.strerror(n) in text), None)
    if number is None and "disk is full" in text:
        number = errno.ENOSPC
    if number is None and "readonly database" in text:
        number = errno.EROFS
    if number is None and "disk I/O error" in text:  # SQLite's word for a failed write, a full disk included
        number = errno.ENOSPC if _out_of_space(target) else errno.EIO
    return OSError(number, os.strerror(number), str(target)) if number is not None else None


def _out_of_space(target: Path) -> bool:
    try:
        stat = os.statvfs(target.absolute().parent)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 64 * 1024


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_directory(Path(dirpath))


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, kind: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces `target` as a whole.

    `target` must be new, empty or an earlier output of the same `kind` (`index.outputs`; with
    `overwrite`, any unprotected directory); the new directory is marked as a `kind` output. The
    writer lock of `target` is held for the whole write (`index.locking`). On Linux the two
    directories are swapped in one atomic step (renameat2 RENAME_EXCHANGE), so a crash at any point
    leaves a complete directory at `target`, old or new. Elsewhere the old one is moved aside first
    and removed only after the new one is in place.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    check_output_directory(target, kind, overwrite=overwrite)  # before the lock: a refusal leaves no trace
    with write_lock(target):
        parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(target)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a saved model/index is as readable as any file
        try:
            write_marker(tmp, kind)
            yield tmp
            _fsync_tree(tmp)
            if target.exists() and _exchange(tmp, target):
                fsync_directory(parent)
                shutil.rmtree(tmp, ignore_errors=True)
            elif target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
                os.rmdir(old)
                os.rename(target, old)
                os.rename(tmp, target)
                fsync_directory(parent)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
                fsync_directory(parent)
        except BaseException as exc:
            cause = as_os_error(exc, target)  # before the cleanup frees the space it ran out of
            shutil.rmtree(tmp, ignore_errors=True)
            if cause is not None:
                raise cause from exc
            raise


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "wb", *, suffixes: tuple[str, ...] | None = None) -> Iterator:
    """Open a temporary file beside `target`; on success fsync and rename it over `target`, holding
    the writer lock of `target` throughout (a file inside one of our folders is also covered by the
    folder's lock, which its writers hold).

    A folder at `target` is refused; with `suffixes` (a user-named output), so is an existing file
    of another type (`index.outputs.check_output_file`).
    """
    target = Path(target)
    if suffixes is not None:  # before the lock, so that a refusal leaves nothing behind
        check_output_file(target, suffixes)
    elif target.is_dir():
        raise OutputRefused(f"{target} is a folder; give a file path")
    with write_lock(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(target)
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), dir=target.parent)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600
        try:
            with os.fdopen(fd, mode) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, target)
            fsync_directory(target.parent)
        except BaseException as exc:
            cause = as_os_error(exc, target)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            if cause is not None:
                raise cause from exc
            raise


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when `path` is replaced by `atomic_directory` (a new inode, new times)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


T = TypeVar("T")


def read_consistently(
    directory: str | os.PathLike,
    read: Callable[[], T],
    retry_on: tuple[type[BaseException], ...],
    attempts: int = 50,
) -> T:
    """Run `read()` on a directory that another process may be replacing with `atomic_directory`.

    A reader that opens several files by path can straddle a swap (old manifest, new data), so
    the read is repeated, up to `attempts` times, whenever the directory was replaced while it
    ran; a failure (`retry_on`) with the directory unchanged is a real problem and is raised.
    """
    directory = Path(directory)
    for attempt in range(attempts):
        before = _identity(directory)
        last = attempt == attempts - 1
        try:
            result = read()
        except retry_on:
            if last or _identity(directory) == before:
                raise
            time.sleep(0.001 * (attempt + 1))
            continue
        if _identity(directory) == before or last:
            return result
    raise AssertionError("unreachable")  # the last attempt returns or raises
