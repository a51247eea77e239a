"""On-disk layout of a saved index and its integrity checks.

A saved index is a directory::

    manifest.json   format "siamese-index", format_version 1, dim, metric, kind, params, count,
                    next_id, model_fingerprint, info, created_at, library versions and the
                    sha256 + size of every other file
    vectors.faiss   faiss.write_index output
    meta.sqlite     item metadata (see metadata.py)
    vectors.npy     float32 (count, dim) stored vectors   } flat/hnsw by default,
    ids.npy         int64 (count,) their ids              } ivf/ivfpq on request
    lists.ivfdata   inverted lists of a merged shard index (faiss OnDiskInvertedLists, memory-mapped;
                    see shards.py); vectors.faiss then holds the quantizer and list offsets only
    .verified.json  the record of the last full check, not listed in the manifest (verification.py)

Checksums are verified before any file is parsed (or, when a record of an earlier full check
vouches for an unchanged file, were verified then): faiss's reader trusts the sizes written in the
file, so unverified bytes must never reach it; vectors.faiss is always hashed on the bytes it reads. A checksum only detects corruption or edits
that did not also rewrite the manifest; for files from an untrusted source load with
`untrusted=True`, which never parses vectors.faiss.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .errors import VectorIndexError
from .safe_json import dumps, read_json

FORMAT = "siamese-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FAISS_FILE = "vectors.faiss"
META_FILE = "meta.sqlite"
VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.npy"
IVFDATA_FILE = "lists.ivfdata"
KNOWN_FILES = (FAISS_FILE, META_FILE, VECTORS_FILE, IDS_FILE, IVFDATA_FILE)
_CHUNK = 1 << 20
_RESTORE = "restore the index from a good copy"

_REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "dim": int,
    "metric": str,
    "kind": str,
    "params": dict,
    "count": int,
    "next_id": int,
    "model_fingerprint": (str, type(None)),
    "info": dict,
    "files": dict,
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json; refuses a manifest `read_manifest` would refuse (too large or deep)."""
    text = dumps(manifest, MANIFEST, "keep the index info small and shallow", indent=2, sort_keys=True, allow_nan=False)
    (directory / MANIFEST).write_text(text + "\n", encoding="utf-8")


def is_index_directory(path: Path) -> bool:
    """True if `path` holds a manifest of this format (so overwriting it is expected)."""
    try:
        data = read_json(path / MANIFEST, MANIFEST, _RESTORE)
    except (OSError, VectorIndexError):
        return False
    return data.get("format") == FORMAT


def _shown(value: Any) -> str:
    """repr of a value read from a file, cut short for a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_manifest(directory: Path) -> dict[str, Any]:
    """Parse and shape-check manifest.json; VectorIndexError naming the file on any problem."""
    path = directory / MANIFEST
    if not directory.is_dir():
        what = "is a file, not an index directory" if directory.exists() else "does not exist"
        raise VectorIndexError(f"index directory {str(directory)!r} {what}; give the folder an index was saved to "
                               "(siamese index build --out, VectorIndex.save)")
    try:
        data = read_json(path, f"{MANIFEST} in {str(directory)!r}", _RESTORE)
    except FileNotFoundError:
        raise VectorIndexError(
            f"{MANIFEST} is missing in {str(directory)!r}; "
            f"this is not a saved index (or the save was incomplete)"
        ) from None
    if data.get("format") != FORMAT:
        raise VectorIndexError(
            f"{MANIFEST} has format {_shown(data.get('format'))}, expected {FORMAT!r}; "
            f"this directory is not a siamese index"
        )
    version = data.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise VectorIndexError(
            f"{MANIFEST} has format_version {_shown(version)} but this library reads version {FORMAT_VERSION}; "
            f"use a matching library version or re-save the index"
        )
    for field, types in _REQUIRED_FIELDS.items():
        value = data.get(field)
        if field not in data or not isinstance(value, types) or isinstance(value, bool):
            raise VectorIndexError(
                f"{MANIFEST} field {field!r} is missing or has the wrong type ({_shown(value)}); "
                f"restore the index from a good copy"
            )
    for field in ("dim", "count", "next_id"):
        if data[field] < (1 if field == "dim" else 0):
            raise VectorIndexError(
                f"{MANIFEST} field {field!r} has invalid value {data[field]!r}; "
                f"restore the index from a good copy"
            )
    for name, entry in data["files"].items():
        if name not in KNOWN_FILES:
            raise VectorIndexError(
                f"{MANIFEST} lists unexpected file {_shown(name)}; expected only {', '.join(KNOWN_FILES)}"
            )
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("bytes"), int)
        ):
            raise VectorIndexError(
                f"{MANIFEST} entry for {name} must have sha256 and bytes; "
                f"restore the index from a good copy"
            )
    return data


def _check_entry(directory: Path, name: str, manifest: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    entry = manifest["files"].get(name)
    if entry is None:
        raise VectorIndexError(f"{MANIFEST} does not list {name}; restore the index from a good copy")
    path = directory / name
    if not path.is_file():
        raise VectorIndexError(f"{name} is missing from {str(directory)!r}; restore the index from a good copy")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise VectorIndexError(
            f"{name} has {size} bytes but {MANIFEST} records {entry['bytes']} (truncated or modified); "
            f"restore the index from a good copy"
        )
    return path, entry


def _mismatch(name: str) -> VectorIndexError:
    return VectorIndexError(f"{name} fails its sha256 check (corrupted or modified since save); restore the index from a good copy")


def _unreadable(name: str, exc: OSError) -> VectorIndexError:
    return VectorIndexError(f"{name} cannot be read ({exc.strerror or exc}); restore the index from a good copy")


def verify_file(directory: Path, name: str, manifest: dict[str, Any]) -> Path:
    """Check presence, size and sha256 of one listed file; return its path."""
    path, entry = _check_entry(directory, name, manifest)
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise _unreadable(name, exc) from None
    if digest != entry["sha256"]:
        raise _mismatch(name)
    return path


def verified_bytes(directory: Path, name: str, manifest: dict[str, Any]) -> bytes:
    """Read one listed file into memory and check its sha256 on exactly those bytes."""
    path, entry = _check_entry(directory, name, manifest)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _unreadable(name, exc) from None
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise _mismatch(name)
    return data
