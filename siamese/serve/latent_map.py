"""The 2-D map the page draws: a seeded sample of at most `size` indexed items, projected once at
start-up (t-SNE shows clusters; PCA is instant), coordinates scaled into 0..1."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..plots.charts import project_2d

logger = logging.getLogger(__name__)

METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA", "as is": "the embedding itself (2-D)"}


@dataclass(frozen=True)
class LatentMap:
    """Points of the map: ids (n,), x and y (n,) in 0..1, how they were made and how many items exist."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    method: str
    total: int


def sample_ids(index, size: int, seed: int) -> np.ndarray:
    """All ids when the index holds at most `size` items, else a seeded sample of `size`, sorted."""
    ids = index.ids
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=size, replace=False))


def compute_map(index, *, size: int, method: str, seed: int) -> LatentMap:
    """Project a sample of the index's vectors to 2-D (embeddings of 2 or fewer dimensions are drawn as is)."""
    ids = sample_ids(index, size, seed)
    z = np.asarray(index.reconstruct(ids), dtype=np.float32)
    if z.shape[1] <= 2:
        xy, method = np.column_stack([z, np.zeros((len(z), 2 - z.shape[1]))]), "as is"
    else:
        logger.info("projecting %d of %d items to 2-D with %s", len(ids), len(index), METHOD_NAMES[method])
        xy, _, _ = project_2d(z, method if len(ids) >= 4 else "pca", seed)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    unit = (xy - lo) / span
    return LatentMap(ids=ids, x=unit[:, 0], y=unit[:, 1], method=METHOD_NAMES[method], total=len(index))
