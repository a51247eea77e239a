"""`SearchResult` and its assembly from raw faiss output (ids, keys, labels, reported distances)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .metadata import MetadataStore
from .metrics import Metric


class SearchResult:
    """Neighbours per query, best (smallest distance) first.

    From `search`: every array has shape (n_queries, k). From `range_search`: one SearchResult
    per query with 1-D arrays of shape (n_hits,).

    ids: int64 user-facing ids (-1 where an approximate index found fewer than k hits).
    keys: object array of str keys (None where ids is -1). Keys that are just their ids' decimal
        strings are made on first access, so a search whose caller reads only ids pays nothing.
    distances: float32, ascending, in the index's reported units (inf where ids is -1).
    labels: object array of str labels; None for unlabeled items and where ids is -1.
    """

    __slots__ = ("ids", "distances", "labels", "_keys")

    def __init__(self, ids: np.ndarray, keys: np.ndarray | Callable[[], np.ndarray], distances: np.ndarray,
                 labels: np.ndarray) -> None:
        self.ids, self.distances, self.labels = ids, distances, labels
        self._keys = keys

    @property
    def keys(self) -> np.ndarray:
        if callable(self._keys):
            self._keys = self._keys()
        return self._keys

    def __repr__(self) -> str:
        return f"SearchResult(ids={self.ids!r}, keys={self.keys!r}, distances={self.distances!r}, labels={self.labels!r})"


def knn_result(metric: Metric, meta: MetadataStore, raw: np.ndarray, ids: np.ndarray) -> SearchResult:
    """faiss values and ids (q, k) -> SearchResult; faiss's -1 slots get distance inf."""
    ids = ids.astype(np.int64, copy=False)
    missing = ids < 0
    distances = metric.to_distance(raw)
    distances[missing] = np.inf
    keys, labels = meta.lookup(ids, defer_row_keys=True)
    return SearchResult(ids=ids, keys=keys, distances=distances.astype(np.float32, copy=False), labels=labels)


def range_results(
    metric: Metric, meta: MetadataStore, lims: np.ndarray, raw: np.ndarray, ids: np.ndarray, radius: float
) -> list[SearchResult]:
    """faiss range_search output (lims (q + 1,), flat values and ids) -> one SearchResult per query,
    keeping hits strictly within `radius` (reported units), sorted by ascending distance."""
    distances = metric.to_distance(raw)
    ids = ids.astype(np.int64, copy=False)
    keys, labels = meta.lookup(ids)
    results = []
    for i in range(lims.size - 1):
        lo, hi = int(lims[i]), int(lims[i + 1])
        d = distances[lo:hi]
        order = np.flatnonzero((d < radius) & (ids[lo:hi] >= 0))
        order = order[np.argsort(d[order], kind="stable")]
        results.append(
            SearchResult(ids=ids[lo:hi][order], keys=keys[lo:hi][order], distances=d[order], labels=labels[lo:hi][order])
        )
    return results
