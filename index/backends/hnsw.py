"""kind "hnsw": IndexIDMap(IndexHNSWFlat), with tombstones because faiss cannot delete from a graph.

Removed ids stay in the graph, excluded at search time by an IDSelector, until the graph is rebuilt
from the stored vectors: once a quarter of it is tombstoned, and before every save.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import faiss
import numpy as np

from .._checks import check_positive_int
from .._faiss import faiss_call
from ..kinds import HNSW_EF_SEARCH, IndexParams
from .idmap import IdMapBackend

logger = logging.getLogger(__name__)

HNSW_COMPACT_FRACTION = 0.25  # rebuild the HNSW graph once this share of its vectors is removed


class HnswBackend(IdMapBackend):
    kind = "hnsw"
    inner_type = faiss.IndexHNSWFlat

    def __init__(self, params: IndexParams, dim: int, metric_type: int, faiss_index: faiss.Index | None = None) -> None:
        super().__init__(params, dim, metric_type, faiss_index)
        self._removed = np.empty(0, dtype=np.int64)  # tombstones, sorted
        self._tombstone_selector: tuple[Any, Any] | None = None  # (IDSelectorBatch, its IDSelectorNot)

    def create(self, params: IndexParams) -> faiss.Index:
        index = faiss.index_factory(self.dim, f"IDMap,HNSW{params.hnsw_m},Flat", self.metric_type)
        hnsw = faiss.downcast_index(index.index)
        hnsw.hnsw.efSearch = params.ef_search
        hnsw.hnsw.efConstruction = params.ef_construction
        return index

    def storage(self) -> faiss.Index:
        return faiss.downcast_index(faiss.downcast_index(self._faiss.index).storage)

    def reserve(self, total: int) -> None:
        """The vectors and id map (IdMapBackend.reserve), and the graph's level, offset and link
        tables sized for `total` items at once, the links from their expected count per item (a
        random level per item; 2% spare): growing them would copy each, holding both buffers."""
        before = self._faiss.ntotal
        super().reserve(total)
        if total <= before:
            return
        hnsw = faiss.downcast_index(self._faiss.index).hnsw
        probabilities = faiss.vector_to_array(hnsw.assign_probas)
        links = faiss.vector_to_array(hnsw.cum_nneighbor_per_level)[1:len(probabilities) + 1]
        per_item = float(np.dot(probabilities, links)) * 1.02
        for table, rows in ((hnsw.levels, total), (hnsw.offsets, total + 1), (hnsw.neighbors, int(total * per_item))):
            size = table.size()
            table.resize(rows)  # allocates exactly this many (no doubling from here)
            table.resize(size)  # shrinking keeps the capacity

    # -- tombstones ----------------------------------------------------------------------------------

    @property
    def tombstone_count(self) -> int:
        return int(self._removed.size)

    def excluded_ids(self) -> np.ndarray:
        return self._removed

    def remove(self, ids: np.ndarray) -> int:
        """Tombstone the ids (the graph keeps them until `compact`)."""
        self._removed = np.union1d(self._removed, ids)
        self._tombstone_selector = None
        return int(ids.size)

    def compact_if_sparse(self, chunk_size: int) -> None:
        if self._removed.size > HNSW_COMPACT_FRACTION * self._faiss.ntotal:
            self.compact(chunk_size)

    def compact(self, chunk_size: int) -> None:
        """Rebuild the graph from its stored vectors without the tombstoned ones."""
        if not self._removed.size:
            return
        fresh = self.create(self.params)
        for chunk_ids, vectors in self.iter_vectors(chunk_size):
            faiss_call(fresh, "add_with_ids", vectors, chunk_ids)
        logger.debug("rebuilt HNSW graph: dropped %d tombstoned vectors, kept %d", self._removed.size, fresh.ntotal)
        self._faiss = fresh
        self._removed = np.empty(0, dtype=np.int64)
        self._tombstone_selector = None

    # -- search ----------------------------------------------------------------------------------------

    def set_search_params(self, nprobe: int | None, ef_search: int | None) -> None:
        super().set_search_params(nprobe, None)
        if ef_search is not None:
            self.params = replace(self.params, ef_search=check_positive_int(ef_search, "ef_search"))
            faiss.downcast_index(self._faiss.index).hnsw.efSearch = self.params.ef_search

    def search_params(self, k: int, selector: Any = None) -> Any:
        """efSearch at least k, and the tombstones filtered out unless `selector` already does."""
        if selector is None and self._removed.size:
            if self._tombstone_selector is None:
                batch = faiss.IDSelectorBatch(self._removed)
                self._tombstone_selector = (batch, faiss.IDSelectorNot(batch))
            selector = self._tombstone_selector[1]
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.params.ef_search or HNSW_EF_SEARCH, k)
        if selector is not None:
            params.sel = selector
        return params
