"""k-means clustering of embeddings with faiss (e.g. to explore unlabeled data)."""

from __future__ import annotations

import logging
import numbers
from typing import Any

import faiss
import numpy as np

from ._faiss import faiss_call
from ._checks import check_choice, check_matrix, check_positive_int, iter_row_chunks, to_float32
from .errors import VectorIndexError
from .metrics import Metric

logger = logging.getLogger(__name__)

KMEANS_METRICS = ("l2", "cosine")
MAX_POINTS_PER_CENTROID = 256  # faiss's default training subsample per centroid
_CHUNK = 65536


def kmeans(
    vectors: Any,
    n_clusters: int,
    *,
    seed: int = 0,
    n_iter: int = 25,
    metric: str = "l2",
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster vectors (n, d) into n_clusters groups.

    Returns (assignments int64 (n,), centroids float32 (n_clusters, d)). metric="cosine" runs
    spherical k-means on L2-normalised vectors (unit-norm centroids, assignment by cosine).
    Training uses at most 256 * n_clusters rows sampled with `seed`; assignment then streams
    over all rows in chunks, so an np.memmap is never loaded whole.
    """
    arr, n, d = check_matrix(vectors, "vectors")
    n_clusters = check_positive_int(n_clusters, "n_clusters")
    if n_clusters > n:
        raise VectorIndexError(
            f"n_clusters={n_clusters} is larger than the number of vectors ({n}); "
            f"use n_clusters <= {n}"
        )
    n_iter = check_positive_int(n_iter, "n_iter")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise VectorIndexError(f"seed must be a non-negative int, got {seed!r}")
    m = Metric(check_choice(metric, "metric", KMEANS_METRICS))

    def prepare(block: Any, offset: int) -> np.ndarray:
        return m.prepare(to_float32(block, "vectors", offset), "vectors", offset)

    budget = MAX_POINTS_PER_CENTROID * n_clusters
    if n <= budget:
        train = np.concatenate([prepare(b, s) for s, b in iter_row_chunks(arr, n, _CHUNK)])
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=budget, replace=False))
        train = np.concatenate([prepare(arr[rows[i : i + _CHUNK]], 0) for i in range(0, budget, _CHUNK)])
    km = faiss.Kmeans(
        d,
        n_clusters,
        niter=n_iter,
        seed=int(seed),
        spherical=metric == "cosine",
        min_points_per_centroid=1,
        max_points_per_centroid=MAX_POINTS_PER_CENTROID,
        verbose=False,
    )
    km.train(train)
    assignments = np.empty(n, dtype=np.int64)
    if n <= budget:
        assignments[:] = faiss_call(km.index, "search", train, 1)[1][:, 0]
    else:
        for start, block in iter_row_chunks(arr, n, _CHUNK):
            x = prepare(block, start)
            assignments[start : start + x.shape[0]] = faiss_call(km.index, "search", x, 1)[1][:, 0]
    logger.debug("k-means: %d vectors of dim %d into %d clusters (%s)", n, d, n_clusters, metric)
    return assignments, np.ascontiguousarray(km.centroids, dtype=np.float32).reshape(n_clusters, d)
