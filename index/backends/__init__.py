"""One backend class per index kind: its faiss structure and everything kind-specific.

base.py   Backend, the defaults and the contract VectorIndex relies on
idmap.py  flat and hnsw: IndexIDMap, sorted ids, rows by binary search, reserve
flat.py   exact; batches of queries through index._exact's GEMM search
hnsw.py   tombstones (IDSelector at search) and graph compaction, ef_search
ivf.py    training, nprobe, native ids + direct map, read-only merged lists (map_lists)
ivfpq.py  PQ code books, the bigger parse-time table faiss precomputes
"""

from __future__ import annotations

import faiss

from ..kinds import IndexParams
from .base import Backend
from .flat import FlatBackend
from .hnsw import HnswBackend
from .ivf import IvfBackend, map_lists
from .ivfpq import IvfPqBackend

BACKENDS: dict[str, type[Backend]] = {b.kind: b for b in (FlatBackend, HnswBackend, IvfBackend, IvfPqBackend)}

__all__ = ["Backend", "BACKENDS", "make_backend", "largest_honest_array", "map_lists"]


def make_backend(params: IndexParams, dim: int, metric_type: int, faiss_index: faiss.Index | None = None) -> Backend:
    """The backend of `params.kind` around `faiss_index` (a read file), or a new empty structure
    (left untrained, None, for IVF kinds)."""
    return BACKENDS[params.kind](params, dim, metric_type, faiss_index)


def largest_honest_array(file_bytes: int, params: IndexParams, dim: int) -> int:
    """Bytes of the largest array faiss may allocate while parsing a file of `file_bytes` holding
    this structure (the limit `bounded_faiss_reads` sets)."""
    return BACKENDS[params.kind].largest_array(file_bytes, params, dim)
