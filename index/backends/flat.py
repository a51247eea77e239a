"""kind "flat": IndexIDMap(IndexFlat), exact; batches of queries go through index._exact's GEMM search."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from .._exact import flat_search
from ..kinds import IndexParams
from .idmap import IdMapBackend

FLAT_GEMM_MIN_QUERIES = 20  # from here on flat search is one GEMM (faiss switches to BLAS at 20 too)


class FlatBackend(IdMapBackend):
    kind = "flat"
    inner_type = faiss.IndexFlat

    def create(self, params: IndexParams) -> faiss.Index:
        return faiss.index_factory(self.dim, "IDMap,Flat", self.metric_type)

    def search(self, queries: np.ndarray, k: int, selector: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if selector is None and queries.shape[0] >= FLAT_GEMM_MIN_QUERIES:
            xb, id_map = self.rows()
            distances, pos = flat_search(xb, queries, k, self.metric_type)
            return distances, id_map[pos]
        return super().search(queries, k, selector)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(float32 (n, d) view of the stored rows, int64 (n,) view of their ids), in row order."""
        inner = faiss.downcast_index(self._faiss.index)
        n = inner.ntotal
        return (faiss.rev_swig_ptr(inner.get_xb(), n * self.dim).reshape(n, self.dim),
                faiss.rev_swig_ptr(self._faiss.id_map.data(), n))

    def exact_rows(self) -> tuple[np.ndarray, np.ndarray, Any]:
        """Rows in ascending id order (the id map is sorted), owned by the faiss index."""
        xb, _ = self.rows()
        return faiss.vector_to_array(self._faiss.id_map), xb, self._faiss
