"""The distances embeddings are compared with: "cosine" (1 - cosine similarity) or "l2" (Euclidean),
in the same units the index reports (index.metrics), so a threshold learnt on pairs applies to search results."""

from __future__ import annotations

import numpy as np

from ..errors import SiameseError

METRICS = ("cosine", "l2")


def pair_distances(za: np.ndarray, zb: np.ndarray, metric: str) -> np.ndarray:
    """Distances (n,) float64 between rows of za and zb (n, d) in the index's units."""
    a, b = np.asarray(za, dtype=np.float64), np.asarray(zb, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise SiameseError(f"pair embeddings must both have shape (n, d), got {a.shape} and {b.shape}")
    if metric == "l2":
        return np.linalg.norm(a - b, axis=1)
    if metric == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        if not (np.all(na > 0) and np.all(nb > 0)):
            raise SiameseError("a zero embedding has no cosine direction; calibrate with metric 'l2'")
        return np.clip(1.0 - np.einsum("nd,nd->n", a, b) / (na * nb), 0.0, 2.0)
    raise SiameseError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
