"""Exact flat k-nearest search on numpy sgemm blocks (flat `VectorIndex` search and the exact kNN
classifier): search.py cuts the work into L2-sized blocks on one worker thread per core, topk.py
keeps each query's running k best, blas.py keeps numpy's OpenBLAS to one thread per worker."""

from .search import BlockPlan, flat_search

__all__ = ["BlockPlan", "flat_search"]
