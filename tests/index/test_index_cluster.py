"""kmeans: shapes, determinism, recovery of well-separated clusters, chunked assignment."""

from __future__ import annotations

import numpy as np
import pytest

from index import kmeans


def _blobs(n_per: int = 100, k: int = 5, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 20.0
    truth = np.repeat(np.arange(k), n_per)
    return (centers[truth] + rng.standard_normal((k * n_per, d))).astype(np.float32), truth


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_recovers_separated_clusters(metric: str) -> None:
    vectors, truth = _blobs()
    assignments, centroids = kmeans(vectors, 5, seed=1, metric=metric)
    assert assignments.shape == (500,) and assignments.dtype == np.int64
    assert centroids.shape == (5, 8) and centroids.dtype == np.float32
    # each true cluster maps to exactly one found cluster and vice versa
    pairs = set(zip(truth.tolist(), assignments.tolist()))
    assert len(pairs) == 5 and len({a for _, a in pairs}) == 5
    if metric == "cosine":
        np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-4)


def test_deterministic_for_a_seed() -> None:
    vectors, _ = _blobs(seed=2)
    a1, c1 = kmeans(vectors, 7, seed=3)
    a2, c2 = kmeans(vectors, 7, seed=3)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(c1, c2)


def test_subsampled_training_and_chunked_assignment() -> None:
    vectors, truth = _blobs(n_per=600, k=2, d=4)  # 1200 > 256 * 2: trains on a sample
    assignments, _ = kmeans(vectors.astype(np.float64), 2, n_iter=10)
    assert len(set(zip(truth.tolist(), assignments.tolist()))) == 2


def test_as_many_clusters_as_points() -> None:
    vectors, _ = _blobs(n_per=2, k=3)
    assignments, centroids = kmeans(vectors, 6)
    assert sorted(assignments.tolist()) == list(range(6))
    assert centroids.shape == (6, 8)
