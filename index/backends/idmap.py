"""What flat and hnsw share: a faiss IndexIDMap around the vector storage, ids in increasing order.

IndexIDMap, not IndexIDMap2: ids are handed out in increasing order, so the id map stays sorted and
a binary search finds an id's row; IDMap2's reverse hash map would cost ~48 more bytes per item (a
fifth of a 64-d float32 vector). Indexes saved with IDMap2 still load (it is a subclass).
"""

from __future__ import annotations

from typing import Iterator

import faiss
import numpy as np

from .._faiss import faiss_call
from .base import Backend


class IdMapBackend(Backend):
    """IndexIDMap(inner): rows of `inner` in id-map order, ids ascending."""

    inner_type: type = faiss.Index  # the faiss class the id map must wrap

    def excluded_ids(self) -> np.ndarray | None:
        """Ids still stored but no longer items (HNSW tombstones)."""
        return None

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Rows found by binary search in the sorted id map."""
        id_map = faiss.rev_swig_ptr(self._faiss.id_map.data(), self._faiss.id_map.size())
        rows = np.searchsorted(id_map, ids)
        return faiss_call(faiss.downcast_index(self._faiss.index), "reconstruct_batch", rows.astype(np.int64))

    def stored_ids(self) -> np.ndarray:
        ids = faiss.vector_to_array(self._faiss.id_map).astype(np.int64, copy=False)
        return ids if np.all(ids[1:] > ids[:-1]) else np.sort(ids)

    def iter_vectors(self, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        exclude = self.excluded_ids()
        id_map = faiss.vector_to_array(self._faiss.id_map).astype(np.int64, copy=False)
        inner = faiss.downcast_index(self._faiss.index)
        for start in range(0, id_map.size, chunk_size):
            stop = min(id_map.size, start + chunk_size)
            chunk_ids = id_map[start:stop]
            vectors = faiss_call(inner, "reconstruct_n", start, stop - start)
            if exclude is not None and exclude.size:
                keep = ~np.isin(chunk_ids, exclude)
                chunk_ids, vectors = chunk_ids[keep], vectors[keep]
            if chunk_ids.size:
                yield chunk_ids, vectors

    def storage(self) -> faiss.Index:
        """The faiss index whose `codes` hold the vectors."""
        return faiss.downcast_index(self._faiss.index)

    def reserve(self, total: int) -> None:
        """Allocate the vector storage and id map for `total` items at once: growing a std::vector
        copies it, briefly holding the old and new buffers (up to 1.5x the final size at once)."""
        if total <= self._faiss.ntotal:
            return
        storage = self.storage()
        for vector, width in ((storage.codes, storage.code_size), (self._faiss.id_map, 1)):
            size = vector.size()
            vector.resize(total * width)  # allocates exactly total rows (no doubling from this size)
            vector.resize(size)  # shrinking keeps the capacity

    def kind_structure_problem(self, index: faiss.Index) -> str | None:
        if not isinstance(index, faiss.IndexIDMap):  # IndexIDMap2 (older saves) is a subclass
            return f"is a {type(index).__name__}, expected IndexIDMap for kind {self.kind!r}"
        inner = faiss.downcast_index(index.index)
        if not isinstance(inner, self.inner_type):
            return f"wraps a {type(inner).__name__}, expected {self.inner_type.__name__} for kind {self.kind!r}"
        if index.id_map.size() != index.ntotal:
            return "has an id map that does not match its vector count"
        ids = faiss.vector_to_array(index.id_map)
        if np.any(ids[1:] <= ids[:-1]):
            return "has an id map that is not in increasing id order"
        return None
