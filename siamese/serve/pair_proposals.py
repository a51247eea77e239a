"""Which pair a person should label next: the ones the model is least sure of.

Candidates are each sampled item and its k nearest neighbours. A pair comes first when the
neighbours' labels disagree (the kNN vote around it is split), then by how close its distance lies
to the same/different threshold: the calibrated one, or, for an uncalibrated model, the median
distance to the k-th neighbour (a rough estimate the reason says it is). Pairs of two labelled
items come last: their labels answer them already, unless a label is wrong.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class PairProposal:
    a: int  # index ids
    b: int
    distance: float
    reason: str


def _split_votes(labels: np.ndarray) -> np.ndarray:
    """(n,) bool: the labelled ones among each row's items (n, k + 1) carry two or more labels."""
    out = np.zeros(len(labels), dtype=bool)
    for row, values in enumerate(labels):
        out[row] = len({v for v in values if v is not None}) >= 2
    return out


def propose_pairs(index, ids: np.ndarray, *, threshold: float | None, k: int = 5) -> list[PairProposal]:
    """Ranked proposals among `ids` and their k nearest indexed neighbours (most uncertain first)."""
    if len(index) < 2 or len(ids) == 0:
        return []
    k = min(k, len(index) - 1)
    hits = index.search(index.reconstruct(ids), k + 1)
    own = index.labels_for_ids(ids)
    a = np.repeat(ids, k + 1)
    b, distance = hits.ids.ravel(), hits.distances.ravel().astype(np.float64)
    labels_b = hits.labels.ravel()
    labels_a = np.repeat(own, k + 1)
    split = np.repeat(_split_votes(np.column_stack([own, hits.labels])), k + 1)
    keep = (b >= 0) & (a != b)
    known = (labels_a != None) & (labels_b != None)  # noqa: E711 (elementwise on object arrays)
    if threshold is None:
        kth = hits.distances[:, -1]
        threshold = float(np.median(kth[np.isfinite(kth)])) if np.isfinite(kth).any() else 0.0
        about = f"the median distance to the {k}th neighbour, {threshold:.4g} (not calibrated)"
    else:
        about = f"the calibrated threshold {threshold:.4g}"
    lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    distance, split, known = distance[keep], split[keep], known[keep]
    order = np.lexsort((np.abs(distance - threshold), ~split, known))
    seen: set[tuple[int, int]] = set()
    out = []
    for i in order.tolist():
        pair = (int(lo[i]), int(hi[i]))
        if pair in seen:
            continue
        seen.add(pair)
        why = f"distance {distance[i]:.4g} is near {about}"
        prefix = "both are labelled, " if known[i] else ""
        prefix += "their neighbours' labels disagree; " if split[i] else ""
        out.append(PairProposal(*pair, float(distance[i]), prefix + why))
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
