"""Saving and loading a `VectorIndex`: atomic directory writes, verified loads, and the untrusted
load that rebuilds the faiss index from vectors.npy/ids.npy instead of parsing vectors.faiss."""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import re
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from . import mutation as _mutation
from . import storage as _storage
from . import verification as _verification
from ._checks import check_positive_int, iter_row_chunks, to_float32, to_json
from ._faiss import bounded_faiss_reads
from .atomic import atomic_directory, read_consistently
from .locking import write_lock
from .errors import VectorIndexError
from .outputs import check_output_directory
from .backends import Backend, largest_honest_array, make_backend, map_lists
from .kinds import IndexParams
from .metadata import MetadataStore
from .metadata_view import SavedMetadata
from .metrics import METRICS, Metric

logger = logging.getLogger(__name__)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def describe_array(arr: np.ndarray) -> str:
    return f"{arr.dtype} {tuple(arr.shape)}"


def save(directory: Path, backend: Backend, meta: MetadataStore, fields: dict[str, Any], *, chunk_size: int,
         store_vectors: bool | None, overwrite: bool, loaded_from: tuple[str, str | None] | None) -> tuple[str, str | None]:
    """Write an index to `directory` atomically (see `VectorIndex.save`), holding its writer lock.

    `fields` are the index's own manifest entries (dim, metric, kind, params, count, next_id, seed,
    model_fingerprint, info, created_at); `loaded_from` is the origin it was loaded from, if any.
    Returns the new origin (`origin_of(directory)`)."""
    if not backend.is_trained:
        raise VectorIndexError(
            f"kind {fields['kind']!r} is untrained and has nothing to save; "
            f"call train() and add() first"
        )
    backend.check_writable("save")
    check_output_directory(directory, "index", overwrite=overwrite)  # before the lock: a refusal leaves no trace
    with write_lock(directory):
        _check_unchanged_since_load(loaded_from, directory)
        _save_locked(directory, backend, meta, fields, chunk_size, store_vectors, overwrite)
        origin = origin_of(directory)
    logger.info("saved %r index of %d vectors to %s", fields["kind"], fields["count"], directory)
    return origin


def origin_of(directory: Path) -> tuple[str, str | None]:
    """(resolved path, sha256 of its manifest.json or None): which saved version an index came from."""
    manifest = directory / _storage.MANIFEST
    return str(directory.resolve()), _storage.sha256_file(manifest) if manifest.is_file() else None


def _check_unchanged_since_load(loaded: tuple[str, str | None] | None, directory: Path) -> None:
    """Refuse to save over a version another writer saved after this index was loaded from the
    same directory: replacing it would silently drop that writer's change (a lost update)."""
    if loaded is None or loaded[0] != str(directory.resolve()):
        return
    if origin_of(directory) != loaded:
        raise VectorIndexError(
            f"{directory} was saved by another writer after this index was loaded from it; saving now "
            f"would drop that change. Load it again and repeat yours, or save to a new path"
        )


def _save_locked(directory: Path, backend: Backend, meta: MetadataStore, fields: dict[str, Any], chunk_size: int,
                 store_vectors: bool | None, overwrite: bool) -> None:
    if store_vectors is None:
        store_vectors = backend.stores_vectors
    to_json(fields["info"], "info")
    backend.compact(chunk_size)
    with atomic_directory(directory, "index", overwrite=overwrite) as tmp:
        backend.write(tmp / _storage.FAISS_FILE)
        meta.save(tmp / _storage.META_FILE)
        names = [_storage.FAISS_FILE, _storage.META_FILE]
        if store_vectors:
            _write_vectors(backend, fields["count"], fields["dim"], chunk_size, tmp)
            names += [_storage.VECTORS_FILE, _storage.IDS_FILE]
        manifest = {
            "format": _storage.FORMAT,
            "format_version": _storage.FORMAT_VERSION,
            **fields,
            "saved_at": now(),
            "libraries": {"numpy": np.__version__, "faiss": faiss.__version__, "python": platform.python_version()},
            "files": {name: _storage.file_entry(tmp / name) for name in names},
        }
        _storage.write_manifest(tmp, manifest)
        _verification.write_record(tmp, _storage.sha256_file(tmp / _storage.MANIFEST),
                                   _verification.identities(tmp, names))


def _write_vectors(backend: Backend, count: int, dim: int, chunk_size: int, directory: Path) -> None:
    vpath, ipath = directory / _storage.VECTORS_FILE, directory / _storage.IDS_FILE
    if count == 0:
        np.save(vpath, np.empty((0, dim), dtype=np.float32), allow_pickle=False)
        np.save(ipath, np.empty(0, dtype=np.int64), allow_pickle=False)
        return
    # plain writes, not a memory map: a full disk is then an OSError, not a SIGBUS on a mapped page
    with open(vpath, "wb") as vectors, open(ipath, "wb") as ids:
        np.lib.format.write_array_header_1_0(vectors, {"descr": "<f4", "fortran_order": False, "shape": (count, dim)})
        np.lib.format.write_array_header_1_0(ids, {"descr": "<i8", "fortran_order": False, "shape": (count,)})
        pos = 0
        for chunk_ids, chunk in backend.iter_vectors(chunk_size):
            vectors.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
            ids.write(np.ascontiguousarray(chunk_ids, dtype="<i8").tobytes())
            pos += chunk_ids.size
    if pos != count:
        raise RuntimeError(f"wrote {pos} vectors for {count} items")


def load(directory: Path, untrusted: bool, chunk_size: int, metadata_in_ram: bool,
         full_check: bool) -> dict[str, Any]:
    """`VectorIndex.load`: the keyword arguments of the `VectorIndex` it makes, all checked against
    each other, from one version of the directory (`load_once` is repeated while a save replaces it).

    Files a valid record vouches for (index.verification) are not read whole again; without one,
    every file is checked and compared with the others, and the check recorded afterwards (writing
    the record inside the attempt would look like a replaced directory). The metadata stays in its
    file (SavedMetadata) unless `metadata_in_ram`. `full_check` ignores any record."""
    attempt = lambda: load_once(directory, untrusted, chunk_size, metadata_in_ram, full_check)  # noqa: E731
    fields, checked = read_consistently(directory, attempt, (VectorIndexError, OSError))
    if checked and not untrusted:
        origin = fields["origin"]
        _verification.record_after_check(directory, origin[1], checked, lambda: origin_of(directory) == origin)
    return fields


def load_once(directory: Path, untrusted: bool, chunk_size: int, metadata_in_ram: bool,
              full_check: bool) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """One attempt at `load`: (the `VectorIndex` keyword arguments, the identities of the files it
    checked whole if it ran the full check, else {})."""
    origin = origin_of(directory)
    manifest = _storage.read_manifest(directory)
    M = _storage.MANIFEST
    if manifest["metric"] not in METRICS:
        raise VectorIndexError(f"{M} has unknown metric {manifest['metric']!r}; expected one of {METRICS}")
    try:
        params = IndexParams.from_json(manifest["params"])
    except ValueError as exc:
        raise VectorIndexError(f"{M} has invalid params ({exc}); restore the index from a good copy") from None
    if params.kind != manifest["kind"]:
        raise VectorIndexError(f"{M} says kind {manifest['kind']!r} but params say {params.kind!r}")
    seed = manifest.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise VectorIndexError(f"{M} field 'seed' is invalid ({seed!r})")
    metric = Metric(manifest["metric"])
    dim, count, next_id = manifest["dim"], manifest["count"], manifest["next_id"]
    required = [_storage.META_FILE] + (
        [_storage.VECTORS_FILE, _storage.IDS_FILE] if untrusted else [_storage.FAISS_FILE]
    )
    for name in required:
        if name not in manifest["files"]:
            hint = ("re-save it with save(dir, store_vectors=True) where it is trusted, or, if you trust its faiss "
                    "file, open it without --untrusted (untrusted=False)" if untrusted else
                    "restore the index from a good copy")
            raise VectorIndexError(f"{M} does not list {name}, which this load needs; {hint}")
    trusted = set() if untrusted or full_check else _verification.trusted_files(directory, origin[1])
    listed = set(manifest["files"])
    full = not listed <= trusted
    checked = _verification.identities(directory, listed) if full else {}  # before the check reads them
    for name in sorted(listed - trusted - {_storage.FAISS_FILE}):  # vectors.faiss: hashed on the bytes faiss reads
        _storage.verify_file(directory, name, manifest)
    meta: SavedMetadata | MetadataStore = SavedMetadata(directory / _storage.META_FILE, count, _storage.META_FILE)
    largest = meta.largest_id()
    if largest is not None and largest >= next_id:
        raise VectorIndexError(f"{M} next_id={next_id} is not above the largest id {largest} in "
                               f"{_storage.META_FILE}; restore the index from a good copy")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if full:
        _check_rows(meta, count)
    if untrusted:
        backend = _rebuild_from_arrays(directory, params, metric, dim, meta, seed, chunk_size)
    else:
        backend = _read_faiss(directory, manifest, params, metric)
    if full:
        _check_ids(meta, backend, count, "vectors.npy/ids.npy" if untrusted else _storage.FAISS_FILE)
    if metadata_in_ram:
        meta = meta.working_copy()
    logger.info("loaded %r index of %d vectors from %s%s", params.kind, count, directory, " (untrusted)" if untrusted else "")
    return dict(
        dim=dim,
        metric=metric,
        backend=backend,
        meta=meta,
        next_id=next_id,
        model_fingerprint=manifest["model_fingerprint"],
        info=manifest["info"],
        seed=seed,
        chunk_size=chunk_size,
        created_at=manifest.get("created_at") if isinstance(manifest.get("created_at"), str) else None,
        origin=origin,
    ), checked


def _check_rows(meta: SavedMetadata, count: int) -> None:
    """Part of the full check of a load without a record: every metadata row valid, and as many as
    the manifest says."""
    rows = meta.check_rows()
    if rows != count:
        raise VectorIndexError(f"{_storage.META_FILE} has {rows} items but {_storage.MANIFEST} says {count}; "
                               f"restore the index from a good copy")


def _check_ids(meta: SavedMetadata, backend: Backend, count: int, source: str) -> None:
    """The rest of the full check: the same ids in the metadata and the vectors (compared a batch of
    the metadata's at a time)."""
    ids, start = backend.stored_ids(), 0
    same = ids.size == count
    for batch in meta.iter_ids() if same else ():
        same = np.array_equal(ids[start:start + batch.size], batch)
        start += batch.size
        if not same:
            break
    if not same or start != ids.size:
        raise VectorIndexError(
            f"{source} holds {ids.size} vectors whose ids do not match the {count} items of {_storage.META_FILE}; "
            f"restore the index from a good copy"
        )


def _rebuild_from_arrays(directory: Path, params: IndexParams, metric: Metric, dim: int, meta: SavedMetadata,
                         seed: int, chunk_size: int) -> Backend:
    """Recreate the faiss index from vectors.npy/ids.npy (already checksum-verified)."""
    count = len(meta)
    loaded = {}
    for name, dtype, shape in (
        (_storage.VECTORS_FILE, np.float32, (count, dim)),
        (_storage.IDS_FILE, np.int64, (count,)),
    ):
        try:
            arr = np.load(directory / name, mmap_mode="r" if count else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise VectorIndexError(
                f"{name} is not a valid .npy file ({exc}); "
                f"restore the index from a good copy"
            ) from None
        if arr.dtype != dtype or arr.shape != shape:
            raise VectorIndexError(
                f"{name} holds {describe_array(arr)} but manifest.json implies {np.dtype(dtype).name} {shape}; "
                f"restore the index from a good copy"
            )
        loaded[name] = arr
    vectors, ids = loaded[_storage.VECTORS_FILE], np.asarray(loaded[_storage.IDS_FILE])
    if not np.array_equal(ids, meta.all_ids()):
        raise VectorIndexError(
            f"{_storage.IDS_FILE} does not match the ids in {_storage.META_FILE}; "
            f"restore the index from a good copy"
        )
    backend = make_backend(params, dim, metric.faiss_metric)
    if backend.trainable:
        if count == 0:
            raise VectorIndexError(
                "an empty IVF index cannot be rebuilt from vectors.npy (nothing to train on); "
                "load it without --untrusted (untrusted=False in Python)"
            )
        backend.train(lambda size: _mutation.sample(metric, vectors, count, size, _storage.VECTORS_FILE, seed, chunk_size),
                      seed, None)
    for start, block in iter_row_chunks(vectors, count, chunk_size):
        x = to_float32(block, _storage.VECTORS_FILE, start)  # stored vectors are already normalised
        backend.add(x, ids[start : start + x.shape[0]])
    return backend


def _read_faiss(directory: Path, manifest: dict[str, Any], params: IndexParams, metric: Metric) -> Backend:
    """Checksum the exact bytes, then let faiss parse them from memory (never from the path)."""
    name = _storage.FAISS_FILE
    data = _storage.verified_bytes(directory, name, manifest)
    on_disk = _storage.IVFDATA_FILE in manifest["files"]  # lists live in lists.ivfdata: map them below
    try:
        with bounded_faiss_reads(largest_honest_array(len(data), params, manifest["dim"])):
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8),
                                            faiss.IO_FLAG_SKIP_IVF_DATA if on_disk else 0)
    except (RuntimeError, MemoryError, ValueError) as exc:
        if "deserialization" in str(exc) and "limit" in str(exc):
            reason = "it declares an array larger than the file itself"
        else:
            found = re.search(r"Error: (.*)", str(exc))
            reason = f"faiss: {(found.group(1) if found else str(exc)).splitlines()[0][:160]}"
        raise VectorIndexError(
            f"{name} could not be parsed ({reason}); restore the index from a good copy"
        ) from None
    backend = make_backend(params, manifest["dim"], metric.faiss_metric, index)
    problem = backend.structure_problem()
    if problem:
        raise VectorIndexError(f"{name} {problem}; restore the index from a good copy")
    if index.ntotal != manifest["count"]:
        raise VectorIndexError(
            f"{name} holds {index.ntotal} vectors but manifest.json says {manifest['count']}; "
            f"restore the index from a good copy"
        )
    if on_disk:
        map_lists(index, directory / _storage.IVFDATA_FILE)
    return backend
