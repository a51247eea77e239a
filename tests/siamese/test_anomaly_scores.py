"""kNN-distance anomaly scores measured in the latent space whitened by the indexed items."""

import numpy as np
import pytest

from index import VectorIndex
from siamese.inference.anomaly import knn_distance_scores, latent_whitening

# normal items: one wide latent direction, seven ordinary ones and one very narrow one
SCALES = np.array([10.0, 1, 1, 1, 1, 1, 1, 0.1])  # variances 100 to 0.01, as in real latents


@pytest.fixture(scope="module")
def normal_index():
    rng = np.random.default_rng(0)
    return VectorIndex.build((rng.normal(0, 1, (3000, 8)) * SCALES).astype(np.float32))


def queries(n_normal: int = 20) -> np.ndarray:
    """`n_normal` normal items, then one 8 sigma off in the narrow direction only."""
    rng = np.random.default_rng(1)
    odd = np.zeros((1, 8))
    odd[0, 7] = 0.8
    return np.concatenate([rng.normal(0, 1, (n_normal, 8)) * SCALES, odd]).astype(np.float32)


def test_whitening_makes_the_indexed_items_covariance_the_identity(normal_index):
    mean, w = latent_whitening(normal_index)
    vectors = normal_index.reconstruct(normal_index.ids).astype(np.float64)
    white = (vectors - mean) @ w
    assert np.allclose(white.mean(0), 0, atol=1e-6)
    assert np.allclose(np.cov(white, rowvar=False), np.eye(8), atol=1e-2)


def test_whitened_distance_finds_an_item_odd_in_a_narrow_direction(normal_index):
    z = queries()
    whitened = knn_distance_scores(normal_index, z)
    raw = knn_distance_scores(normal_index, z, whiten=False)
    assert whitened.argmax() == len(z) - 1 and whitened[-1] > 2 * np.sort(whitened)[-2]
    assert raw.argmax() != len(z) - 1  # in raw distances the wide direction drowns it


def test_raw_distance_is_the_index_metric(normal_index):
    z = queries()
    expected = normal_index.search(z, 5).distances.mean(1)
    assert np.allclose(knn_distance_scores(normal_index, z, whiten=False), expected)


def test_too_few_indexed_items_to_whiten_keep_raw_distances():
    rng = np.random.default_rng(0)
    small = VectorIndex.build(rng.normal(0, 1, (15, 8)).astype(np.float32))  # fewer than 2 * d
    assert latent_whitening(small) is None
    z = rng.normal(0, 1, (4, 8)).astype(np.float32)
    assert np.allclose(knn_distance_scores(small, z), knn_distance_scores(small, z, whiten=False))


def test_cosine_index_whitens_unit_vectors():
    rng = np.random.default_rng(0)
    index = VectorIndex.build((rng.normal(0, 1, (500, 8)) * SCALES).astype(np.float32), metric="cosine")
    z = queries(5)
    assert np.allclose(knn_distance_scores(index, z), knn_distance_scores(index, 10 * z), rtol=1e-4)


def test_exclude_self_skips_the_item_itself(normal_index):
    z = normal_index.reconstruct(normal_index.ids[:10])
    assert (knn_distance_scores(normal_index, z, exclude_self=True) > 0).all()


def test_combined_leans_on_the_knn_distance():
    from siamese.inference.anomaly import RECONSTRUCTION_RANK_WEIGHT, AnomalyScores

    scores = AnomalyScores(["a", "b", "c"], reconstruction=np.array([1.0, 2.0, 3.0]),
                           knn_distance=np.array([3.0, 2.0, 1.0]))
    w = RECONSTRUCTION_RANK_WEIGHT
    assert np.allclose(scores.combined, [1 - w, 0.5, w]) and list(scores.top(1)) == [0]
    alone = AnomalyScores(["a", "b", "c"], reconstruction=np.array([1.0, 3.0, 2.0]))
    assert np.allclose(alone.combined, [0.0, 1.0, 0.5])  # without an index: the reconstruction rank
