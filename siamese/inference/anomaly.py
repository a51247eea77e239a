"""Anomaly scores: how badly the autoencoder reconstructs an item, and how far it lies from its
nearest indexed neighbours. Higher = more anomalous for both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SiameseError
from ..models.autoencoder import Autoencoder, reconstruction_error
from .embed import embed, map_batches


def reconstruction_scores(model: Autoencoder, items, *, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """Per-item reconstruction loss (summed BCE in the normalised space), shape (n,)."""
    return map_batches(model, items, lambda x: reconstruction_error(model, x), batch_size, progress, "reconstruct")


def knn_distance_scores(index, z: np.ndarray, *, k: int = 5, exclude_self: bool = False) -> np.ndarray:
    """Mean distance from each embedding (n, d) to its k nearest indexed items, shape (n,).

    exclude_self: the embeddings are themselves in the index, so skip the first hit.
    """
    if k <= 0:
        raise SiameseError(f"k must be positive, got {k}")
    hits = index.search(z, min(len(index), k + int(exclude_self)))
    distances = hits.distances[:, 1:] if exclude_self else hits.distances
    return distances.mean(axis=1).astype(np.float64)


@dataclass
class AnomalyScores:
    """Both scores for n items, aligned with `keys`; `combined` is the mean of their ranks in [0, 1]."""

    keys: list[str]
    reconstruction: np.ndarray
    knn_distance: np.ndarray | None = None

    @property
    def combined(self) -> np.ndarray:
        ranks = [_rank01(self.reconstruction)]
        if self.knn_distance is not None:
            ranks.append(_rank01(self.knn_distance))
        return np.mean(ranks, axis=0)

    def top(self, n: int) -> np.ndarray:
        """Positions of the n most anomalous items, most anomalous first."""
        return np.argsort(-self.combined, kind="stable")[:n]


def _rank01(values: np.ndarray) -> np.ndarray:
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return order / max(1, len(values) - 1)


def score_items(model: Autoencoder, items, *, index=None, k: int = 5, progress: bool = False) -> AnomalyScores:
    """Reconstruction error for every item, plus kNN distance to `index` when one is given."""
    recon = reconstruction_scores(model, items, progress=progress)
    knn = knn_distance_scores(index, embed(model, items), k=k) if index is not None else None
    return AnomalyScores(list(items.keys), recon, knn)
