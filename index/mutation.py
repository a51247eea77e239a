"""Changing what a `VectorIndex` holds: IVF training, adding, removing, HNSW tombstones and compaction.

Plain functions over the index's state; `VectorIndex` delegates to them. Every change either
completes or leaves the index as it was (ids taken by a failed add are not reused).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from . import kinds as _kinds
from . import storage as _storage
from ._checks import as_ids, as_keys, iter_row_chunks, preview, to_float32
from ._faiss import faiss_call
from .errors import VectorIndexError
from .kinds import IVF_KINDS

if TYPE_CHECKING:
    from .vector_index import VectorIndex

logger = logging.getLogger(__name__)

HNSW_COMPACT_FRACTION = 0.25  # rebuild the HNSW graph once this share of its vectors is removed


def prepare(index: VectorIndex, block: Any, name: str, offset: int = 0) -> np.ndarray:
    """Rows as the index stores them: float32, normalised for cosine."""
    return index._metric.prepare(to_float32(block, name, offset), name, offset)


def sample(index: VectorIndex, arr: Any, n: int, size: int, name: str) -> np.ndarray:
    """Up to `size` rows of arr drawn with the index seed, as prepared float32 (s, d)."""
    chunk = index._chunk_size
    if n <= size:
        return np.concatenate([prepare(index, b, name, s) for s, b in iter_row_chunks(arr, n, chunk)])
    rows = np.sort(np.random.default_rng(index._seed).choice(n, size=size, replace=False))
    parts = [prepare(index, arr[rows[i : i + chunk]], name) for i in range(0, size, chunk)]
    return np.concatenate(parts)


def train_from(index: VectorIndex, arr: Any, n: int) -> None:
    """Create and train the IVF structure on a seeded sample of arr (n, d)."""
    params = index._params
    if params.nlist is None:
        nlist = _kinds.default_nlist(n)
        params = replace(params, nlist=nlist, nprobe=_kinds.default_nprobe(nlist))
    x = sample(index, arr, n, _kinds.train_sample_size(params), "sample")
    trained = _kinds.create(params, index._dim, index._metric.faiss_metric)
    _kinds.train(trained, params, x, index._seed)
    index._params, index._faiss = params, trained


def add(
    index: VectorIndex,
    arr: Any,
    n: int,
    keys: list[str] | None,
    labels: list[str | None] | None,
    attrs: list[str | None] | None,
    validate_first: bool,
) -> np.ndarray:
    """Add n checked rows with the next ids; returns the ids int64 (n,)."""
    if index._faiss is None:
        raise VectorIndexError(
            f"kind {index.kind!r} must be trained first; "
            f"call train(sample) with representative vectors"
        )
    check_writable(index, "add to")
    ids = np.arange(index._next_id, index._next_id + n, dtype=np.int64)
    if keys is None:
        keys = [str(i) for i in ids.tolist()]
        index._meta.check_new_keys(keys, name="the default keys (str(id))")
    else:
        index._meta.check_new_keys(keys)
    single = n <= index._chunk_size
    prepared = None
    if validate_first:
        if single:
            prepared = prepare(index, arr, "vectors")
        else:
            for start, block in iter_row_chunks(arr, n, index._chunk_size):
                prepare(index, block, "vectors", start)
    added = 0
    try:
        for start, block in iter_row_chunks(arr, n, index._chunk_size):
            x = prepared if prepared is not None else prepare(index, block, "vectors", start)
            faiss_call(index._faiss, "add_with_ids", x, ids[start : start + x.shape[0]])
            added = start + x.shape[0]
        index._meta.add(ids, keys, labels, attrs)
    except BaseException:
        if added:
            _undo_add(index, ids[:added])
        raise
    index._next_id += n
    index._version += 1
    return ids


def _undo_add(index: VectorIndex, ids: np.ndarray) -> None:
    """Take back vectors added before a failure; their ids are not reused."""
    if index.kind == "hnsw":
        _tombstone(index, ids)
    else:
        faiss_call(index._faiss, "remove_ids", ids)
    index._next_id = int(ids[-1]) + 1


def check_writable(index: VectorIndex, action: str) -> None:
    """A merged shard index maps its lists read-only from lists.ivfdata (see index.shards)."""
    if index.kind in IVF_KINDS and index._faiss is not None and isinstance(
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(index._faiss).invlists), faiss.OnDiskInvertedLists
    ):
        raise VectorIndexError(
            f"cannot {action} a merged shard index: its inverted lists are memory-mapped read-only from "
            f"{_storage.IVFDATA_FILE}; build another shard and merge again (copy the directory to move it)"
        )


def remove(index: VectorIndex, ids: Any = None, keys: Any = None) -> int:
    """Remove items by `ids` or by `keys` (exactly one); returns how many were removed."""
    if (ids is None) == (keys is None):
        raise VectorIndexError("remove() needs exactly one of ids= or keys=")
    check_writable(index, "remove from")
    if keys is not None:
        target = index._meta.ids_for_keys(as_keys(keys, name="keys"))
    else:
        target = as_ids(ids)
        unknown = index._meta.unknown_ids(target)
        if unknown.size:
            raise VectorIndexError(
                f"ids has {unknown.size} id(s) not in the index {preview(unknown.tolist())}; nothing was removed"
            )
    target = np.unique(target)
    if index.kind == "hnsw":
        _tombstone(index, target)
    else:
        removed = faiss_call(index._faiss, "remove_ids", target)
        if removed != target.size:
            raise RuntimeError(f"faiss removed {removed} of {target.size} ids")  # metadata/faiss out of sync
    index._meta.remove(target)
    index._version += 1
    if index.kind == "hnsw" and index._removed.size > HNSW_COMPACT_FRACTION * index._faiss.ntotal:
        compact(index)
    return int(target.size)


def _tombstone(index: VectorIndex, ids: np.ndarray) -> None:
    index._removed = np.union1d(index._removed, ids)
    index._tombstone_selector = None


def compact(index: VectorIndex) -> None:
    """Rebuild the HNSW graph from its stored vectors without the tombstoned ones."""
    if not index._removed.size:
        return
    fresh = _kinds.create(index._params, index._dim, index._metric.faiss_metric)
    for chunk_ids, vectors in _kinds.iter_vectors(index._faiss, index.kind, index._chunk_size, exclude=index._removed):
        faiss_call(fresh, "add_with_ids", vectors, chunk_ids)
    logger.debug("rebuilt HNSW graph: dropped %d tombstoned vectors, kept %d", index._removed.size, fresh.ntotal)
    index._faiss = fresh
    index._removed = np.empty(0, dtype=np.int64)
    index._tombstone_selector = None
