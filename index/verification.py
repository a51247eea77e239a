"""Verify a saved index once, record it, and trust the record while its files stay the same files.

A full check reads every byte: the sha256 of every file, every metadata row, and the ids of the
faiss file against the metadata's (20 s for a 10M-item index). `save` and `index merge` record
that the files they just wrote are whole (`RECORD`, beside the manifest); a load that finds no
valid record runs the full check and writes one (best effort: skipped when the directory is
read-only or a writer holds its lock). A record names the manifest's sha256 and, per file, its
identity: device, inode, size, modification and change times in ns. The change time is set by
the kernel on every write, rename, chmod or copy and cannot be set by a user process, and a copy or
replaced file has a new inode, so a matching identity means the bytes were not changed through
the file system since they were checked.

Why this keeps the reliability promises: the checksum guards against damage (a truncated or torn
copy, an edit that did not also rewrite the manifest), and any such change alters the identity, so
the file is checked again. A forged or stale record can only skip the checksum: every read still
checks what it reads (the manifest, the faiss file's structure and sha256, the metadata schema on
open and each row as it is read), so a hostile file still gets a clear error. What a record
cannot see is bits flipped below the file system; `siamese index check INDEX` checks everything
again, and `untrusted=True` loads never use a record.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable, Iterable

from .errors import VectorIndexError
from .locking import write_lock
from .safe_json import dumps, read_json

logger = logging.getLogger(__name__)

RECORD = ".verified.json"
_FORMAT = "siamese-index-verified"


def identity(path: Path) -> list[int]:
    """What changes when the file's bytes change through the file system (see the module docs)."""
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def trusted_files(directory: Path, manifest_sha256: str | None) -> set[str]:
    """Names of the files a record in `directory` vouches for: same manifest, same identity."""
    try:
        record = read_json(directory / RECORD, RECORD, "it is rewritten by the next full check")
    except (OSError, VectorIndexError):
        return set()
    files = record.get("files")
    same_version = (record.get("format"), record.get("manifest_sha256")) == (_FORMAT, manifest_sha256)
    if not same_version or not isinstance(files, dict):
        return set()
    trusted = set()
    for name, recorded in files.items():
        with contextlib.suppress(OSError, ValueError):
            if "/" not in name and recorded == identity(directory / name):
                trusted.add(name)
    return trusted


def identities(directory: Path, names: Iterable[str]) -> dict[str, list[int]]:
    """The identity of each named file of `directory`, taken before a check reads it (so a change
    made while the check runs is not vouched for). A file that cannot be read is left out: the check
    itself reports it."""
    found = {}
    for name in names:
        with contextlib.suppress(OSError):
            found[name] = identity(directory / name)
    return found


def write_record(directory: Path, manifest_sha256: str, files: dict[str, list[int]]) -> None:
    """Record that the files of `directory` with these identities (and its manifest) passed a full check.

    A plain rename rather than `atomic_file`: callers already hold the folder's lock (or write into a
    save's private temporary folder), and `atomic_file`'s own lock file would land inside the index;
    no fsync, because a record lost in a crash only costs the next load a full check."""
    record = {"format": _FORMAT, "manifest_sha256": manifest_sha256, "files": files}
    tmp = directory / f"{RECORD}.{os.getpid()}.tmp"
    try:
        tmp.write_text(dumps(record, RECORD, "") + "\n", encoding="utf-8")
        os.replace(tmp, directory / RECORD)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def record_after_check(directory: Path, manifest_sha256: str, files: dict[str, list[int]],
                       still_current: Callable[[], bool]) -> None:
    """`write_record` from a reader: only if no writer holds the directory's lock and the directory
    is still the version that was checked (`still_current()`); a failure only costs the next load a
    full check again."""
    try:
        with write_lock(directory, timeout=0):
            if still_current():
                write_record(directory, manifest_sha256, files)
    except (OSError, VectorIndexError) as exc:
        logger.debug("could not record the check of %s (%s); the next load checks it again", directory, exc)
