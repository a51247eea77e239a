"""Removing items from a saved index: load, remove and save back under the index's writer lock, so a
concurrent add or remove (another process, a search service) waits its turn instead of being lost.
The CLI's `siamese index remove` and any service holding the same index use this one function."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .locking import write_lock
from .vector_index import VectorIndex


def remove_from_saved_index(path: str | os.PathLike, keys: Sequence[str | int], *,
                            untrusted: bool = False) -> tuple[VectorIndex, int]:
    """Remove the items with `keys` from the index saved at `path`; returns (the saved index, number
    removed). Every key must be in the index: otherwise VectorIndexError names the unknown ones and
    nothing is removed. untrusted: never parse its faiss file (see VectorIndex.load)."""
    with write_lock(path):
        index = VectorIndex.load(path, untrusted=untrusted)
        removed = index.remove(keys=keys)
        index.save(path)
    return index, removed
