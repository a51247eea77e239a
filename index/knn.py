"""k-nearest-neighbour classification over the labelled items of a `VectorIndex`."""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from typing import Any, Iterator

import faiss
import numpy as np

from ._exact import flat_search
from ._faiss import faiss_call
from ._arguments import check_k
from ._checks import check_choice, check_positive_int, check_queries
from .errors import VectorIndexError
from .metrics import get_metric
from .vector_index import SearchResult, VectorIndex

logger = logging.getLogger(__name__)

WEIGHTS = ("uniform", "distance")
_RERANK_MARGIN = 4  # extra float32 candidates re-ranked in float64 so near-ties resolve exactly
_CHUNK_ELEMENTS = 1 << 19  # per-chunk temporaries (queries x classes, queries x candidates x d): 4 MiB of float64
_SEARCH_QUERIES = 1 << 15  # queries per exact brute-force call


@dataclass
class _Labelled:
    """Snapshot of the labelled items for one index version (row = position)."""

    version: int
    ids: np.ndarray  # int64 (m,)
    codes: np.ndarray  # intp (m,), index into classes
    classes: np.ndarray  # object (c,), sorted str labels
    metric_type: int = 0  # exact mode: faiss metric of the scores `flat_search` ranks by
    vectors: np.ndarray | None = None  # exact mode: float32 (m, d), row = position
    owner: Any = None  # keeps the faiss object that owns `vectors` alive
    selector: Any = None  # approximate mode: IDSelectorBatch of labelled ids (None = all)


class KNNClassifier:
    """sklearn-style kNN classifier whose training set is the labelled items of an index.

    Only labelled items vote: the search runs over the labelled items alone, so every query
    gets exactly k labelled neighbours however many unlabeled items surround it. Labels are
    the index's str labels; `classes_` lists them sorted (str order, e.g. "10" < "2").

    exact=True (default): brute force over the labelled vectors (the index itself when it is
    flat and fully labelled, otherwise a private IndexFlat copy of the labelled vectors), and
    the k + 4 best float32 candidates are re-ranked in float64, so neighbours and predictions
    match sklearn's KNeighborsClassifier(algorithm="brute") on the same vectors. Cost is one
    float32 GEMM against the labelled set on every core, plus one compare per score (running
    per-query thresholds keep the candidates few): measured ~5x faster than sklearn's brute
    force (benchmarks/speed.py, 2 cores).
    exact=False: search with the index's own structure (hnsw/ivf/ivfpq) restricted to labelled
    ids by an IDSelector: much faster on large indexes, but an approximate index can miss true
    neighbours, so predictions may differ from brute force.

    weights="uniform": one vote per neighbour. weights="distance": 1 / distance, and when some
    neighbours are at distance 0 only those vote (sklearn's rule); not available for metric
    "ip", whose distances (-inner product) can be negative.

    Ties: the tied class that comes first in `classes_` wins, as with sklearn (argmax of the
    vote matrix, which is scipy.stats.mode's smallest-label rule for uniform weights).
    The classifier follows the index: items added or removed later are picked up on next use.

    Open set: with max_distance=X, `predict` answers `unknown` (default "unknown") for every
    query whose nearest labelled neighbour is farther than X (reported units, e.g. a calibrated
    same/different threshold); votes and predict_proba are unchanged. Off by default (None).
    """

    def __init__(self, index: VectorIndex, *, k: int = 5, weights: str = "uniform", exact: bool = True,
                 max_distance: float | None = None, unknown: str = "unknown") -> None:
        if not isinstance(index, VectorIndex):
            raise VectorIndexError(f"index must be a VectorIndex, got {type(index).__name__}")
        self.index = index
        self.k = check_positive_int(k, "k")
        self.weights = check_choice(weights, "weights", WEIGHTS)
        if not isinstance(exact, bool):
            raise VectorIndexError(f"exact must be True or False, got {exact!r}")
        self.exact = exact
        if max_distance is not None and (isinstance(max_distance, bool) or not isinstance(max_distance, numbers.Real)
                                         or not np.isfinite(max_distance)):
            raise VectorIndexError(f"max_distance must be a finite number or None, got {max_distance!r}")
        self.max_distance = None if max_distance is None else float(max_distance)
        if not isinstance(unknown, str) or not unknown:
            raise VectorIndexError(f"unknown must be a non-empty str label, got {unknown!r}")
        self.unknown = unknown
        if weights == "distance" and index.metric == "ip":
            raise VectorIndexError(
                "weights='distance' needs non-negative distances but metric 'ip' reports -inner product; "
                "use weights='uniform' or metric='cosine'"
            )
        self._metric = get_metric(index.metric)
        self._state: _Labelled | None = None
        self._labelled()  # fail early when the index has no labels

    def __repr__(self) -> str:
        open_set = "" if self.max_distance is None else f", max_distance={self.max_distance}, unknown={self.unknown!r}"
        return (f"KNNClassifier(k={self.k}, weights={self.weights!r}, exact={self.exact}{open_set}, "
                f"index={self.index!r})")

    # -- labelled snapshot ------------------------------------------------------------------------

    def _labelled(self) -> _Labelled:
        index = self.index
        if self._state is not None and self._state.version == index.version:
            return self._state
        ids, labels = index.labelled_items()
        if ids.size == 0:
            raise VectorIndexError("the index has no labelled items to classify with; label some (siamese index "
                                   "build --labels LABELS.csv, or labels= when adding vectors)")
        classes, codes = np.unique(labels, return_inverse=True)
        state = _Labelled(version=index.version, ids=ids, codes=codes.astype(np.intp).ravel(), classes=classes.astype(object))
        if self.exact:
            self._attach_flat(state)
        elif ids.size != len(index):
            state.selector = faiss.IDSelectorBatch(ids)
        self._state = state
        logger.debug("kNN snapshot: %d labelled items, %d classes", ids.size, classes.size)
        return state

    def _attach_flat(self, state: _Labelled) -> None:
        index, d = self.index, self.index.dim
        m = state.ids.size
        rows = index.exact_rows() if m == len(index) else None  # all labelled and flat: search it in place
        if rows is not None:
            row_ids, state.vectors, state.owner = rows
            if not np.array_equal(row_ids, state.ids):
                raise RuntimeError("flat id map out of order")
        else:
            flat = faiss.IndexFlat(d, self._metric.faiss_metric)
            for chunk_ids, vectors in index.iter_vectors():
                keep = np.isin(chunk_ids, state.ids, assume_unique=True)
                if keep.any():
                    faiss_call(flat, "add", np.ascontiguousarray(vectors[keep]))
            state.owner, state.vectors = flat, faiss.rev_swig_ptr(flat.get_xb(), m * d).reshape(m, d)
        state.metric_type = self._metric.faiss_metric

    @property
    def classes_(self) -> np.ndarray:
        """Sorted unique labels (object array of str), the columns of votes/predict_proba."""
        return self._labelled().classes.copy()

    # -- neighbours --------------------------------------------------------------------------------

    def _chunks(self, queries: Any) -> Iterator[tuple[slice, _Labelled, np.ndarray, np.ndarray]]:
        """Per query chunk: (rows, state, positions intp (c, k) (-1 = none), distances float64 (c, k))."""
        state = self._labelled()
        index = self.index
        raw_q = check_queries(queries, index.dim)
        k = check_k(self.k, state.ids.size, "the labelled items")
        q = index.prepare_queries(raw_q)
        width = min(state.ids.size, k + _RERANK_MARGIN) if self.exact else k
        per_query = max(state.classes.size, width * index.dim, 1)
        step = int(max(1, min(8192, _CHUNK_ELEMENTS // per_query)))
        chunks = (self._exact_chunks(state, raw_q, q, k, width, step) if self.exact
                  else self._approximate_chunks(state, q, k, step))
        for rows, pos, dist in chunks:
            yield rows, state, pos, dist

    def _approximate_chunks(self, state: _Labelled, q: np.ndarray, k: int,
                            step: int) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """The index's own search restricted to the labelled ids."""
        index = self.index
        for start in range(0, q.shape[0], step):
            rows = slice(start, min(q.shape[0], start + step))
            raw, hit_ids = index.raw_search(q[rows], k, state.selector)
            pos = np.searchsorted(state.ids, hit_ids)
            pos[hit_ids < 0] = -1
            dist = self._metric.to_distance(raw).astype(np.float64)
            dist[hit_ids < 0] = np.inf
            yield rows, pos.astype(np.intp, copy=False), dist

    def _exact_chunks(self, state: _Labelled, raw_q: np.ndarray, q: np.ndarray, k: int, width: int,
                      step: int) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """Brute force over many queries at once (its setup is per call), then the float64 re-rank
        in small chunks whose temporaries stay in cache."""
        for start in range(0, q.shape[0], _SEARCH_QUERIES):
            stop = min(q.shape[0], start + _SEARCH_QUERIES)
            _, candidates = flat_search(state.vectors, q[start:stop], width, state.metric_type)
            for sub in range(start, stop, step):
                rows = slice(sub, min(stop, sub + step))
                pos = candidates[rows.start - start:rows.stop - start]
                dist = self._metric.exact(raw_q[rows], state.vectors[pos])
                order = np.argsort(dist, axis=1, kind="stable")[:, :k]
                yield rows, np.take_along_axis(pos, order, axis=1).astype(np.intp, copy=False), \
                    np.take_along_axis(dist, order, axis=1)

    def _weights(self, pos: np.ndarray, dist: np.ndarray) -> np.ndarray:
        valid = pos >= 0
        if self.weights == "uniform":
            return valid.astype(np.float64)
        with np.errstate(divide="ignore"):
            w = 1.0 / np.maximum(dist, 0.0)
        exact_hits = np.isinf(w) & valid
        rows = exact_hits.any(axis=1)
        w[rows] = exact_hits[rows]
        w[~valid] = 0.0
        return w

    def _vote_chunk(self, state: _Labelled, pos: np.ndarray, dist: np.ndarray) -> np.ndarray:
        n_classes = state.classes.size
        weights = self._weights(pos, dist)
        codes = np.where(pos >= 0, state.codes[np.maximum(pos, 0)], 0)
        flat = (np.arange(pos.shape[0])[:, None] * n_classes + codes).ravel()
        return np.bincount(flat, weights=weights.ravel(), minlength=pos.shape[0] * n_classes).reshape(pos.shape[0], n_classes)

    def kneighbors(self, queries: Any) -> SearchResult:
        """The k labelled neighbours that vote: arrays of shape (n_queries, k), best first."""
        parts = []
        for _, state, pos, dist in self._chunks(queries):
            ids = np.where(pos >= 0, state.ids[np.maximum(pos, 0)], -1)
            parts.append((ids, dist.astype(np.float32)))
        ids = np.concatenate([p[0] for p in parts])
        keys, labels = self.index.keys_and_labels(ids)
        return SearchResult(ids=ids, keys=keys, distances=np.concatenate([p[1] for p in parts]), labels=labels)

    # -- classification ------------------------------------------------------------------------------

    def votes(self, queries: Any) -> np.ndarray:
        """Summed vote weights, float64 (n_queries, n_classes); columns follow `classes_`."""
        return np.concatenate([self._vote_chunk(state, pos, dist) for _, state, pos, dist in self._chunks(queries)])

    def predict_proba(self, queries: Any) -> np.ndarray:
        """Vote shares, float64 (n_queries, n_classes), rows sum to 1; columns follow `classes_`."""
        votes = self.votes(queries)
        total = votes.sum(axis=1, keepdims=True)
        return np.divide(votes, total, out=np.zeros_like(votes), where=total > 0)

    def predict(self, queries: Any) -> np.ndarray:
        """Winning label per query, object array of str, shape (n_queries,); `unknown` where the
        nearest labelled neighbour lies beyond max_distance (when set)."""
        out = []
        for _, state, pos, dist in self._chunks(queries):
            labels = state.classes[np.argmax(self._vote_chunk(state, pos, dist), axis=1)].astype(object)
            if self.max_distance is not None:
                if self.unknown in state.classes:
                    raise VectorIndexError(f"the index has a class named {self.unknown!r}, the open-set answer; "
                                           f"choose another (--unknown-label; unknown= in Python)")
                labels[dist[:, 0] > self.max_distance] = self.unknown
            out.append(labels)
        return np.concatenate(out).astype(object)

    def nearest_distance(self, queries: Any) -> np.ndarray:
        """Distance to the nearest labelled item per query, float64 (n_queries,): the open-set score."""
        return np.concatenate([dist[:, 0] for _, _, _, dist in self._chunks(queries)])
