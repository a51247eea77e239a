"""What the server does, free of any web framework: one model and its index loaded once, answers as
plain dicts, request errors as RequestError subclasses that carry their HTTP status.

The index is used under one lock (its SQLite metadata is one connection; searches are short);
the model embeds uploads outside it, so a slow upload does not hold up searches by key.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index import KNNClassifier, VectorIndex
from index.errors import VectorIndexError
from index.sharded import open_index_or_shards

from ..data.item_set import ItemSet
from ..data.limits import MAX_FIELD_CHARS
from ..errors import SiameseError
from ..inference.embed import embed
from ..models.autoencoder import Autoencoder
from ..models.checkpoint import load_model
from ..models.metrics import METRICS, pair_distances
from ..retrieval.bundle import check_fresh
from ..retrieval.calibration import Calibration, calibration_with_index
from ..version import __version__
from .config import ServeConfig
from .errors import NotFound, ReadOnly, RequestError
from .item_images import ItemImages
from .latent_map import LatentMap, compute_map, sample_ids
from .pair_proposals import PairQueue, propose_pairs
from .pairs_log import PairsLog
from .uploads import items_from_upload

logger = logging.getLogger(__name__)

READ_ONLY = "this server is read-only: start `siamese serve` with --pairs-out PAIRS.csv to record labels"


QUICK_FLAT_FLOATS = 2**23  # a flat index of at most this many numbers is searched in about a millisecond
MAX_VECTOR_VALUE = 1e15  # squared distances of such vectors stay finite in float32
KEY_CACHE_ITEMS = 1_000_000  # up to this many items, key -> id lookups go through a dict (~100 bytes per key)


@dataclass(frozen=True)
class Query:
    """One item to answer for (exactly one of): an indexed key, a vector, the bytes of an uploaded
    image file (named `name`), or items already loaded (the Python API)."""

    key: str | None = None
    vector: Any = None
    upload: bytes | None = None
    name: str = "upload"
    items: ItemSet | None = None


class Service:
    """A loaded model and index and everything the server derives from them once."""

    def __init__(self, model: Autoencoder, index: VectorIndex, calibration: Calibration | None,
                 config: ServeConfig) -> None:
        self.model, self.index, self.calibration, self.config = model, index, calibration, config
        self._lock = threading.RLock()
        self._decoding = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
        self._classifiers: dict[int, KNNClassifier] = {}
        self._rows = index.exact_rows()  # flat: (ids, vectors, owner); the server never changes its index
        self._key_ids: dict[str, int] | None = None  # key -> id, kept for indexes of up to KEY_CACHE_ITEMS
        if len(index) <= KEY_CACHE_ITEMS:
            self._key_ids = dict(zip(index.keys_for_ids(index.ids).tolist(), index.ids.tolist()))
        self.pairs_log = None if config.pairs_out is None else PairsLog(config.pairs_out)
        self.images = ItemImages(index, model.preprocessing, tuple(model.network.input_shape))
        if len(index):
            first = int(index.ids[0])
            self.images.check(first, self._key_of(first))
        self.map: LatentMap = compute_map(index, size=config.map_size, method=config.map_method, seed=config.seed)
        threshold = calibration.threshold if calibration is not None else None
        candidates = sample_ids(index, config.pair_candidates, config.seed)
        self._votes = vote_index(index) if index.has_labels else None  # what kNN votes run on
        self.pairs = PairQueue(propose_pairs(index, candidates, threshold=threshold, labelled=self._votes))

    @classmethod
    def load(cls, index_path: str | Path, model_path: str | Path, config: ServeConfig) -> Service:
        """Load MODEL and INDEX (refusing an index another model built) and prepare map and proposals."""
        model = load_model(model_path)
        index = open_index_or_shards(index_path, untrusted=config.untrusted)  # a folder of shards is read as one
        check_fresh(index, model, str(index_path))  # vectors of another model would answer nonsense
        calibration = calibration_with_index(model_path, model, index, str(index_path))
        return cls(model, index, calibration, config)

    @property
    def quick_lookups(self) -> bool:
        """Whether a query by key or vector answers in about a millisecond (not a big flat index)."""
        return self.index.kind != "flat" or len(self.index) * self.index.dim <= QUICK_FLAT_FLOATS

    # ------------------------------------------------------------------ reading the index

    def _key_of(self, item_id: int) -> str:
        with self._lock:
            return str(self.index.keys_for_ids(np.asarray([item_id], dtype=np.int64))[0])

    def _id_of(self, key: Any) -> int:
        key = check_key(key, "key")
        if self._key_ids is not None:
            if key not in self._key_ids:
                raise NotFound(f"no indexed item has the key {key[:80]!r}")
            return self._key_ids[key]
        try:
            with self._lock:
                return int(self.index.ids_for_keys([key])[0])
        except VectorIndexError:
            raise NotFound(f"no indexed item has the key {key[:80]!r}") from None

    def item(self, item_id: Any) -> dict[str, Any]:
        """{"id", "key", "label"} of one indexed item."""
        if isinstance(item_id, bool) or not isinstance(item_id, numbers.Integral) or not 0 <= item_id < 2**63:
            raise NotFound(f"no indexed item has the id {str(item_id)[:40]}")
        ids = np.asarray([item_id], dtype=np.int64)
        with self._lock:
            key, label = self.index.keys_and_labels(ids)
        if key[0] is None:
            raise NotFound(f"no indexed item has the id {item_id}")
        return {"id": int(item_id), "key": str(key[0]), "label": label[0]}

    def item_png(self, item_id: Any) -> bytes:
        item = self.item(item_id)
        try:
            return self.images.png(item["id"], item["key"])
        except RequestError:
            raise
        except SiameseError as exc:  # the file moved or changed since the index was built
            logger.warning("cannot draw item %s: %s", item["id"], exc)
            raise NotFound(f"the image of item {item['id']} cannot be read from where the index recorded it any "
                           "more (moved or changed); rebuild the index from the data's new place") from None

    def info(self) -> dict[str, Any]:
        with self._lock:
            ids, labels = self.index.labelled_items()
        calibration = None if self.calibration is None else {
            name: getattr(self.calibration, name) for name in ("threshold", "metric", "target", "f1", "auc")}
        return {
            "count": len(self.index), "dim": self.index.dim, "kind": self.index.kind, "metric": self.index.metric,
            "labelled": len(ids), "classes": sorted({str(v) for v in labels}),
            "model_fingerprint": self.model.fingerprint(), "calibration": calibration,
            "item_shape": list(self.model.network.input_shape), "images": self.images.available,
            "images_problem": self.images.problem,
            "pairs": {"enabled": self.pairs_log is not None,
                      "path": None if self.pairs_log is None else str(self.pairs_log.path),
                      "labelled": 0 if self.pairs_log is None else len(self.pairs_log)},
            "version": __version__,
        }

    # ------------------------------------------------------------------ queries

    def _vectors(self, query: Query, own: int | None = None) -> np.ndarray:
        """(1, dim) float32: the indexed key's vector (`own`: its id when known), the given vector, or
        the embedded upload."""
        if query.key is not None:
            own = self._id_of(query.key) if own is None else own
            if self._rows is not None:  # a view of the stored row: no copy through faiss
                ids, vectors, _ = self._rows
                at = int(np.searchsorted(ids, own))
                return vectors[at:at + 1]
            with self._lock:
                return np.asarray(self.index.reconstruct(np.asarray([own], dtype=np.int64)), dtype=np.float32)
        if query.upload is not None:
            with self._decoding:  # a decoded upload can take hundreds of MB: a few at a time
                items = items_from_upload(query.upload, query.name, self.model.preprocessing,
                                          self.config.max_upload_pixels)
                return embed(self.model, items)
        if query.items is not None:
            return embed(self.model, query.items)
        return check_vector(query.vector, self.index.dim)

    def _check_k(self, k: Any, available: int) -> int:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= self.config.max_k:
            raise RequestError(f"k must be a whole number from 1 to {self.config.max_k}, got {str(k)[:20]}")
        if available < 1:
            raise NotFound("there is nothing to search: the index is empty")
        return min(int(k), available)

    def search(self, query: Query, k: Any = 9) -> dict[str, Any]:
        """The k nearest indexed items, best first; an indexed key's own item is left out."""
        own = self._id_of(query.key) if query.key is not None else None
        k = self._check_k(k, len(self.index) - (own is not None))
        vectors = self._vectors(query, own)
        with self._lock:
            hits = self.index.search(vectors, k + (own is not None))
        rows = [{"key": str(key), "id": int(i), "distance": float(d), "label": label}
                for i, key, d, label in zip(hits.ids[0], hits.keys[0], hits.distances[0], hits.labels[0])
                if i >= 0 and i != own]  # id -1: an approximate index found fewer
        return {"results": rows[:k]}

    def _classifier(self, k: int) -> KNNClassifier:
        if k not in self._classifiers:
            threshold = self.calibration.threshold if self.calibration is not None else None
            try:
                votes = self._votes if self._votes is not None else self.index
                self._classifiers[k] = KNNClassifier(votes, k=k, max_distance=threshold)
            except VectorIndexError as exc:
                raise RequestError(f"cannot classify: {exc}") from None
        return self._classifiers[k]

    def classify(self, query: Query, k: Any = 5) -> dict[str, Any]:
        """Label by the vote of the k nearest labelled items; "unknown" beyond the calibrated threshold."""
        k = self._check_k(k, self.config.max_k)  # before an upload is decoded
        vectors = self._vectors(query)
        with self._lock:
            ids, _ = self.index.labelled_items()
            if not len(ids):
                raise RequestError("cannot classify: no indexed item has a label; build the index with --labels "
                                   "LABELS.csv, or from a folder whose sub-folders name the labels")
            k = self._check_k(k, len(ids))
            classifier = self._classifier(k)
            votes = classifier.votes(vectors)[0]
            label = str(classifier.predict(vectors)[0])
            near = classifier.kneighbors(vectors)
        neighbors = [{"key": str(key), "id": int(i), "distance": float(d), "label": lab}
                     for i, key, d, lab in zip(near.ids[0], near.keys[0], near.distances[0], near.labels[0]) if i >= 0]
        unknown = self.calibration is not None and label == classifier.unknown
        return {"label": None if unknown else label, "unknown": unknown, "k": k,
                "votes": {str(c): float(v) for c, v in zip(classifier.classes_, votes) if v > 0},
                "neighbors": neighbors}

    def verify(self, a: Query, b: Query) -> dict[str, Any]:
        """Distance between two items and, when the model is calibrated, same/different and P(same)."""
        za, zb = self._vectors(a), self._vectors(b)
        metric = self.index.metric
        if metric in METRICS:
            distance = float(pair_distances(za, zb, metric)[0])
        else:  # "ip": the index reports -inner product
            distance = -float(np.dot(za[0].astype(np.float64), zb[0]))
        if not math.isfinite(distance):
            raise RequestError("the distance between these vectors overflows; give vectors of the model's scale")
        calibrated = self.calibration is not None
        return {"distance": distance, "metric": metric,
                "same": bool(self.calibration.is_same(distance)) if calibrated else None,
                "p_same": float(self.calibration.confidence(distance)) if calibrated else None,
                "threshold": self.calibration.threshold if calibrated else None}

    def latent_map(self) -> dict[str, Any]:
        """The 2-D map's points with their keys and labels."""
        with self._lock:
            keys, labels = self.index.keys_and_labels(self.map.ids)
        points = [{"id": int(i), "key": str(key), "label": label, "x": round(float(x), 5), "y": round(float(y), 5)}
                  for i, key, label, x, y in zip(self.map.ids, keys, labels, self.map.x, self.map.y)]
        return {"method": self.map.method, "total": self.map.total, "points": points}

    # ------------------------------------------------------------------ pair labelling

    def _labelled(self, a: int, b: int) -> bool:
        return self.pairs_log is not None and self.pairs_log.label_of(self._key_of(a), self._key_of(b)) is not None

    def next_pair(self) -> dict[str, Any]:
        """The most uncertain pair not yet shown or labelled; NotFound when none is left."""
        proposal = self.pairs.next(self._labelled)
        if proposal is None:
            raise NotFound("no more pairs to propose: every candidate pair was shown or labelled")
        return {"a": self.item(proposal.a), "b": self.item(proposal.b), "distance": proposal.distance,
                "reason": proposal.reason, "labelled": 0 if self.pairs_log is None else len(self.pairs_log)}

    def record_pair(self, a: Any, b: Any, label: Any) -> dict[str, Any]:
        """Append `a,b,label` to --pairs-out (keys of indexed items; label 1 same, 0 different)."""
        if self.pairs_log is None:
            raise ReadOnly(READ_ONLY)
        a, b = check_key(a, "a"), check_key(b, "b")
        self._id_of(a), self._id_of(b)
        if a == b:
            raise RequestError("a pair needs two different items; a and b are the same key")
        if isinstance(label, bool) or label not in (0, 1):
            raise RequestError(f"label must be 1 (same) or 0 (different), got {str(label)[:20]}")
        labelled = self.pairs_log.record(a, b, int(label))
        return {"labelled": labelled, "path": str(self.pairs_log.path)}


def check_key(key: Any, name: str) -> str:
    if not isinstance(key, str) or not key:
        raise RequestError(f"{name} must be the key of an indexed item (a non-empty string)")
    if len(key) > MAX_FIELD_CHARS:
        raise RequestError(f"{name} is {len(key):,} characters long; keys are at most {MAX_FIELD_CHARS}")
    return key


def json_type(value: Any) -> str:
    """What a JSON value is, in JSON's words (for messages about request fields)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {str: "a string", dict: "an object", list: "a list"}.get(type(value), "a number")


def check_vector(vector: Any, dim: int) -> np.ndarray:
    """A JSON list of `dim` numbers of at most MAX_VECTOR_VALUE in size as a (1, dim) float32 array
    (larger values would overflow the distances to infinity)."""
    if not isinstance(vector, list) or len(vector) != dim:
        got = f"{len(vector)} numbers" if isinstance(vector, list) else json_type(vector)
        raise RequestError(f"vector must be a list of {dim} numbers (the index's dimension), got {got}")
    bad = RequestError(f"vector must hold numbers between -{MAX_VECTOR_VALUE:g} and {MAX_VECTOR_VALUE:g} only")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vector):
        raise bad
    try:
        values = np.asarray([vector], dtype=np.float64)
    except (OverflowError, ValueError):  # an integer too large for a float
        raise bad from None
    if not np.all(np.isfinite(values)) or np.abs(values).max() > MAX_VECTOR_VALUE:
        raise bad
    return values.astype(np.float32)


def vote_index(index) -> VectorIndex:
    """The VectorIndex a kNN vote runs on: the index itself, or a sharded index's labelled items."""
    return index if isinstance(index, VectorIndex) else index.labelled_index()
