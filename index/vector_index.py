"""`VectorIndex`: a faiss index plus item metadata, with stable int64 ids and safe persistence.

The class owns the state: a kind's backend (index/backends/, the faiss structure and everything
kind-specific), the metadata store and the counters; mutation.py, persistence.py and
search_result.py hold the steps it delegates, _arguments.py its argument checks.
"""

from __future__ import annotations

import logging
import numbers
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from . import kinds as _kinds
from . import mutation as _mutation
from . import persistence as _persistence
from ._arguments import (check_fingerprint, check_info, check_items, check_k, check_optional_int, check_radius,
                         check_seed, check_model_match)
from ._checks import as_ids, as_keys, check_choice, check_matrix, check_positive_int, check_queries
from .backends import Backend, make_backend
from .errors import VectorIndexError
from .metadata import MetadataStore
from .metadata_view import SavedMetadata
from .metrics import Metric, get_metric
from .persistence import describe_array
from .search_result import SearchResult, knn_result, range_results

__all__ = ["VectorIndex", "SearchResult", "describe_array"]

logger = logging.getLogger(__name__)


class VectorIndex:
    """Nearest-neighbour index over float vectors, with string keys, optional labels and attrs.

    Distances are reported so that smaller is always closer (results sort ascending):

    - ``metric="l2"``: Euclidean distance (the square root of faiss's squared L2).
    - ``metric="cosine"``: ``1 - cosine similarity`` in [0, 2]; vectors and queries are
      L2-normalised (zero vectors are refused), and stored vectors are the normalised ones.
    - ``metric="ip"``: ``-inner product``.

    Kinds: "flat" (exact), "hnsw", "ivf", "ivfpq" (approximate) and "auto" (resolved at build
    time from the vector count and `memory_budget_bytes`); index.kinds tabulates them,
    index/backends/ holds each one's faiss structure. Ids are int64, assigned 0, 1, 2, ... by `add`
    and never reused, across remove/save/load. Removed HNSW ids are tombstoned until the graph is
    rebuilt (once a quarter of it is tombstoned, and on every save).

    `info` is a free JSON-serialisable dict saved in manifest.json (a model summary, a calibrated
    threshold); `model_fingerprint` identifies the embedding model, `check_model` compares with it.
    Create with `build`, `empty` (then `train` for IVF kinds and `add` chunk by chunk) or `load`.
    """

    def __init__(self, *, dim: int, metric: Metric, backend: Backend, meta: MetadataStore | SavedMetadata, next_id: int,
                 model_fingerprint: str | None, info: dict[str, Any], seed: int, chunk_size: int,
                 created_at: str | None = None, origin: tuple[str, str | None] | None = None) -> None:
        """The parts of an index; make one with `empty`, `build` or `load`."""
        self._dim = dim
        self._metric = metric
        self._backend = backend
        self._meta = meta
        self._counters = _mutation.Counters(next_id)
        self._fingerprint = model_fingerprint
        self._info = info
        self._seed = seed
        self._chunk_size = chunk_size
        self._created_at = created_at or _persistence.now()
        self._origin = origin  # (directory, manifest sha256) it was loaded from or last saved to

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def empty(cls, dim: int, *, metric: str = "l2", kind: str = "flat", expected_count: int | None = None,
              memory_budget_bytes: int | None = None, nlist: int | None = None, pq_m: int | None = None,
              model_fingerprint: str | None = None, info: dict[str, Any] | None = None, seed: int = 0,
              chunk_size: int = 65536) -> "VectorIndex":
        """An index with no vectors. IVF kinds need `train(sample)` before `add`; kind="auto"
        needs `expected_count`. nlist/pq_m override the IVF list count / PQ code bytes."""
        dim = check_positive_int(dim, "dim")
        metric_obj = get_metric(metric)
        check_choice(kind, "kind", _kinds.REQUESTABLE_KINDS)
        expected_count = check_optional_int(expected_count, "expected_count")
        memory_budget_bytes = check_optional_int(memory_budget_bytes, "memory_budget_bytes")
        nlist = check_optional_int(nlist, "nlist")
        pq_m = check_optional_int(pq_m, "pq_m")
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        seed = check_seed(seed)
        params = _kinds.resolve_params(kind, dim, expected_count, memory_budget_bytes, nlist, pq_m)
        return cls(dim=dim, metric=metric_obj, backend=make_backend(params, dim, metric_obj.faiss_metric),
                   meta=MetadataStore.in_memory(), next_id=0, model_fingerprint=check_fingerprint(model_fingerprint),
                   info=check_info(info), seed=seed, chunk_size=chunk_size)

    @classmethod
    def build(cls, vectors: Any, keys: Sequence[str | int] | None = None,
              labels: Sequence[str | int | None] | None = None, attrs: Sequence[dict[str, Any] | None] | None = None,
              *, metric: str = "l2", kind: str = "flat", memory_budget_bytes: int | None = None,
              model_fingerprint: str | None = None, info: dict[str, Any] | None = None, seed: int = 0,
              chunk_size: int = 65536, nlist: int | None = None, pq_m: int | None = None) -> "VectorIndex":
        """Index `vectors` (n, d) in one call; ids are 0..n-1, keys default to str(id). `vectors` may
        be any array-like, even an np.memmap larger than RAM: it is read `chunk_size` rows at a time.
        IVF kinds are trained on a random sample (at most 64 * nlist rows, drawn with `seed`)."""
        arr, n, d = check_matrix(vectors, "vectors")
        key_list, label_list, attr_list = check_items(keys, labels, attrs, n)
        index = cls.empty(d, metric=metric, kind=kind, expected_count=n, memory_budget_bytes=memory_budget_bytes,
                          nlist=nlist, pq_m=pq_m, model_fingerprint=model_fingerprint, info=info, seed=seed,
                          chunk_size=chunk_size)
        cls._fill(index, arr, n, key_list, label_list, attr_list)  # (cls: _fill is this class's own method)
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
        return self._backend.kind

    @property
    def params(self) -> dict[str, Any]:
        """Resolved faiss parameters (kind, nlist, nprobe, pq_m, hnsw_m, ef_search...)."""
        return self._backend.params.to_json()

    @property
    def model_fingerprint(self) -> str | None:
        return self._fingerprint

    @property
    def info(self) -> dict[str, Any]:
        """Free-form JSON-serialisable dict saved in manifest.json (mutable in place)."""
        return self._info

    @info.setter
    def info(self, value: dict[str, Any]) -> None:
        self._info = check_info(value)

    @property
    def has_labels(self) -> bool:
        return self._meta.has_labels

    @property
    def is_trained(self) -> bool:
        return self._backend.is_trained

    @property
    def ids(self) -> np.ndarray:
        """Sorted int64 ids of all items, shape (len(self),)."""
        return self._meta.ids.copy()

    @property
    def next_id(self) -> int:
        """Id the next added vector will get."""
        return self._counters.next_id

    def reserve_ids(self, next_id: int) -> None:
        """Number the next added vector `next_id` (never lower than now): a shard of a larger
        collection gives its items their position in the whole (see index.shards)."""
        next_id = check_positive_int(next_id, "next_id") if next_id else 0
        if next_id < self._counters.next_id:
            raise VectorIndexError(f"next_id={next_id} is below the ids already assigned (next is {self._counters.next_id})")
        self._counters.next_id = next_id

    @property
    def version(self) -> int:
        """Bumped by every add and remove: a cache of derived data (KNNClassifier) keys on it."""
        return self._counters.version

    # -- internals made visible (the kNN classifier, diagnostics, tests, benchmarks) ---------------

    @property
    def faiss_index(self) -> faiss.Index | None:
        """The faiss structure (None while an IVF kind is untrained); searching it skips tombstones."""
        return self._backend.faiss_index

    @property
    def stored_count(self) -> int:
        """Vectors held by the faiss structure: len(self) plus `tombstone_count`."""
        return self._backend.stored_count

    @property
    def tombstone_count(self) -> int:
        """Removed HNSW vectors still in the graph until it is rebuilt (0 for the other kinds)."""
        return self._backend.tombstone_count

    def count_metadata_rows(self) -> int:
        """Rows in the metadata database, counted by SQLite (a cross-check of len(self))."""
        return self._meta.count_rows()

    def labelled_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (m,), labels object (m,)) of the items that have a label, sorted by id."""
        return self._meta.labelled()

    def keys_and_labels(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keys, labels) object arrays shaped like search-result ids; None where an id is -1."""
        return self._meta.lookup(np.asarray(ids, dtype=np.int64))

    def exact_rows(self) -> tuple[np.ndarray, np.ndarray, Any] | None:
        """Flat: (ids (n,), float32 (n, d) view of the stored rows in id order, the faiss object that
        owns them and must outlive the view); None for the other kinds."""
        return self._backend.exact_rows()

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Trade speed for recall: IVF lists probed per query (ivf/ivfpq) or HNSW candidate list
        size (hnsw). Saved with the index."""
        self._backend.set_search_params(nprobe, ef_search)

    def check_model(self, fingerprint: str | None, dim: int | None = None, force: bool = False) -> None:
        """Refuse queries embedded by a different model than the one that built the index.

        Raises VectorIndexError when `fingerprint` (or `dim`, if given) differs from the recorded
        value; with force=True logs a warning instead.
        """
        check_model_match(self._fingerprint, self._dim, fingerprint, dim, force)

    # -- training / adding / removing (index.mutation) ---------------------------------------

    def train(self, sample: Any) -> None:
        """Train an IVF kind on a representative sample (s, d) before adding (a no-op for flat
        and hnsw). At most 64 * nlist rows are used, drawn with the index seed."""
        if not self._backend.trainable:
            logger.debug("train() is a no-op for kind %r", self.kind)
            return
        if self._backend.faiss_index is not None:
            raise VectorIndexError("this index is already trained; build a new index to train on different data")
        arr, n, _ = check_matrix(sample, "sample", self._dim)
        _mutation.train(self._backend, self._metric, arr, n, self._seed, self._chunk_size)

    def add(self, vectors: Any, keys: Sequence[str | int] | None = None, labels: Sequence[str | int | None] | None = None,
            attrs: Sequence[dict[str, Any] | None] | None = None) -> np.ndarray:
        """Add vectors (n, d); returns their new int64 ids, shape (n,).

        Keys default to str(id). Everything (shape, values, keys, labels, attrs, duplicates) is
        validated before anything is added, so a failed call leaves the index unchanged.
        """
        arr, n, _ = check_matrix(vectors, "vectors", self._dim)
        key_list, label_list, attr_list = check_items(keys, labels, attrs, n)
        return _mutation.add(self._backend, self._working_metadata(), self._counters, self._metric, arr, n, key_list,
                             label_list, attr_list, chunk_size=self._chunk_size, validate_first=True)

    def _working_metadata(self) -> MetadataStore:
        """The store a change goes to (a loaded index's first change copies its rows, index.metadata_view)."""
        self._meta = self._meta.working_copy()
        return self._meta

    def _fill(self, arr: Any, n: int, keys: list[str] | None, labels: list[str | None] | None,
              attrs: list[str | None] | None) -> None:
        """`build`'s work: keys checked before any training, IVF kinds trained, rows added (read once)."""
        if keys is not None:
            self._meta.check_new_keys(keys)
        if self._backend.trainable:
            _mutation.train(self._backend, self._metric, arr, n, self._seed, self._chunk_size)
        _mutation.add(self._backend, self._meta, self._counters, self._metric, arr, n, keys, labels, attrs,
                      chunk_size=self._chunk_size, validate_first=False)

    def reserve(self, total: int) -> None:
        """Make room for `total` items in all before adding them chunk by chunk, so the vector
        storage is allocated once at its final size instead of grown (growing copies it, briefly
        holding both buffers). Optional; flat and hnsw only (IVF lists grow per list)."""
        self._backend.reserve(check_positive_int(total, "total"))

    def remove(self, ids: Any = None, keys: Any = None) -> int:
        """Remove items by `ids` or by `keys` (exactly one); returns how many were removed.
        Unknown ids/keys raise VectorIndexError and nothing is removed."""
        return _mutation.remove(self._backend, self._working_metadata(), self._counters, ids=ids, keys=keys,
                                chunk_size=self._chunk_size)

    # -- search (the backend, index.search_result) ----------------------------------------------

    def _require_items(self) -> None:
        if len(self) == 0:
            raise VectorIndexError("the index is empty; add vectors before searching")

    def prepare_queries(self, queries: Any) -> np.ndarray:
        """Queries as the index sees them: float32 (n_queries, dim), normalised for cosine."""
        return self._metric.prepare(check_queries(queries, self._dim), "queries")

    def raw_search(self, prepared: np.ndarray, k: int, selector: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """faiss search on `prepare_queries` output: (faiss values float32 (q, k), ids int64 (q, k), -1 =
        no hit). `selector`, a faiss IDSelector the caller keeps alive, must exclude removed ids."""
        return self._backend.search(prepared, k, selector)

    def search(self, queries: Any, k: int) -> SearchResult:
        """k nearest items of each query (n_queries, d) or (d,); arrays of shape (n_queries, k).

        Requires 1 <= k <= len(self). Approximate kinds may find fewer than k hits for some
        queries; those slots hold id -1, key/label None and distance inf.
        """
        self._require_items()
        q = self.prepare_queries(queries)
        k = check_k(k, len(self), "the index")
        return knn_result(self._metric, self._meta, *self._backend.search(q, k))

    def range_search(self, queries: Any, radius: float) -> list[SearchResult]:
        """All items strictly closer than `radius` (reported units) to each query.

        Returns one SearchResult per query with 1-D arrays sorted by ascending distance. Exact
        for flat; for hnsw/ivf/ivfpq faiss explores only part of the index, so hits can be missed.
        """
        self._require_items()
        check_radius(radius)
        q = self.prepare_queries(queries)
        lims, raw, ids = self._backend.range_search(q, self._metric.to_faiss_radius(float(radius)))
        return range_results(self._metric, self._meta, lims, raw, ids, radius)

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
        vectors = np.asarray(self._backend.reconstruct(arr), dtype=np.float32).reshape(arr.size, self._dim)
        return vectors[0] if single else vectors

    def get(self, keys: str | int | Sequence[str | int]) -> np.ndarray:
        """Stored vector for one key (d,), or (n, d) for a sequence of keys."""
        if isinstance(keys, (str, numbers.Integral)):
            return self.reconstruct(int(self._meta.ids_for_keys(as_keys([keys]))[0]))
        return self.reconstruct(self._meta.ids_for_keys(as_keys(keys, name="keys")))

    def iter_vectors(self, chunk_size: int | None = None):
        """Yield (ids int64 (c,), vectors float32 (c, d)) over all items in ascending id order."""
        if self._backend.faiss_index is None:
            return iter(())
        size = check_positive_int(chunk_size, "chunk_size") if chunk_size is not None else self._chunk_size
        return self._backend.iter_vectors(size)

    # -- persistence (index.persistence) ---------------------------------------------------------

    def save(self, directory: str | Path, store_vectors: bool | None = None, *, overwrite: bool = False) -> Path:
        """Write the index to `directory` atomically (an existing index there is replaced).

        Any other existing non-empty folder is refused unless `overwrite`. Saving over the
        directory this index was loaded from is refused when another writer saved there since (its
        change would be lost); hold `index.locking.write_lock(directory)` around load, change and
        save to make that impossible.

        store_vectors: also write vectors.npy/ids.npy (needed for `load(untrusted=True)`);
        default True for flat/hnsw, False for ivf/ivfpq (for ivfpq they are PQ approximations).
        """
        directory = Path(directory)
        fields = {"dim": self._dim, "metric": self.metric, "kind": self.kind, "params": self.params, "count": len(self),
                  "next_id": self.next_id, "seed": self._seed, "model_fingerprint": self._fingerprint,
                  "info": self._info, "created_at": self._created_at}  # manifest.json entries, in this order
        self._origin = _persistence.save(directory, self._backend, self._meta, fields, chunk_size=self._chunk_size,
                                         store_vectors=store_vectors, overwrite=overwrite, loaded_from=self._origin)
        return directory

    @classmethod
    def load(cls, directory: str | Path, untrusted: bool = False, chunk_size: int = 65536, *,
             metadata_in_ram: bool = False, full_check: bool = False) -> "VectorIndex":
        """Load a saved index, verifying format, checksums and cross-file consistency (index.persistence).

        Keys, labels and attrs stay in meta.sqlite, read per hit, until the first add or remove;
        `metadata_in_ram=True` copies them at once. Files checked whole before are trusted while
        unchanged (index.verification); `full_check=True` checks all again (siamese index check).
        untrusted=True never parses vectors.faiss nor trusts a record: the index is rebuilt from
        vectors.npy/ids.npy, which must exist. A concurrent save is waited out: the result is the
        old or the new index.
        """
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        return cls(**_persistence.load(Path(directory), untrusted, chunk_size, metadata_in_ram, full_check))
