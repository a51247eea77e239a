"""Calling faiss safely when other libraries have patched it."""

from __future__ import annotations

import faiss
import numpy as np


def faiss_call(faiss_index, name: str, *args, **kwargs):
    """Call faiss's own numpy method `name` on `faiss_index`.

    `faiss.contrib.torch_utils` (imported by pytorch-metric-learning) replaces Index.search, add,
    reconstruct... with wrappers that return torch tensors and drop arguments such as `params`;
    faiss keeps the originals as `<name>_numpy`, so use those whenever they exist.
    """
    method = getattr(faiss_index, f"{name}_numpy", None) or getattr(faiss_index, name)
    return method(*args, **kwargs)


_BLOCK_ELEMENTS = 1 << 23  # query x database scores per GEMM block (32 MiB of float32)


def flat_search(xb: np.ndarray, queries: np.ndarray, k: int, metric_type: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of xb (n, d) for queries (q, d), as `IndexFlat.search` returns them:
    (float32 (q, k) squared L2 ascending / inner products descending, int64 (q, k) row positions).

    Why not IndexFlat.search: faiss wheels bundle their own BLAS, which may not recognise the CPU
    and fall back to a generic sgemm (measured 2-3x slower than numpy's on AVX-512 machines).
    Here numpy's BLAS computes the scores block by block and faiss's C heaps (OpenMP) keep the
    k best, so the cost is one sgemm plus one pass over the scores.
    """
    n, d = xb.shape
    m = queries.shape[0]
    k = min(k, n)
    l2 = metric_type == faiss.METRIC_L2
    values = np.empty((m, k), dtype=np.float32)
    ids = np.empty((m, k), dtype=np.int64)
    heaps = faiss.float_maxheap_array_t() if l2 else faiss.float_minheap_array_t()
    heaps.nh, heaps.k, heaps.val, heaps.ids = m, k, faiss.swig_ptr(values), faiss.swig_ptr(ids)
    heaps.heapify()
    if l2:  # [-2q, 1] . [x, |x|^2] = |x|^2 - 2 q.x, which ranks like |q - x|^2 (|q|^2 is added at the end)
        queries_aug = np.empty((m, d + 1), dtype=np.float32)
        np.multiply(queries, -2.0, out=queries_aug[:, :d])
        queries_aug[:, d] = 1.0
    else:
        queries_aug = queries
    rows = max(1, min(m, 2048))
    cols = max(1, min(n, _BLOCK_ELEMENTS // rows))
    buffer = np.empty(rows * cols, dtype=np.float32)
    for j in range(0, n, cols):
        xj = xb[j:j + cols]
        if l2:
            xj_aug = np.empty((xj.shape[0], d + 1), dtype=np.float32)
            xj_aug[:, :d] = xj
            np.einsum("ij,ij->i", xj, xj, out=xj_aug[:, d])
            xj = xj_aug
        for i in range(0, m, rows):
            q = queries_aug[i:i + rows]
            scores = buffer[: q.shape[0] * xj.shape[0]].reshape(q.shape[0], xj.shape[0])
            np.matmul(q, xj.T, out=scores)
            block = faiss.float_maxheap_array_t() if l2 else faiss.float_minheap_array_t()
            block.nh, block.k = q.shape[0], k
            block.val, block.ids = faiss.swig_ptr(values[i:]), faiss.swig_ptr(ids[i:])
            block.addn(xj.shape[0], faiss.swig_ptr(scores), j, 0, q.shape[0])
    heaps.reorder()
    if l2:
        values += np.einsum("ij,ij->i", queries, queries)[:, None]
        np.maximum(values, 0.0, out=values)
    return values, ids
