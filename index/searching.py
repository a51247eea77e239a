"""Running faiss searches for a `VectorIndex`: per-kind search parameters, tombstone filtering,
and the one-GEMM path for batches of exact flat queries."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from . import kinds as _kinds
from ._checks import check_positive_int
from ._exact import flat_search
from ._faiss import faiss_call
from .errors import VectorIndexError
from .kinds import IVF_KINDS

if TYPE_CHECKING:
    from .vector_index import VectorIndex

FLAT_GEMM_MIN_QUERIES = 20  # from here on flat search is one GEMM (faiss switches to BLAS at 20 too)


def set_search_params(index: VectorIndex, nprobe: int | None, ef_search: int | None) -> None:
    """Store and apply nprobe (ivf/ivfpq) or ef_search (hnsw)."""
    if nprobe is not None:
        if index.kind not in IVF_KINDS:
            raise VectorIndexError(f"nprobe applies to kinds 'ivf' and 'ivfpq', not {index.kind!r}")
        nprobe = check_positive_int(nprobe, "nprobe")
        if index._params.nlist is not None:
            nprobe = min(nprobe, index._params.nlist)
        index._params = replace(index._params, nprobe=nprobe)
        if index._faiss is not None:
            index._faiss.nprobe = nprobe
    if ef_search is not None:
        if index.kind != "hnsw":
            raise VectorIndexError(f"ef_search applies to kind 'hnsw', not {index.kind!r}")
        index._params = replace(index._params, ef_search=check_positive_int(ef_search, "ef_search"))
        faiss.downcast_index(index._faiss.index).hnsw.efSearch = index._params.ef_search


def search_params(index: VectorIndex, k: int, selector: Any = None) -> Any:
    """faiss SearchParameters carrying efSearch/nprobe and an id filter (tombstones or
    `selector`, which must already exclude removed ids). Callers keep `selector` alive."""
    if selector is None and index._removed.size:
        if index._tombstone_selector is None:
            batch = faiss.IDSelectorBatch(index._removed)
            index._tombstone_selector = (batch, faiss.IDSelectorNot(batch))
        selector = index._tombstone_selector[1]
    if index.kind == "hnsw":
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(index._params.ef_search or _kinds.HNSW_EF_SEARCH, k)
    elif index.kind in IVF_KINDS:
        if selector is None:
            return None
        params = faiss.SearchParametersIVF()
        params.nprobe = index._faiss.nprobe
    else:
        if selector is None:
            return None
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def raw_search(index: VectorIndex, q: np.ndarray, k: int, selector: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """faiss search on prepared queries: (faiss values float32 (q, k), ids int64 (q, k))."""
    params = search_params(index, k, selector)
    if index.kind == "flat" and params is None and q.shape[0] >= FLAT_GEMM_MIN_QUERIES:
        inner = faiss.downcast_index(index._faiss.index)  # rows in id-map order
        n, dim = inner.ntotal, index._dim
        distances, pos = flat_search(faiss.rev_swig_ptr(inner.get_xb(), n * dim).reshape(n, dim),
                                     q, k, inner.metric_type)
        return distances, faiss.rev_swig_ptr(index._faiss.id_map.data(), n)[pos]
    distances, ids = faiss_call(index._faiss, "search", q, k, params=params)
    return distances, ids


def raw_range_search(index: VectorIndex, q: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """faiss range_search on prepared queries within `radius` (reported units): (lims, values, ids)."""
    params = search_params(index, index._params.ef_search or 1)
    return faiss_call(index._faiss, "range_search", q, index._metric.to_faiss_radius(float(radius)), params=params)
