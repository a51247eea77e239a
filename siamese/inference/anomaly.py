"""Anomaly scores: how badly the autoencoder reconstructs an item, and how far it lies from its
nearest indexed neighbours. Higher = more anomalous for both.

The kNN distance is measured after whitening the latent space by the indexed items' own mean and
covariance (the Mahalanobis distance between items): a few wide latent directions otherwise drown
the narrow ones a normal item must also match. On one-class MNIST (holdout) whitening lifted the
kNN distance's mean AUROC from 0.907 to 0.955 (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SiameseError
from ..models.autoencoder import Autoencoder, reconstruction_error
from .embed import embed, map_batches


def reconstruction_scores(model: Autoencoder, items, *, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """Per-item reconstruction loss (summed BCE in the normalised space), shape (n,)."""
    return map_batches(model, items, lambda x: reconstruction_error(model, x), batch_size, progress, "reconstruct")


WHITENING_SAMPLE = 100_000  # indexed vectors the whitening is estimated from (a seeded sample)
WHITENING_RIDGE = 1e-6  # added to the covariance, relative to its mean variance: flat directions stay finite
WHITENING_CHUNK = 65536  # indexed vectors whitened at a time


def latent_whitening(index, *, sample: int = WHITENING_SAMPLE, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean (d,), W (d, d)) of the indexed vectors, so that ||(z - mean) @ W|| is the Mahalanobis
    distance; None with fewer than 2·d indexed items, too few to estimate a covariance."""
    ids = index.ids
    if len(ids) < 2 * index.dim:
        return None
    if len(ids) > sample:
        ids = np.sort(np.random.default_rng(seed).choice(ids, sample, replace=False))
    vectors = index.reconstruct(ids).astype(np.float64)
    mean = vectors.mean(0)
    covariance = np.cov(vectors - mean, rowvar=False).reshape(index.dim, index.dim)
    covariance += WHITENING_RIDGE * max(float(np.trace(covariance)) / index.dim, 1e-12) * np.eye(index.dim)
    variances, directions = np.linalg.eigh(covariance)
    return mean, directions / np.sqrt(np.maximum(variances, 1e-300))


def _whitened(index, z: np.ndarray, transform: tuple[np.ndarray, np.ndarray]):
    """A flat L2 copy of `index` and the queries `z`, both whitened (cosine: unit vectors first)."""
    from index import VectorIndex

    mean, w = transform
    z = np.asarray(z, dtype=np.float64)
    if index.metric == "cosine":  # the index stores unit vectors; the queries must match
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    white = VectorIndex.empty(index.dim, metric="l2", kind="flat", expected_count=len(index))
    ids = index.ids
    for start in range(0, len(ids), WHITENING_CHUNK):  # only distances are read from the copy
        white.add(((index.reconstruct(ids[start:start + WHITENING_CHUNK]) - mean) @ w).astype(np.float32))
    return white, ((z - mean) @ w).astype(np.float32)


def knn_distance_scores(index, z: np.ndarray, *, k: int = 5, exclude_self: bool = False,
                        whiten: bool = True) -> np.ndarray:
    """Mean distance from each embedding (n, d) to its k nearest indexed items, shape (n,).

    whiten: measure it in the latent space whitened by the indexed items' mean and covariance
    (`latent_whitening`; this builds a whitened flat copy of the index in memory, n·d·4 bytes);
    False, or fewer than 2·d indexed items: in the index's own metric.
    exclude_self: the embeddings are themselves in the index, so skip the first hit.
    """
    if k <= 0:
        raise SiameseError(f"k must be positive, got {k}")
    transform = latent_whitening(index) if whiten else None
    if transform is not None:
        index, z = _whitened(index, z, transform)
    hits = index.search(z, min(len(index), k + int(exclude_self)))
    distances = hits.distances[:, 1:] if exclude_self else hits.distances
    return distances.mean(axis=1).astype(np.float64)


# weight of the reconstruction error's rank in `combined` beside the kNN distance's: the weaker
# signal on its own (one-class MNIST holdout, 2 seeds: mean AUROC 0.952 / 0.954 at 0.5, 0.959 /
# 0.965 at 0.2, 0.955 / 0.963 at 0, the kNN distance alone; BENCHMARKS.md)
RECONSTRUCTION_RANK_WEIGHT = 0.2


@dataclass
class AnomalyScores:
    """Both scores for n items, aligned with `keys`; `combined` is a weighted mean of their ranks in
    [0, 1] (RECONSTRUCTION_RANK_WEIGHT on the reconstruction error), or the reconstruction error's
    rank alone without an index."""

    keys: list[str]
    reconstruction: np.ndarray
    knn_distance: np.ndarray | None = None

    @property
    def combined(self) -> np.ndarray:
        if self.knn_distance is None:
            return rank01(self.reconstruction)
        weight = RECONSTRUCTION_RANK_WEIGHT
        return weight * rank01(self.reconstruction) + (1 - weight) * rank01(self.knn_distance)

    def top(self, n: int) -> np.ndarray:
        """Positions of the n most anomalous items, most anomalous first."""
        return np.argsort(-self.combined, kind="stable")[:n]


def rank01(values: np.ndarray) -> np.ndarray:
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return order / max(1, len(values) - 1)


def score_items(model: Autoencoder, items, *, index=None, k: int = 5, whiten: bool = True,
                progress: bool = False) -> AnomalyScores:
    """Reconstruction error for every item, plus kNN distance to `index` when one is given
    (whitened: see `knn_distance_scores`)."""
    recon = reconstruction_scores(model, items, progress=progress)
    knn = knn_distance_scores(index, embed(model, items), k=k, whiten=whiten) if index is not None else None
    return AnomalyScores(list(items.keys), recon, knn)
