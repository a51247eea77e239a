"""Label propagation over the kNN graph of an index: a few labels reach every item.

When only a handful of indexed items carry labels, a query's nearest *labelled* items can be far
away; spreading the labels along the graph of nearest neighbours (Zhou et al., 2004, "Learning
with local and global consistency") first lets every indexed item vote.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import VectorIndexError

LOG = logging.getLogger(__name__)


@dataclass
class Propagated:
    """Labels for every indexed item, aligned with `ids` (all of shape (n,))."""

    ids: np.ndarray  # int64
    labels: np.ndarray  # object: the given label, or the propagated one
    confidence: np.ndarray  # float64 in [0, 1]: share of the item's label mass on the winner
    given: np.ndarray  # bool: the label was given, not propagated


def propagate_labels(index, *, k: int = 10, alpha: float = 0.9, iterations: int = 30,
                     bandwidth: float = 1.0) -> Propagated:
    """Spread the index's labels over its k-nearest-neighbour graph.

    F <- alpha * W F + Y, with W the row-normalised edge weights exp(-d / (bandwidth * median d))
    and Y the one-hot given labels. Items no label can reach keep None.
    """
    if not index.has_labels:
        raise VectorIndexError("the index has no labels to propagate; label some of its items (siamese index build "
                               "--labels LABELS.csv, or labels= when adding vectors)")
    if not 0 < alpha < 1:
        raise VectorIndexError(f"alpha must be in (0, 1), got {alpha}")
    n = len(index)
    k = min(int(k), n - 1)
    if k < 1:
        raise VectorIndexError("label propagation needs at least two indexed items")
    ids = index.ids
    vectors = index.reconstruct(ids)
    hits = index.search(vectors, k + 1)
    position = {int(i): p for p, i in enumerate(ids)}
    neighbours = np.vectorize(lambda i: position.get(int(i), -1), otypes=[np.int64])(hits.ids[:, 1:])
    distances = np.where(neighbours >= 0, hits.distances[:, 1:], np.inf).astype(np.float64)
    finite = distances[np.isfinite(distances)]
    scale = bandwidth * max(float(np.median(finite)) if finite.size else 1.0, 1e-12)
    weights = np.exp(-distances / scale)
    weights /= np.maximum(weights.sum(1, keepdims=True), 1e-300)
    labels = index.labels_for_ids(ids)
    given = np.array([label is not None for label in labels])
    classes = np.array(sorted({label for label in labels[given]}), dtype=object)
    seeds = np.zeros((n, len(classes)))
    seeds[np.flatnonzero(given), np.searchsorted(classes, labels[given].astype(str))] = 1.0
    safe = np.where(neighbours >= 0, neighbours, 0)
    mass = seeds.copy()
    for _ in range(iterations):
        mass = alpha * np.einsum("nk,nkc->nc", weights, mass[safe]) + seeds
    total = mass.sum(1)
    winner = mass.argmax(1)
    result = np.where(given, labels, np.where(total > 0, classes[winner], None))
    confidence = np.where(total > 0, mass.max(1) / np.maximum(total, 1e-300), 0.0)
    LOG.info("propagated %d labels to %d items", int(given.sum()), int((result != None).sum()))  # noqa: E711
    return Propagated(ids, result.astype(object), confidence, given)


def propagated_index(index, **options):
    """A copy of `index` (same ids, keys, vectors) whose unlabelled items carry propagated labels."""
    from .vector_index import VectorIndex

    result = propagate_labels(index, **options)
    copy = VectorIndex.empty(index.dim, metric=index.metric, kind="flat",
                             model_fingerprint=index.model_fingerprint, info=dict(index.info))
    attrs = [{"label_source": "given" if g else "propagated", "confidence": round(float(c), 4)}
             for g, c in zip(result.given, result.confidence)]
    copy.add(index.reconstruct(result.ids), keys=list(index.keys_for_ids(result.ids)),
             labels=list(result.labels), attrs=attrs)
    return copy
