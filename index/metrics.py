"""Distance conventions: what the user sees versus what faiss computes.

Reported distances are always "smaller is closer", so results of every metric sort ascending:

=========  =======================  ==========================  ============================
metric     faiss index metric       faiss value v               reported distance
=========  =======================  ==========================  ============================
"l2"       METRIC_L2                squared Euclidean           sqrt(v) (Euclidean)
"cosine"   METRIC_INNER_PRODUCT     cosine similarity (vectors  1 - v (clipped to [0, 2])
                                    are L2-normalised on add
                                    and on query)
"ip"       METRIC_INNER_PRODUCT     inner product               -v
=========  =======================  ==========================  ============================
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from ._checks import preview
from .errors import VectorIndexError

METRICS: tuple[str, ...] = ("l2", "cosine", "ip")


@dataclass(frozen=True)
class Metric:
    """One of METRICS with the conversions between user units and faiss units."""

    name: str

    @property
    def faiss_metric(self) -> int:
        return faiss.METRIC_L2 if self.name == "l2" else faiss.METRIC_INNER_PRODUCT

    def prepare(self, x: np.ndarray, name: str = "vectors", row_offset: int = 0) -> np.ndarray:
        """float32 (n, d) -> float32 (n, d) as stored/queried: L2-normalised for cosine (new array,
        the caller's data is never modified). Zero vectors have no direction and are refused."""
        if self.name != "cosine":
            return x
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if not np.all(norms > 0):
            bad = np.flatnonzero(norms[:, 0] <= 0) + row_offset
            raise VectorIndexError(
                f"{name} has zero-norm rows {preview(bad.tolist())}, which have no cosine direction; "
                f"drop them or use metric='l2' (from the CLI: a model fine-tuned with --distance euclidean)"
            )
        return (x / norms).astype(np.float32, copy=False)

    def to_distance(self, raw: np.ndarray) -> np.ndarray:
        """faiss values (any shape) -> reported float32 distances (ascending = closer)."""
        raw = np.asarray(raw, dtype=np.float32)
        if self.name == "l2":
            return np.sqrt(np.maximum(raw, 0.0))
        if self.name == "cosine":
            return np.clip(1.0 - raw, 0.0, 2.0).astype(np.float32)  # rounding/PQ error can leave [0, 2]
        return -raw

    def to_faiss_radius(self, radius: float) -> float:
        """Radius in reported units -> faiss range_search threshold (L2: d^2 < r; IP: v > r)."""
        if self.name == "l2":
            if radius <= 0:
                raise VectorIndexError(f"radius must be > 0 for metric 'l2' (a Euclidean distance), got {radius}")
            return float(radius) ** 2
        if self.name == "cosine":
            return 1.0 - float(radius)
        return -float(radius)

    def exact(self, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Reported distances in float64 between queries (q, d) and per-query candidates (q, c, d).

        Used to re-rank faiss's float32 candidates so that near-ties resolve as an exact
        (float64) brute force would. Candidates are stored vectors (normalised for cosine).
        """
        q = queries.astype(np.float64)
        v = vectors.astype(np.float64)
        if self.name == "l2":
            diff = v - q[:, None, :]
            return np.sqrt(np.einsum("qcd,qcd->qc", diff, diff))
        if self.name == "cosine":
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
            return np.clip(1.0 - np.einsum("qcd,qd->qc", v, q), 0.0, 2.0)
        return -np.einsum("qcd,qd->qc", v, q)


def get_metric(name: object) -> Metric:
    if not isinstance(name, str) or name not in METRICS:
        raise VectorIndexError(f"unknown metric {name!r}; use one of {', '.join(repr(m) for m in METRICS)}")
    return Metric(name)
