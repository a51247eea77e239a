"""Exact flat k-nearest search: numpy sgemm blocks, running per-query thresholds, worker threads.

Why not faiss IndexFlat.search: faiss wheels bundle their own BLAS, which may not recognise the
CPU and fall back to a generic sgemm (measured 2-3x slower than numpy's on AVX-512 machines), and
its heaps look at every score one by one. Here each worker thread multiplies L2-sized blocks with
a single-threaded numpy sgemm, and each block is compared at once with every query's current k-th
best score (`RunningTopK`); only the few scores below it are merged, now and then. So the cost is
the sgemm plus one vectorised compare, on every core.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import faiss
import numpy as np

from .blas import blas_limit_available, one_blas_thread
from .topk import EMPTY, MAX_ROWS, ROW_MASK, RunningTopK, key_scores

_FUSED_SCORES = 1 << 18  # scores per block when each worker's sgemm is single-threaded (1 MiB, in L2)
_SHARED_SCORES = 1 << 23  # scores per block when OpenBLAS threads the sgemm itself (so it syncs rarely)
_MIN_SCORES_PER_THREAD = 1 << 22  # below this a second thread costs more than it saves


@dataclass(frozen=True)
class BlockPlan:
    """How one search is cut up: GEMM blocks of `rows` queries x `cols` database rows, and
    `threads` workers (over query ranges when each gets a full block of queries, else over
    database ranges), each with a one-thread sgemm when `own_blas`."""

    rows: int
    cols: int
    threads: int
    own_blas: bool


def plan_blocks(m: int, n: int) -> BlockPlan:
    """L2-sized blocks and one worker per core (at most faiss.omp_get_max_threads()) when numpy's
    BLAS can be kept to one thread per caller; otherwise one caller and large blocks, because
    Python threads calling a multi-threaded OpenBLAS thrash (measured 5-10x slower)."""
    if not blas_limit_available():
        rows = max(1, min(m, 2048))
        return BlockPlan(rows, max(1, min(n, _SHARED_SCORES // rows)), 1, False)
    rows = max(1, min(m, 256))
    cols = max(1, min(n, max(1024, _FUSED_SCORES // rows)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, min(cores, faiss.omp_get_max_threads(), m * n // _MIN_SCORES_PER_THREAD))
    return BlockPlan(rows, cols, threads, True)


def flat_search(xb: np.ndarray, queries: np.ndarray, k: int, metric_type: int,
                plan: BlockPlan | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of xb (n, d) for queries (q, d), as `IndexFlat.search` returns them:
    (float32 (q, k) squared L2 ascending / inner products descending, int64 (q, k) row positions,
    -1 past the finite scores); equal scores rank by row. `plan` overrides the blocking (tests)."""
    n, d = xb.shape
    m = queries.shape[0]
    k = min(k, n)
    if n > MAX_ROWS:
        return _segmented(xb, queries, k, metric_type, plan)
    l2 = metric_type == faiss.METRIC_L2
    if l2:  # [-2q, 1] . [x, |x|^2] = |x|^2 - 2 q.x, which ranks like |q - x|^2 (|q|^2 is added at the end)
        q_aug = np.empty((m, d + 1), dtype=np.float32)
        np.multiply(queries, -2.0, out=q_aug[:, :d])
        q_aug[:, d] = 1.0
    else:  # smallest -q.x = largest inner product
        q_aug = np.negative(queries, dtype=np.float32)
    keys = smallest_keys(xb, q_aug, k, l2, plan or plan_blocks(m, n))
    ids = (keys & ROW_MASK).astype(np.int64)
    values = key_scores(keys)
    empty = keys == EMPTY
    ids[empty] = -1
    if l2:
        values += np.einsum("ij,ij->i", queries, queries)[:, None]
        np.maximum(values, 0.0, out=values)
    else:
        np.negative(values, out=values)
    values[empty] = np.inf if l2 else -np.inf
    return values, ids


def _segmented(xb: np.ndarray, queries: np.ndarray, k: int, metric_type: int,
               plan: BlockPlan | None) -> tuple[np.ndarray, np.ndarray]:
    """Databases past the keys' row range: search ranges of rows and merge, earlier rows first on ties."""
    parts = [flat_search(xb[s:s + MAX_ROWS], queries, k, metric_type, plan) for s in range(0, xb.shape[0], MAX_ROWS)]
    values = np.concatenate([v for v, _ in parts], axis=1)
    ids = np.concatenate([np.where(i >= 0, i + s * MAX_ROWS, -1) for s, (_, i) in enumerate(parts)], axis=1)
    order = np.argsort(values if metric_type == faiss.METRIC_L2 else -values, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(values, order, 1), np.take_along_axis(ids, order, 1)


def smallest_keys(xb: np.ndarray, q_aug: np.ndarray, k: int, l2: bool, plan: BlockPlan) -> np.ndarray:
    """Keys (m, k) of the k smallest scores [x, |x|^2] . q_aug (l2) or x . q_aug per query, ascending.

    Workers split the queries when each gets a full block of them (each query is then scanned by
    one worker, whose threshold tightens over the whole database), else the database rows."""
    n, m = xb.shape[0], q_aug.shape[0]
    by_query = m >= plan.threads * plan.rows
    bounds = np.linspace(0, m if by_query else n, plan.threads + 1).astype(np.int64)
    parts = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]

    def work(part: tuple[int, int]) -> np.ndarray:
        lo, hi = part
        if by_query:
            return _scan(xb, q_aug[lo:hi], k, l2, plan, 0, n)
        return _scan(xb, q_aug, k, l2, plan, lo, hi)

    if len(parts) == 1:
        best = [work(parts[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            best = list(pool.map(work, parts))
    keys = np.concatenate(best, axis=0 if by_query else 1)
    keys.sort(axis=1)
    return keys[:, :k]


def _scan(xb: np.ndarray, q_aug: np.ndarray, k: int, l2: bool, plan: BlockPlan, lo: int, hi: int) -> np.ndarray:
    """Best keys (m, k), unordered, of all queries over database rows [lo, hi): one worker's job."""
    m = q_aug.shape[0]
    topk = RunningTopK(q_aug, k, plan.rows * plan.cols)
    with one_blas_thread() if plan.own_blas else nullcontext():
        for j in range(lo, hi, plan.cols):
            block = _database_block(xb[j:min(hi, j + plan.cols)], l2)
            for i in range(0, m, plan.rows):
                topk.add(block, i, min(m, i + plan.rows), j, first=j == lo)
            if j == lo or topk.pending >= topk.merge_at:
                topk.merge()
        topk.merge()
    return topk.best


def _database_block(x: np.ndarray, l2: bool) -> np.ndarray:
    """[x, |x|^2, 1] (l2) or [x, 1]: the last column meets the queries' -threshold column."""
    c, d = x.shape
    block = np.empty((c, d + 1 + l2), dtype=np.float32)
    block[:, :d] = x
    if l2:
        np.einsum("ij,ij->i", x, x, out=block[:, d])
    block[:, -1] = 1.0
    return block
