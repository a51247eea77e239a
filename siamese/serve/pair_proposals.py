"""Which pair a person should label next: the ones the model is least sure of.

Candidates are each sampled item with its k nearest neighbours, and, where the k nearest labelled
items vote for different labels (a split kNN vote), with the nearest labelled item of each of
those labels. Split-vote pairs come first, then pairs by how close their distance lies
to the same/different threshold: the calibrated one, or, for an uncalibrated model, the median
distance to the k-th neighbour (a rough estimate the reason says it is). Pairs of two labelled
items come last: their labels answer them already, unless a label is wrong.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from index import KNNClassifier


@dataclass(frozen=True)
class PairProposal:
    a: int  # index ids
    b: int
    distance: float
    reason: str


def _split_vote_pairs(labelled, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """(a, b, distance) pairs of each item whose k nearest labelled items (in the VectorIndex
    `labelled`; None: no labels) vote for two or more labels, with the nearest labelled item of
    every label in that vote: labelling one of them settles the item's class."""
    if labelled is None or not labelled.has_labels:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    near = KNNClassifier(labelled, k=k).kneighbors(vectors)
    a, b, distance = [], [], []
    for row, labels in enumerate(near.labels):
        first = {}
        for column, label in enumerate(labels.tolist()):
            if label is not None and near.ids[row, column] >= 0:
                first.setdefault(label, column)
        if len(first) >= 2:
            for column in first.values():
                a.append(ids[row])
                b.append(near.ids[row, column])
                distance.append(near.distances[row, column])
    return np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(distance, np.float64)


def propose_pairs(index, ids: np.ndarray, *, threshold: float | None, labelled, k: int = 5) -> list[PairProposal]:
    """Ranked proposals among `ids` and their nearest indexed neighbours (most uncertain first).
    labelled: the VectorIndex of labelled items kNN votes run on (None: no labels, no votes)."""
    if len(index) < 2 or len(ids) == 0:
        return []
    k = min(k, len(index) - 1)
    vectors = index.reconstruct(ids)
    hits = index.search(vectors, k + 1)
    split_a, split_b, split_distance = _split_vote_pairs(labelled, ids, vectors, k)
    a = np.concatenate([split_a, np.repeat(ids, k + 1)])
    b = np.concatenate([split_b, hits.ids.ravel()])
    distance = np.concatenate([split_distance, hits.distances.ravel().astype(np.float64)])
    split = np.arange(len(a)) < len(split_a)
    keep = (b >= 0) & (a != b)
    a, b, distance, split = a[keep], b[keep], distance[keep], split[keep]
    labels_a, labels_b = index.labels_for_ids(a), index.labels_for_ids(b)
    known = (labels_a != None) & (labels_b != None)  # noqa: E711 (elementwise on object arrays)
    if threshold is None:
        kth = hits.distances[:, -1]
        threshold = float(np.median(kth[np.isfinite(kth)])) if np.isfinite(kth).any() else 0.0
        about = f"the median distance to the {k}th neighbour, {threshold:.4g} (not calibrated)"
    else:
        about = f"the calibrated threshold {threshold:.4g}"
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((np.abs(distance - threshold), ~split, known))
    seen: set[tuple[int, int]] = set()
    out = []
    for i in order.tolist():
        pair = (int(lo[i]), int(hi[i]))
        if pair in seen:
            continue
        seen.add(pair)
        prefix = "both are labelled; " if known[i] else ""
        prefix += "the labelled items nearest to one of them vote for different labels; " if split[i] else ""
        out.append(PairProposal(*pair, float(distance[i]), f"{prefix}distance {distance[i]:.4g} is near {about}"))
    return out


class PairQueue:
    """Proposals handed out once each, in order, across threads; `done(a, b)` skips pairs already labelled."""

    def __init__(self, proposals: list[PairProposal]) -> None:
        self._proposals = proposals
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._proposals) - self._next

    def next(self, done: Callable[[int, int], bool]) -> PairProposal | None:
        with self._lock:
            while self._next < len(self._proposals):
                proposal = self._proposals[self._next]
                self._next += 1
                if not done(proposal.a, proposal.b):
                    return proposal
        return None
