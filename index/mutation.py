"""The steps of changing a `VectorIndex`: prepared vector chunks, training samples, new keys, removal.

Plain functions over the pieces `VectorIndex` hands them: its backend, metadata store, metric and
counters. Every change either completes or leaves the index as it was (ids taken by a failed add
are not reused: HNSW keeps them as tombstones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ._checks import as_ids, as_keys, iter_row_chunks, preview, to_float32
from .backends import Backend
from .errors import VectorIndexError
from .metadata import MetadataStore
from .metrics import Metric


@dataclass
class Counters:
    """An index's id and change counters (its `next_id` and `version`)."""

    next_id: int
    version: int = 0  # bumped by every add and remove


def prepare(metric: Metric, block: Any, name: str, offset: int = 0) -> np.ndarray:
    """Rows as the index stores them: float32, normalised for cosine."""
    return metric.prepare(to_float32(block, name, offset), name, offset)


def sample(metric: Metric, arr: Any, n: int, size: int, name: str, seed: int, chunk_size: int) -> np.ndarray:
    """Up to `size` rows of arr drawn with `seed`, as prepared float32 (s, d)."""
    if n <= size:
        return np.concatenate([prepare(metric, b, name, s) for s, b in iter_row_chunks(arr, n, chunk_size)])
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return np.concatenate([prepare(metric, arr[rows[i : i + chunk_size]], name) for i in range(0, size, chunk_size)])


def prepared_chunks(metric: Metric, arr: Any, n: int, chunk_size: int,
                    validate_first: bool) -> Iterator[tuple[int, np.ndarray]]:
    """(start row, prepared float32 block) over arr (n, d). validate_first: every block is checked
    before the first is yielded, so a bad late row fails before anything is added."""
    prepared = None
    if validate_first:
        if n <= chunk_size:
            prepared = prepare(metric, arr, "vectors")
        else:
            for start, block in iter_row_chunks(arr, n, chunk_size):
                prepare(metric, block, "vectors", start)
    for start, block in iter_row_chunks(arr, n, chunk_size):
        yield start, prepared if prepared is not None else prepare(metric, block, "vectors", start)


def new_keys(meta: MetadataStore, keys: list[str] | None, ids: np.ndarray) -> list[str]:
    """The keys of items about to get `ids` (str(id) by default), checked against the store."""
    if keys is None:
        keys = [str(i) for i in ids.tolist()]
        meta.check_new_keys(keys, name="default keys, str(id)")
    else:
        meta.check_new_keys(keys)
    return keys


def train(backend: Backend, metric: Metric, arr: Any, n: int, seed: int, chunk_size: int) -> None:
    """Train an IVF backend on a sample of arr (n, d) drawn with `seed`; nlist follows n if unset."""
    backend.train(lambda size: sample(metric, arr, n, size, "sample", seed, chunk_size), seed, n)


def add(backend: Backend, meta: MetadataStore, counters: Counters, metric: Metric, arr: Any, n: int,
        keys: list[str] | None, labels: list[str | None] | None, attrs: list[str | None] | None, *,
        chunk_size: int, validate_first: bool) -> np.ndarray:
    """Add n checked rows with the next ids; returns the ids int64 (n,)."""
    backend.require_trained()
    backend.check_writable("add to")
    ids = np.arange(counters.next_id, counters.next_id + n, dtype=np.int64)
    keys = new_keys(meta, keys, ids)
    added = 0
    try:
        for start, x in prepared_chunks(metric, arr, n, chunk_size, validate_first):
            backend.add(x, ids[start : start + x.shape[0]])
            added = start + x.shape[0]
        meta.add(ids, keys, labels, attrs)
    except BaseException:
        if added:  # take back the vectors already added; their ids stay used
            backend.remove(ids[:added])
            counters.next_id = int(ids[added - 1]) + 1
        raise
    counters.next_id += n
    counters.version += 1
    return ids


def remove(backend: Backend, meta: MetadataStore, counters: Counters, ids: Any = None, keys: Any = None, *,
           chunk_size: int) -> int:
    """Remove items by `ids` or by `keys` (exactly one) from the structure and the store; returns
    how many. Unknown ids/keys raise VectorIndexError and nothing is removed."""
    if (ids is None) == (keys is None):
        raise VectorIndexError("remove() needs exactly one of ids= or keys=")
    backend.check_writable("remove from")
    if keys is not None:
        target = meta.ids_for_keys(as_keys(keys, name="keys"), remedy="check the keys' spelling; nothing was removed")
    else:
        target = as_ids(ids)
        unknown = meta.unknown_ids(target)
        if unknown.size:
            raise VectorIndexError(
                f"ids has {unknown.size} id(s) not in the index {preview(unknown.tolist())}; nothing was removed"
            )
    target = np.unique(target)
    removed = backend.remove(target)
    if removed != target.size:
        raise RuntimeError(f"faiss removed {removed} of {target.size} ids")  # metadata/faiss out of sync
    meta.remove(target)
    counters.version += 1
    backend.compact_if_sparse(chunk_size)
    return int(target.size)
