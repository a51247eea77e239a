"""Saving and loading a `VectorIndex`: atomic directory writes, verified loads, and the untrusted
load that rebuilds the faiss index from vectors.npy/ids.npy instead of parsing vectors.faiss."""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from . import kinds as _kinds
from . import mutation as _mutation
from . import storage as _storage
from ._checks import check_positive_int, iter_row_chunks, to_float32, to_json
from ._faiss import bounded_faiss_reads, faiss_call
from .atomic import atomic_directory
from .locking import write_lock
from .outputs import check_output_directory
from .errors import VectorIndexError
from .kinds import IVF_KINDS, IndexParams, largest_honest_array
from .metadata import MetadataStore
from .metrics import METRICS, Metric

if TYPE_CHECKING:
    from .vector_index import VectorIndex

logger = logging.getLogger(__name__)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def describe_array(arr: np.ndarray) -> str:
    return f"{arr.dtype} {tuple(arr.shape)}"


def save(index: VectorIndex, directory: Path, store_vectors: bool | None, overwrite: bool = False) -> Path:
    """Write `index` to `directory` atomically (see `VectorIndex.save`), holding its writer lock."""
    if index._faiss is None:
        raise VectorIndexError(
            f"kind {index.kind!r} is untrained and has nothing to save; "
            f"call train() and add() first"
        )
    _mutation.check_writable(index, "save")
    with write_lock(directory):
        check_output_directory(directory, "index", overwrite=overwrite)
        _check_unchanged_since_load(index, directory)
        _save_locked(index, directory, store_vectors, overwrite)
        index._origin = origin_of(directory)
    logger.info("saved %r index of %d vectors to %s", index.kind, len(index), directory)
    return directory


def origin_of(directory: Path) -> tuple[str, str | None]:
    """(resolved path, sha256 of its manifest.json or None): which saved version an index came from."""
    manifest = directory / _storage.MANIFEST
    return str(directory.resolve()), _storage.sha256_file(manifest) if manifest.is_file() else None


def _check_unchanged_since_load(index: VectorIndex, directory: Path) -> None:
    """Refuse to save over a version another writer saved after this index was loaded from the
    same directory: replacing it would silently drop that writer's change (a lost update)."""
    loaded = getattr(index, "_origin", None)
    if loaded is None or loaded[0] != str(directory.resolve()):
        return
    if origin_of(directory) != loaded:
        raise VectorIndexError(
            f"{directory} was saved by another writer after this index was loaded from it; saving now "
            f"would drop that change. Load it again and repeat yours, or save to a new path"
        )


def _save_locked(index: VectorIndex, directory: Path, store_vectors: bool | None, overwrite: bool) -> None:
    if store_vectors is None:
        store_vectors = index.kind in ("flat", "hnsw")
    to_json(index._info, "info")
    _mutation.compact(index)
    with atomic_directory(directory, "index", overwrite=overwrite) as tmp:
        faiss.write_index(index._faiss, str(tmp / _storage.FAISS_FILE))
        index._meta.save(tmp / _storage.META_FILE)
        names = [_storage.FAISS_FILE, _storage.META_FILE]
        if store_vectors:
            _write_vectors(index, tmp)
            names += [_storage.VECTORS_FILE, _storage.IDS_FILE]
        manifest = {
            "format": _storage.FORMAT,
            "format_version": _storage.FORMAT_VERSION,
            "dim": index._dim,
            "metric": index.metric,
            "kind": index.kind,
            "params": index._params.to_json(),
            "count": len(index),
            "next_id": index._next_id,
            "seed": index._seed,
            "model_fingerprint": index._fingerprint,
            "info": index._info,
            "created_at": index._created_at,
            "saved_at": now(),
            "libraries": {"numpy": np.__version__, "faiss": faiss.__version__, "python": platform.python_version()},
            "files": {name: _storage.file_entry(tmp / name) for name in names},
        }
        _storage.write_manifest(tmp, manifest)


def _write_vectors(index: VectorIndex, directory: Path) -> None:
    count, dim = len(index), index._dim
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
        for chunk_ids, chunk in index.iter_vectors():
            vectors.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
            ids.write(np.ascontiguousarray(chunk_ids, dtype="<i8").tobytes())
            pos += chunk_ids.size
    if pos != count:
        raise RuntimeError(f"wrote {pos} vectors for {count} items")


def load_once(cls: type[VectorIndex], directory: Path, untrusted: bool, chunk_size: int) -> VectorIndex:
    """One attempt at `VectorIndex.load` (the caller retries if a save replaced the directory)."""
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
            hint = "re-save it with save(dir, store_vectors=True)" if untrusted else "restore the index from a good copy"
            raise VectorIndexError(f"{M} does not list {name}, which this load needs; {hint}")
    for name in manifest["files"]:
        if name != _storage.FAISS_FILE:  # vectors.faiss is hashed on the bytes faiss will read
            _storage.verify_file(directory, name, manifest)
    meta = MetadataStore.load(directory / _storage.META_FILE, _storage.META_FILE)
    rows = meta.count_rows()
    if rows != count or len(meta) != count:
        raise VectorIndexError(
            f"{_storage.META_FILE} has {rows} items but {M} says {count}; "
            f"restore the index from a good copy"
        )
    if count and int(meta.ids[-1]) >= next_id:
        raise VectorIndexError(
            f"{M} next_id={next_id} is not above the largest "
            f"id {int(meta.ids[-1])} in {_storage.META_FILE}"
        )
    index = cls(
        dim=dim,
        metric=metric,
        params=params,
        faiss_index=None,
        meta=meta,
        next_id=next_id,
        model_fingerprint=manifest["model_fingerprint"],
        info=manifest["info"],
        seed=seed,
        chunk_size=check_positive_int(chunk_size, "chunk_size"),
        created_at=manifest.get("created_at") if isinstance(manifest.get("created_at"), str) else None,
    )
    if untrusted:
        _rebuild_from_arrays(index, directory)
    else:
        index._faiss = _read_faiss(directory, manifest, params, metric)
    ids = _kinds.faiss_ids(index._faiss, params.kind)
    if ids.size != count or not np.array_equal(ids, meta.ids):
        source = "vectors.npy/ids.npy" if untrusted else _storage.FAISS_FILE
        raise VectorIndexError(
            f"{source} holds {ids.size} vectors whose ids do not match the {count} items of {_storage.META_FILE}; "
            f"restore the index from a good copy"
        )
    index._origin = origin
    logger.info("loaded %r index of %d vectors from %s%s", params.kind, count, directory, " (untrusted)" if untrusted else "")
    return index


def _rebuild_from_arrays(index: VectorIndex, directory: Path) -> None:
    """Recreate the faiss index from vectors.npy/ids.npy (already checksum-verified)."""
    count = len(index._meta)
    loaded = {}
    for name, dtype, shape in (
        (_storage.VECTORS_FILE, np.float32, (count, index._dim)),
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
    if not np.array_equal(ids, index._meta.ids):
        raise VectorIndexError(
            f"{_storage.IDS_FILE} does not match the ids in {_storage.META_FILE}; "
            f"restore the index from a good copy"
        )
    params = index._params
    if params.kind in IVF_KINDS:
        if count == 0:
            raise VectorIndexError(
                "an empty IVF index cannot be rebuilt from vectors.npy (nothing to train on); "
                "load it with untrusted=False"
            )
        x = _mutation.sample(index, vectors, count, _kinds.train_sample_size(params), _storage.VECTORS_FILE)
        rebuilt = _kinds.create(params, index._dim, index._metric.faiss_metric)
        _kinds.train(rebuilt, params, x, index._seed)
    else:
        rebuilt = _kinds.create(params, index._dim, index._metric.faiss_metric)
    for start, block in iter_row_chunks(vectors, count, index._chunk_size):
        x = to_float32(block, _storage.VECTORS_FILE, start)  # stored vectors are already normalised
        faiss_call(rebuilt, "add_with_ids", x, ids[start : start + x.shape[0]])
    index._faiss = rebuilt


def _read_faiss(directory: Path, manifest: dict[str, Any], params: IndexParams, metric: Metric) -> faiss.Index:
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
    problem = _kinds.structure_problem(index, params, manifest["dim"], metric.faiss_metric)
    if problem:
        raise VectorIndexError(f"{name} {problem}; restore the index from a good copy")
    if index.ntotal != manifest["count"]:
        raise VectorIndexError(
            f"{name} holds {index.ntotal} vectors but manifest.json says {manifest['count']}; "
            f"restore the index from a good copy"
        )
    if on_disk:
        from .shards import map_lists

        map_lists(index, directory / _storage.IVFDATA_FILE)
    return index
