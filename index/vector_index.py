"""`VectorIndex`: a faiss index plus item metadata, with stable int64 ids and safe persistence."""

from __future__ import annotations

import datetime as _dt
import logging
import numbers
import platform
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from ._faiss import faiss_call, flat_search
from . import kinds as _kinds
from . import storage as _storage
from ._checks import (
    as_attrs,
    as_ids,
    as_keys,
    as_labels,
    check_choice,
    check_matrix,
    check_positive_int,
    check_queries,
    iter_row_chunks,
    preview,
    to_float32,
    to_json,
)
from .atomic import atomic_directory, read_consistently
from .errors import VectorIndexError
from .kinds import IVF_KINDS, IndexParams
from .metadata import MetadataStore
from .metrics import METRICS, Metric, get_metric

logger = logging.getLogger(__name__)

HNSW_COMPACT_FRACTION = 0.25  # rebuild the HNSW graph once this share of its vectors is removed
FLAT_GEMM_MIN_QUERIES = 20  # from here on flat search is one GEMM (faiss switches to BLAS at 20 too)


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Neighbours per query, best (smallest distance) first.

    From `search`: every array has shape (n_queries, k). From `range_search`: one SearchResult
    per query with 1-D arrays of shape (n_hits,).

    ids: int64 user-facing ids (-1 where an approximate index found fewer than k hits).
    keys: object array of str keys (None where ids is -1).
    distances: float32, ascending, in the index's reported units (inf where ids is -1).
    labels: object array of str labels; None for unlabeled items and where ids is -1.
    """

    ids: np.ndarray
    keys: np.ndarray
    distances: np.ndarray
    labels: np.ndarray


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_optional_int(value: Any, name: str) -> int | None:
    return None if value is None else check_positive_int(value, name)


def _check_fingerprint(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise VectorIndexError(
            f"model_fingerprint must be a str or None, got {type(value).__name__}; "
            f"pass e.g. a hex digest of the model weights"
        )
    return value


def _check_info(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VectorIndexError(f"info must be a dict or None, got {type(value).__name__}")
    to_json(value, "info")
    return dict(value)


class VectorIndex:
    """Nearest-neighbour index over float vectors, with string keys, optional labels and attrs.

    Distances are reported so that smaller is always closer (results sort ascending):

    - ``metric="l2"``: Euclidean distance (the square root of faiss's squared L2).
    - ``metric="cosine"``: ``1 - cosine similarity`` in [0, 2]; vectors and queries are
      L2-normalised (zero vectors are refused), and stored vectors are the normalised ones.
    - ``metric="ip"``: ``-inner product``.

    Kinds: "flat" (exact), "hnsw", "ivf", "ivfpq" (approximate) and "auto" (resolved at build
    time from the vector count and `memory_budget_bytes`; `kind` reports the result). See
    `index.kinds` for the faiss structures. Ids are int64, assigned 0, 1, 2, ... by `add` and
    never reused: they continue after the largest id ever assigned, across remove/save/load.
    Removing from an HNSW graph is not possible in faiss, so removed HNSW ids are tombstoned
    (excluded with an IDSelector at search time) until the graph is rebuilt from the stored
    vectors, which happens once a quarter of it is tombstoned and on every save.

    `info` is a free JSON-serialisable dict saved in manifest.json: the caller's place for
    things like a model config summary or a calibrated distance threshold.
    `model_fingerprint` identifies the embedding model; `check_model` compares against it.

    Create with `build`, `empty` (then `train` for IVF kinds and `add` chunk by chunk) or `load`.
    """

    def __init__(
        self,
        *,
        dim: int,
        metric: Metric,
        params: IndexParams,
        faiss_index: faiss.Index | None,
        meta: MetadataStore,
        next_id: int,
        model_fingerprint: str | None,
        info: dict[str, Any],
        seed: int,
        chunk_size: int,
        created_at: str | None = None,
    ) -> None:
        self._dim = dim
        self._metric = metric
        self._params = params
        self._faiss = faiss_index
        self._meta = meta
        self._next_id = next_id
        self._fingerprint = model_fingerprint
        self._info = info
        self._seed = seed
        self._chunk_size = chunk_size
        self._created_at = created_at or _now()
        self._removed = np.empty(0, dtype=np.int64)  # HNSW tombstones
        self._tombstone_selector: tuple[Any, Any] | None = None
        self._version = 0  # bumped on every add/remove (KNNClassifier caches on it)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def empty(
        cls,
        dim: int,
        *,
        metric: str = "l2",
        kind: str = "flat",
        expected_count: int | None = None,
        memory_budget_bytes: int | None = None,
        nlist: int | None = None,
        pq_m: int | None = None,
        model_fingerprint: str | None = None,
        info: dict[str, Any] | None = None,
        seed: int = 0,
        chunk_size: int = 65536,
    ) -> "VectorIndex":
        """An index with no vectors. IVF kinds need `train(sample)` before `add`; kind="auto"
        needs `expected_count`. nlist/pq_m override the IVF list count / PQ code bytes."""
        dim = check_positive_int(dim, "dim")
        metric_obj = get_metric(metric)
        check_choice(kind, "kind", _kinds.REQUESTABLE_KINDS)
        expected_count = _check_optional_int(expected_count, "expected_count")
        memory_budget_bytes = _check_optional_int(memory_budget_bytes, "memory_budget_bytes")
        nlist = _check_optional_int(nlist, "nlist")
        pq_m = _check_optional_int(pq_m, "pq_m")
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise VectorIndexError(f"seed must be a non-negative int, got {seed!r}")
        params = _kinds.resolve_params(kind, dim, expected_count, memory_budget_bytes, nlist, pq_m)
        faiss_index = None if params.kind in IVF_KINDS else _kinds.create(params, dim, metric_obj.faiss_metric)
        return cls(
            dim=dim,
            metric=metric_obj,
            params=params,
            faiss_index=faiss_index,
            meta=MetadataStore.in_memory(),
            next_id=0,
            model_fingerprint=_check_fingerprint(model_fingerprint),
            info=_check_info(info),
            seed=int(seed),
            chunk_size=chunk_size,
        )

    @classmethod
    def build(
        cls,
        vectors: Any,
        keys: Sequence[str | int] | None = None,
        labels: Sequence[str | int | None] | None = None,
        attrs: Sequence[dict[str, Any] | None] | None = None,
        *,
        metric: str = "l2",
        kind: str = "flat",
        memory_budget_bytes: int | None = None,
        model_fingerprint: str | None = None,
        info: dict[str, Any] | None = None,
        seed: int = 0,
        chunk_size: int = 65536,
        nlist: int | None = None,
        pq_m: int | None = None,
    ) -> "VectorIndex":
        """Index `vectors` (n, d) in one call; ids are 0..n-1, keys default to str(id).

        `vectors` may be any array-like, including an np.memmap larger than RAM: it is read
        `chunk_size` rows at a time and never converted as a whole. IVF kinds are trained on a
        random sample (at most 64 * nlist rows, drawn with `seed`).
        """
        arr, n, d = check_matrix(vectors, "vectors")
        key_list = as_keys(keys, n) if keys is not None else None
        label_list = as_labels(labels, n) if labels is not None else None
        attr_list = as_attrs(attrs, n) if attrs is not None else None
        index = cls.empty(
            d,
            metric=metric,
            kind=kind,
            expected_count=n,
            memory_budget_bytes=memory_budget_bytes,
            nlist=nlist,
            pq_m=pq_m,
            model_fingerprint=model_fingerprint,
            info=info,
            seed=seed,
            chunk_size=chunk_size,
        )
        if key_list is not None:
            index._meta.check_new_keys(key_list)
        if index._params.kind in IVF_KINDS:
            index._train_from(arr, n)
        index._add(arr, n, key_list, label_list, attr_list, validate_first=False)
        logger.info("built %r index of %d vectors (dim %d, metric %s)", index.kind, n, d, index.metric)
        return index

    # -- properties ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._meta)

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, metric={self.metric!r}, dim={self._dim}, count={len(self)})"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric.name

    @property
    def kind(self) -> str:
        """Resolved kind ("auto" is never reported)."""
        return self._params.kind

    @property
    def params(self) -> dict[str, Any]:
        """Resolved faiss parameters (kind, nlist, nprobe, pq_m, hnsw_m, ef_search...)."""
        return self._params.to_json()

    @property
    def model_fingerprint(self) -> str | None:
        return self._fingerprint

    @property
    def info(self) -> dict[str, Any]:
        """Free-form JSON-serialisable dict saved in manifest.json (mutable in place)."""
        return self._info

    @info.setter
    def info(self, value: dict[str, Any]) -> None:
        self._info = _check_info(value)

    @property
    def has_labels(self) -> bool:
        return self._meta.has_labels

    @property
    def is_trained(self) -> bool:
        return self._faiss is not None and bool(self._faiss.is_trained)

    @property
    def ids(self) -> np.ndarray:
        """Sorted int64 ids of all items, shape (len(self),)."""
        return self._meta.ids.copy()

    @property
    def next_id(self) -> int:
        """Id the next added vector will get."""
        return self._next_id

    def reserve_ids(self, next_id: int) -> None:
        """Number the next added vector `next_id` (never lower than now): a shard of a larger
        collection gives its items their position in the whole (see index.shards)."""
        next_id = check_positive_int(next_id, "next_id") if next_id else 0
        if next_id < self._next_id:
            raise VectorIndexError(f"next_id={next_id} is below the ids already assigned (next is {self._next_id})")
        self._next_id = next_id

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Trade speed for recall: IVF lists probed per query (ivf/ivfpq) or HNSW candidate list
        size (hnsw). Saved with the index."""
        if nprobe is not None:
            if self.kind not in IVF_KINDS:
                raise VectorIndexError(f"nprobe applies to kinds 'ivf' and 'ivfpq', not {self.kind!r}")
            nprobe = check_positive_int(nprobe, "nprobe")
            if self._params.nlist is not None:
                nprobe = min(nprobe, self._params.nlist)
            self._params = replace(self._params, nprobe=nprobe)
            if self._faiss is not None:
                self._faiss.nprobe = nprobe
        if ef_search is not None:
            if self.kind != "hnsw":
                raise VectorIndexError(f"ef_search applies to kind 'hnsw', not {self.kind!r}")
            self._params = replace(self._params, ef_search=check_positive_int(ef_search, "ef_search"))
            faiss.downcast_index(self._faiss.index).hnsw.efSearch = self._params.ef_search

    # -- model check -----------------------------------------------------------------------------

    def check_model(self, fingerprint: str | None, dim: int | None = None, force: bool = False) -> None:
        """Refuse queries embedded by a different model than the one that built the index.

        Raises VectorIndexError when `fingerprint` (or `dim`, if given) differs from the recorded
        value; with force=True logs a warning instead.
        """
        problems = []
        if fingerprint != self._fingerprint:
            recorded = "no fingerprint" if self._fingerprint is None else f"fingerprint {self._fingerprint!r}"
            problems.append(f"the index was built with {recorded} but the model has {fingerprint!r}")
        if dim is not None and dim != self._dim:
            problems.append(f"the index has dimension {self._dim} but the model embeds to {dim}")
        if not problems:
            return
        message = "; ".join(problems)
        if force:
            logger.warning("model mismatch ignored (force=True): %s", message)
            return
        raise VectorIndexError(
            f"model mismatch: {message}; rebuild the index with this model or pass force=True (CLI: --force)"
        )

    # -- training / adding -----------------------------------------------------------------------

    def _prepare(self, block: Any, name: str, offset: int = 0) -> np.ndarray:
        return self._metric.prepare(to_float32(block, name, offset), name, offset)

    def _sample(self, arr: Any, n: int, size: int, name: str) -> np.ndarray:
        """Up to `size` rows of arr drawn with the index seed, as prepared float32 (s, d)."""
        if n <= size:
            return np.concatenate([self._prepare(b, name, s) for s, b in iter_row_chunks(arr, n, self._chunk_size)])
        rows = np.sort(np.random.default_rng(self._seed).choice(n, size=size, replace=False))
        parts = [self._prepare(arr[rows[i : i + self._chunk_size]], name) for i in range(0, size, self._chunk_size)]
        return np.concatenate(parts)

    def train(self, sample: Any) -> None:
        """Train an IVF kind on a representative sample (s, d) before adding (a no-op for flat
        and hnsw). At most 64 * nlist rows are used, drawn with the index seed."""
        if self._params.kind not in IVF_KINDS:
            logger.debug("train() is a no-op for kind %r", self.kind)
            return
        if self._faiss is not None:
            raise VectorIndexError("this index is already trained; build a new index to train on different data")
        arr, n, _ = check_matrix(sample, "sample", self._dim)
        self._train_from(arr, n)

    def _train_from(self, arr: Any, n: int) -> None:
        params = self._params
        if params.nlist is None:
            nlist = _kinds.default_nlist(n)
            params = replace(params, nlist=nlist, nprobe=_kinds.default_nprobe(nlist))
        x = self._sample(arr, n, _kinds.train_sample_size(params), "sample")
        index = _kinds.create(params, self._dim, self._metric.faiss_metric)
        _kinds.train(index, params, x, self._seed)
        self._params, self._faiss = params, index

    def add(
        self,
        vectors: Any,
        keys: Sequence[str | int] | None = None,
        labels: Sequence[str | int | None] | None = None,
        attrs: Sequence[dict[str, Any] | None] | None = None,
    ) -> np.ndarray:
        """Add vectors (n, d); returns their new int64 ids, shape (n,).

        Keys default to str(id). Everything (shape, values, keys, labels, attrs, duplicates) is
        validated before anything is added, so a failed call leaves the index unchanged.
        """
        arr, n, _ = check_matrix(vectors, "vectors", self._dim)
        key_list = as_keys(keys, n) if keys is not None else None
        label_list = as_labels(labels, n) if labels is not None else None
        attr_list = as_attrs(attrs, n) if attrs is not None else None
        return self._add(arr, n, key_list, label_list, attr_list, validate_first=True)

    def _add(
        self,
        arr: Any,
        n: int,
        keys: list[str] | None,
        labels: list[str | None] | None,
        attrs: list[str | None] | None,
        validate_first: bool,
    ) -> np.ndarray:
        if self._faiss is None:
            raise VectorIndexError(
                f"kind {self.kind!r} must be trained first; "
                f"call train(sample) with representative vectors"
            )
        self._check_writable("add to")
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        if keys is None:
            keys = [str(i) for i in ids.tolist()]
            self._meta.check_new_keys(keys, name="the default keys (str(id))")
        else:
            self._meta.check_new_keys(keys)
        single = n <= self._chunk_size
        prepared = None
        if validate_first:
            if single:
                prepared = self._prepare(arr, "vectors")
            else:
                for start, block in iter_row_chunks(arr, n, self._chunk_size):
                    self._prepare(block, "vectors", start)
        added = 0
        try:
            for start, block in iter_row_chunks(arr, n, self._chunk_size):
                x = prepared if prepared is not None else self._prepare(block, "vectors", start)
                faiss_call(self._faiss, "add_with_ids", x, ids[start : start + x.shape[0]])
                added = start + x.shape[0]
            self._meta.add(ids, keys, labels, attrs)
        except BaseException:
            if added:
                self._undo_add(ids[:added])
            raise
        self._next_id += n
        self._version += 1
        return ids

    def _undo_add(self, ids: np.ndarray) -> None:
        """Take back vectors added before a failure; their ids are not reused."""
        if self.kind == "hnsw":
            self._tombstone(ids)
        else:
            faiss_call(self._faiss, "remove_ids", ids)
        self._next_id = int(ids[-1]) + 1

    def _check_writable(self, action: str) -> None:
        """A merged shard index maps its lists read-only from lists.ivfdata (see index.shards)."""
        if self.kind in IVF_KINDS and self._faiss is not None and isinstance(
            faiss.downcast_InvertedLists(faiss.extract_index_ivf(self._faiss).invlists), faiss.OnDiskInvertedLists
        ):
            raise VectorIndexError(
                f"cannot {action} a merged shard index: its inverted lists are memory-mapped read-only from "
                f"{_storage.IVFDATA_FILE}; build another shard and merge again (copy the directory to move it)"
            )

    # -- removal ---------------------------------------------------------------------------------

    def remove(self, ids: Any = None, keys: Any = None) -> int:
        """Remove items by `ids` or by `keys` (exactly one); returns how many were removed.
        Unknown ids/keys raise VectorIndexError and nothing is removed."""
        if (ids is None) == (keys is None):
            raise VectorIndexError("remove() needs exactly one of ids= or keys=")
        self._check_writable("remove from")
        if keys is not None:
            target = self._meta.ids_for_keys(as_keys(keys, name="keys"))
        else:
            target = as_ids(ids)
            unknown = self._meta.unknown_ids(target)
            if unknown.size:
                raise VectorIndexError(
                    f"ids has {unknown.size} id(s) not in the index {preview(unknown.tolist())}; nothing was removed"
                )
        target = np.unique(target)
        if self.kind == "hnsw":
            self._tombstone(target)
        else:
            removed = faiss_call(self._faiss, "remove_ids", target)
            if removed != target.size:
                raise RuntimeError(f"faiss removed {removed} of {target.size} ids")  # metadata/faiss out of sync
        self._meta.remove(target)
        self._version += 1
        if self.kind == "hnsw" and self._removed.size > HNSW_COMPACT_FRACTION * self._faiss.ntotal:
            self._compact()
        return int(target.size)

    def _tombstone(self, ids: np.ndarray) -> None:
        self._removed = np.union1d(self._removed, ids)
        self._tombstone_selector = None

    def _compact(self) -> None:
        """Rebuild the HNSW graph from its stored vectors without the tombstoned ones."""
        if not self._removed.size:
            return
        fresh = _kinds.create(self._params, self._dim, self._metric.faiss_metric)
        for chunk_ids, vectors in _kinds.iter_vectors(self._faiss, self.kind, self._chunk_size, exclude=self._removed):
            faiss_call(fresh, "add_with_ids", vectors, chunk_ids)
        logger.debug("rebuilt HNSW graph: dropped %d tombstoned vectors, kept %d", self._removed.size, fresh.ntotal)
        self._faiss = fresh
        self._removed = np.empty(0, dtype=np.int64)
        self._tombstone_selector = None

    # -- search ----------------------------------------------------------------------------------

    def _require_items(self) -> None:
        if len(self) == 0:
            raise VectorIndexError("the index is empty; add vectors before searching")

    def _check_k(self, k: Any, available: int | None = None, what: str = "the index") -> int:
        available = len(self) if available is None else available
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise VectorIndexError(f"k must be an integer, got {k!r} ({type(k).__name__})")
        if k < 1:
            raise VectorIndexError(f"k={k} must be >= 1; use 1 <= k <= {available}")
        if k > available:
            raise VectorIndexError(f"k={k} is larger than {what} ({available} items); use k <= {available}")
        return int(k)

    def prepare_queries(self, queries: Any) -> np.ndarray:
        """Queries as the index sees them: float32 (n_queries, dim), normalised for cosine."""
        return self._metric.prepare(check_queries(queries, self._dim), "queries")

    def _search_params(self, k: int, selector: Any = None) -> Any:
        """faiss SearchParameters carrying efSearch/nprobe and an id filter (tombstones or
        `selector`, which must already exclude removed ids). Callers keep `selector` alive."""
        if selector is None and self._removed.size:
            if self._tombstone_selector is None:
                batch = faiss.IDSelectorBatch(self._removed)
                self._tombstone_selector = (batch, faiss.IDSelectorNot(batch))
            selector = self._tombstone_selector[1]
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self._params.ef_search or _kinds.HNSW_EF_SEARCH, k)
        elif self.kind in IVF_KINDS:
            if selector is None:
                return None
            params = faiss.SearchParametersIVF()
            params.nprobe = self._faiss.nprobe
        else:
            if selector is None:
                return None
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        return params

    def _raw_search(self, q: np.ndarray, k: int, selector: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """faiss search on prepared queries: (faiss values float32 (q, k), ids int64 (q, k))."""
        params = self._search_params(k, selector)
        if self.kind == "flat" and params is None and q.shape[0] >= FLAT_GEMM_MIN_QUERIES:
            inner = faiss.downcast_index(self._faiss.index)  # rows in id-map order
            n = inner.ntotal
            distances, pos = flat_search(faiss.rev_swig_ptr(inner.get_xb(), n * self._dim).reshape(n, self._dim),
                                         q, k, inner.metric_type)
            return distances, faiss.rev_swig_ptr(self._faiss.id_map.data(), n)[pos]
        distances, ids = faiss_call(self._faiss, "search", q, k, params=params)
        return distances, ids

    def _result(self, raw: np.ndarray, ids: np.ndarray) -> SearchResult:
        ids = ids.astype(np.int64, copy=False)
        missing = ids < 0
        distances = self._metric.to_distance(raw)
        distances[missing] = np.inf
        keys, labels = self._meta.lookup(ids)
        return SearchResult(ids=ids, keys=keys, distances=distances.astype(np.float32, copy=False), labels=labels)

    def search(self, queries: Any, k: int) -> SearchResult:
        """k nearest items of each query (n_queries, d) or (d,); arrays of shape (n_queries, k).

        Requires 1 <= k <= len(self). Approximate kinds may find fewer than k hits for some
        queries; those slots hold id -1, key/label None and distance inf.
        """
        self._require_items()
        q = self.prepare_queries(queries)
        k = self._check_k(k)
        return self._result(*self._raw_search(q, k))

    def range_search(self, queries: Any, radius: float) -> list[SearchResult]:
        """All items strictly closer than `radius` (reported units) to each query.

        Returns one SearchResult per query with 1-D arrays sorted by ascending distance. Exact
        for flat; for hnsw/ivf/ivfpq faiss explores only part of the index, so hits can be missed.
        """
        self._require_items()
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not np.isfinite(radius):
            raise VectorIndexError(f"radius must be a finite number, got {radius!r}")
        q = self.prepare_queries(queries)
        params = self._search_params(self._params.ef_search or 1)
        lims, raw, ids = faiss_call(
            self._faiss, "range_search", q, self._metric.to_faiss_radius(float(radius)), params=params
        )
        distances = self._metric.to_distance(raw)
        ids = ids.astype(np.int64, copy=False)
        keys, labels = self._meta.lookup(ids)
        results = []
        for i in range(q.shape[0]):
            lo, hi = int(lims[i]), int(lims[i + 1])
            d = distances[lo:hi]
            order = np.flatnonzero((d < radius) & (ids[lo:hi] >= 0))
            order = order[np.argsort(d[order], kind="stable")]
            results.append(
                SearchResult(ids=ids[lo:hi][order], keys=keys[lo:hi][order], distances=d[order], labels=labels[lo:hi][order])
            )
        return results

    # -- item access -----------------------------------------------------------------------------

    def ids_for_keys(self, keys: Sequence[str | int]) -> np.ndarray:
        """int64 ids (n,) for keys (n,); unknown keys raise VectorIndexError."""
        return self._meta.ids_for_keys(as_keys(keys, name="keys", allow_empty=True))

    def keys_for_ids(self, ids: Any) -> np.ndarray:
        """object array (n,) of str keys for ids (n,)."""
        return self._meta.keys_for_ids(as_ids(ids, allow_empty=True))

    def labels_for_ids(self, ids: Any) -> np.ndarray:
        """object array (n,) of str labels (None = unlabeled) for ids (n,)."""
        return self._meta.labels_for_ids(as_ids(ids, allow_empty=True))

    def attrs_for_ids(self, ids: Any) -> list[dict[str, Any] | None]:
        """attrs dict (or None) per id."""
        return self._meta.attrs_for_ids(as_ids(ids, allow_empty=True))

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Stored vector(s): float32 (d,) for one id, (n, d) for a sequence of ids.

        Vectors are as stored: normalised for cosine, PQ-approximated for ivfpq."""
        single = np.ndim(ids) == 0
        arr = as_ids(ids)
        self._meta.keys_for_ids(arr)  # raises on unknown ids
        vectors = np.asarray(faiss_call(self._faiss, "reconstruct_batch", arr), dtype=np.float32).reshape(arr.size, self._dim)
        return vectors[0] if single else vectors

    def get(self, keys: str | int | Sequence[str | int]) -> np.ndarray:
        """Stored vector for one key (d,), or (n, d) for a sequence of keys."""
        if isinstance(keys, (str, numbers.Integral)):
            return self.reconstruct(int(self._meta.ids_for_keys(as_keys([keys]))[0]))
        return self.reconstruct(self._meta.ids_for_keys(as_keys(keys, name="keys")))

    def iter_vectors(self, chunk_size: int | None = None):
        """Yield (ids int64 (c,), vectors float32 (c, d)) over all items in ascending id order."""
        if self._faiss is None:
            return iter(())
        size = check_positive_int(chunk_size, "chunk_size") if chunk_size is not None else self._chunk_size
        return _kinds.iter_vectors(self._faiss, self.kind, size, exclude=self._removed)

    # -- persistence -----------------------------------------------------------------------------

    def save(self, directory: str | Path, store_vectors: bool | None = None) -> Path:
        """Write the index to `directory` atomically (an existing index there is replaced).

        store_vectors: also write vectors.npy/ids.npy (needed for `load(untrusted=True)`);
        default True for flat/hnsw, False for ivf/ivfpq (for ivfpq they are PQ approximations).
        """
        directory = Path(directory)
        if self._faiss is None:
            raise VectorIndexError(
                f"kind {self.kind!r} is untrained and has nothing to save; "
                f"call train() and add() first"
            )
        self._check_writable("save")
        if directory.exists():
            if not directory.is_dir():
                raise VectorIndexError(f"{str(directory)!r} is a file; save() needs a directory path")
            if any(directory.iterdir()) and not _storage.is_index_directory(directory):
                raise VectorIndexError(
                    f"{str(directory)!r} is not empty and holds no saved index; "
                    f"save() replaces the whole directory, so choose a new or empty one"
                )
        if store_vectors is None:
            store_vectors = self.kind in ("flat", "hnsw")
        to_json(self._info, "info")
        self._compact()
        with atomic_directory(directory) as tmp:
            faiss.write_index(self._faiss, str(tmp / _storage.FAISS_FILE))
            self._meta.save(tmp / _storage.META_FILE)
            names = [_storage.FAISS_FILE, _storage.META_FILE]
            if store_vectors:
                self._write_vectors(tmp)
                names += [_storage.VECTORS_FILE, _storage.IDS_FILE]
            manifest = {
                "format": _storage.FORMAT,
                "format_version": _storage.FORMAT_VERSION,
                "dim": self._dim,
                "metric": self.metric,
                "kind": self.kind,
                "params": self._params.to_json(),
                "count": len(self),
                "next_id": self._next_id,
                "seed": self._seed,
                "model_fingerprint": self._fingerprint,
                "info": self._info,
                "created_at": self._created_at,
                "saved_at": _now(),
                "libraries": {"numpy": np.__version__, "faiss": faiss.__version__, "python": platform.python_version()},
                "files": {name: _storage.file_entry(tmp / name) for name in names},
            }
            _storage.write_manifest(tmp, manifest)
        logger.info("saved %r index of %d vectors to %s", self.kind, len(self), directory)
        return directory

    def _write_vectors(self, directory: Path) -> None:
        count = len(self)
        vpath, ipath = directory / _storage.VECTORS_FILE, directory / _storage.IDS_FILE
        if count == 0:
            np.save(vpath, np.empty((0, self._dim), dtype=np.float32), allow_pickle=False)
            np.save(ipath, np.empty(0, dtype=np.int64), allow_pickle=False)
            return
        vectors = np.lib.format.open_memmap(vpath, mode="w+", dtype=np.float32, shape=(count, self._dim))
        ids = np.lib.format.open_memmap(ipath, mode="w+", dtype=np.int64, shape=(count,))
        pos = 0
        for chunk_ids, chunk in self.iter_vectors():
            vectors[pos : pos + chunk_ids.size] = chunk
            ids[pos : pos + chunk_ids.size] = chunk_ids
            pos += chunk_ids.size
        if pos != count:
            raise RuntimeError(f"wrote {pos} vectors for {count} items")
        vectors.flush()
        ids.flush()
        del vectors, ids

    @classmethod
    def load(cls, directory: str | Path, untrusted: bool = False, chunk_size: int = 65536) -> "VectorIndex":
        """Load a saved index, verifying format, checksums and cross-file consistency.

        untrusted=True never parses vectors.faiss (faiss's reader is not hardened against
        crafted files): the index is rebuilt from vectors.npy/ids.npy, which must exist
        (IVF kinds are retrained from them with the recorded seed). A save by another process
        while loading is waited out: the result is the old index or the new one, never a mix.
        """
        directory = Path(directory)
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        return read_consistently(
            directory, lambda: cls._load_once(directory, untrusted, chunk_size), (VectorIndexError, OSError)
        )

    @classmethod
    def _load_once(cls, directory: Path, untrusted: bool, chunk_size: int) -> "VectorIndex":
        manifest = _storage.read_manifest(directory)
        M = _storage.MANIFEST
        if manifest["metric"] not in METRICS:
            raise VectorIndexError(f"{M} has unknown metric {manifest['metric']!r}; expected one of {METRICS}")
        try:
            params = IndexParams.from_json(manifest["params"])
        except ValueError as exc:
            raise VectorIndexError(f"{M} has invalid params ({exc}); restore the index from a good copy") from None
        if params.kind != manifest["kind"]:
            raise VectorIndexError(f"{M} says kind {manifest['kind']!r} but params say {params.kind!r}")
        seed = manifest.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise VectorIndexError(f"{M} field 'seed' is invalid ({seed!r})")
        metric = Metric(manifest["metric"])
        dim, count, next_id = manifest["dim"], manifest["count"], manifest["next_id"]
        required = [_storage.META_FILE] + (
            [_storage.VECTORS_FILE, _storage.IDS_FILE] if untrusted else [_storage.FAISS_FILE]
        )
        for name in required:
            if name not in manifest["files"]:
                hint = "re-save it with save(dir, store_vectors=True)" if untrusted else "restore the index from a good copy"
                raise VectorIndexError(f"{M} does not list {name}, which this load needs; {hint}")
        for name in manifest["files"]:
            if name != _storage.FAISS_FILE:  # vectors.faiss is hashed on the bytes faiss will read
                _storage.verify_file(directory, name, manifest)
        meta = MetadataStore.load(directory / _storage.META_FILE, _storage.META_FILE)
        rows = meta.count_rows()
        if rows != count or len(meta) != count:
            raise VectorIndexError(
                f"{_storage.META_FILE} has {rows} items but {M} says {count}; "
                f"restore the index from a good copy"
            )
        if count and int(meta.ids[-1]) >= next_id:
            raise VectorIndexError(
                f"{M} next_id={next_id} is not above the largest "
                f"id {int(meta.ids[-1])} in {_storage.META_FILE}"
            )
        index = cls(
            dim=dim,
            metric=metric,
            params=params,
            faiss_index=None,
            meta=meta,
            next_id=next_id,
            model_fingerprint=manifest["model_fingerprint"],
            info=manifest["info"],
            seed=seed,
            chunk_size=check_positive_int(chunk_size, "chunk_size"),
            created_at=manifest.get("created_at") if isinstance(manifest.get("created_at"), str) else None,
        )
        if untrusted:
            index._rebuild_from_arrays(directory)
        else:
            index._faiss = _read_faiss(directory, manifest, params, metric)
        ids = _kinds.faiss_ids(index._faiss, params.kind)
        if ids.size != count or not np.array_equal(ids, meta.ids):
            source = "vectors.npy/ids.npy" if untrusted else _storage.FAISS_FILE
            raise VectorIndexError(
                f"{source} holds {ids.size} vectors whose ids do not match the {count} items of {_storage.META_FILE}; "
                f"restore the index from a good copy"
            )
        logger.info("loaded %r index of %d vectors from %s%s", params.kind, count, directory, " (untrusted)" if untrusted else "")
        return index

    def _rebuild_from_arrays(self, directory: Path) -> None:
        """Recreate the faiss index from vectors.npy/ids.npy (already checksum-verified)."""
        count = len(self._meta)
        loaded = {}
        for name, dtype, shape in (
            (_storage.VECTORS_FILE, np.float32, (count, self._dim)),
            (_storage.IDS_FILE, np.int64, (count,)),
        ):
            try:
                arr = np.load(directory / name, mmap_mode="r" if count else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise VectorIndexError(
                    f"{name} is not a valid .npy file ({exc}); "
                    f"restore the index from a good copy"
                ) from None
            if arr.dtype != dtype or arr.shape != shape:
                raise VectorIndexError(
                    f"{name} holds {describe_array(arr)} but manifest.json implies {np.dtype(dtype).name} {shape}; "
                    f"restore the index from a good copy"
                )
            loaded[name] = arr
        vectors, ids = loaded[_storage.VECTORS_FILE], np.asarray(loaded[_storage.IDS_FILE])
        if not np.array_equal(ids, self._meta.ids):
            raise VectorIndexError(
                f"{_storage.IDS_FILE} does not match the ids in {_storage.META_FILE}; "
                f"restore the index from a good copy"
            )
        if self._params.kind in IVF_KINDS:
            if count == 0:
                raise VectorIndexError(
                    "an empty IVF index cannot be rebuilt from vectors.npy (nothing to train on); "
                    "load it with untrusted=False"
                )
            x = self._sample(vectors, count, _kinds.train_sample_size(self._params), _storage.VECTORS_FILE)
            index = _kinds.create(self._params, self._dim, self._metric.faiss_metric)
            _kinds.train(index, self._params, x, self._seed)
        else:
            index = _kinds.create(self._params, self._dim, self._metric.faiss_metric)
        for start, block in iter_row_chunks(vectors, count, self._chunk_size):
            x = to_float32(block, _storage.VECTORS_FILE, start)  # stored vectors are already normalised
            faiss_call(index, "add_with_ids", x, ids[start : start + x.shape[0]])
        self._faiss = index


def describe_array(arr: np.ndarray) -> str:
    return f"{arr.dtype} {tuple(arr.shape)}"


def _read_faiss(directory: Path, manifest: dict[str, Any], params: IndexParams, metric: Metric) -> faiss.Index:
    """Checksum the exact bytes, then let faiss parse them from memory (never from the path)."""
    name = _storage.FAISS_FILE
    data = _storage.verified_bytes(directory, name, manifest)
    on_disk = _storage.IVFDATA_FILE in manifest["files"]  # lists live in lists.ivfdata: map them below
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8), faiss.IO_FLAG_SKIP_IVF_DATA if on_disk else 0)
    except (RuntimeError, MemoryError, ValueError) as exc:
        raise VectorIndexError(
            f"{name} could not be parsed by faiss ({str(exc).splitlines()[0][:120]}); "
            f"restore the index from a good copy"
        ) from None
    problem = _kinds.structure_problem(index, params, manifest["dim"], metric.faiss_metric)
    if problem:
        raise VectorIndexError(f"{name} {problem}; restore the index from a good copy")
    if index.ntotal != manifest["count"]:
        raise VectorIndexError(
            f"{name} holds {index.ntotal} vectors but manifest.json says {manifest['count']}; "
            f"restore the index from a good copy"
        )
    if on_disk:
        from .shards import map_lists

        map_lists(index, directory / _storage.IVFDATA_FILE)
    return index
