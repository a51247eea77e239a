"""The shards of one collection searched together, without merging them first.

Shards built with `siamese index build --shard i/n --from TEMPLATE` (index.shards) share one
trained quantizer and hold disjoint id ranges (ids are positions in the whole collection). A
ShardedIndex asks every shard for its k nearest and keeps the k nearest of all, as faiss's
IndexShards does; lookups by id go to the one shard whose range holds it, lookups by key to the
shard that has it. It is read-only and offers the reading side of VectorIndex that search,
`siamese query` and `siamese serve` use. A kNN vote needs a VectorIndex: `labelled_index()` is one
holding the labelled items only, which is all a vote reads.

`open_index_or_shards(path)` opens an index folder as a VectorIndex and a folder of shard folders
(one per shard, any names) as a ShardedIndex.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import VectorIndexError
from .search_result import SearchResult
from .shards import SHARD, shard_manifests
from .storage import MANIFEST
from .vector_index import VectorIndex


class ShardedIndex:
    """Shards of one collection (VectorIndex each, in shard order) read as one index."""

    def __init__(self, shards: Sequence[VectorIndex]) -> None:
        if not shards:
            raise VectorIndexError("a sharded index needs at least one shard")
        self.shards = list(shards)
        self._first_ids = np.array([s.info[SHARD]["first_id"] for s in self.shards], dtype=np.int64)
        if np.any(np.diff(self._first_ids) < 0):
            raise VectorIndexError("shards must be given in shard order (their first ids increase)")

    @classmethod
    def load(cls, paths: Sequence[str | Path], *, untrusted: bool = False) -> ShardedIndex:
        """Check that the shard folders belong together (one template, shards 0..n-1 once each), then load them."""
        return cls([VectorIndex.load(path, untrusted=untrusted) for path, _ in shard_manifests(paths)])

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def __repr__(self) -> str:
        return f"ShardedIndex({len(self.shards)} shards, {len(self)} items, kind {self.kind!r})"

    # -- what every shard shares --------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.shards[0].dim

    @property
    def metric(self) -> str:
        return self.shards[0].metric

    @property
    def kind(self) -> str:
        return self.shards[0].kind

    @property
    def params(self) -> dict[str, Any]:
        return self.shards[0].params

    @property
    def model_fingerprint(self) -> str | None:
        return self.shards[0].model_fingerprint

    @property
    def info(self) -> dict[str, Any]:
        """The first shard's info without its shard record, with every shard's source ranges."""
        info = {k: v for k, v in self.shards[0].info.items() if k != SHARD}
        ranges = [r for s in self.shards for r in (s.info.get("sources") or [])]
        return {**info, "sources": ranges} if ranges else info

    @property
    def has_labels(self) -> bool:
        return any(s.has_labels for s in self.shards)

    @property
    def ids(self) -> np.ndarray:
        return np.concatenate([s.ids for s in self.shards])

    def check_model(self, fingerprint: str | None, dim: int | None = None, force: bool = False) -> None:
        self.shards[0].check_model(fingerprint, dim, force)

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        for shard in self.shards:
            shard.set_search_params(nprobe=nprobe, ef_search=ef_search)

    def exact_rows(self) -> None:
        return None  # no single flat table of rows

    # -- routing ----------------------------------------------------------------------------------

    def _route(self, ids: Any, *, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), owning shard per id (-1 below the first shard's range)); strict: an id
        in no shard raises."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        owner = np.searchsorted(self._first_ids, ids, side="right") - 1
        if strict and np.any(owner < 0):
            raise VectorIndexError(f"id {int(ids[owner < 0][0])} is not in any shard")
        return ids, owner

    def _per_shard(self, ids: Any, read, empty) -> np.ndarray:
        """read(shard, its ids) for every id, assembled in the order of `ids` (object array)."""
        ids, owner = self._route(ids)
        out = np.empty(len(ids), dtype=object)
        for row in range(len(ids)):
            out[row] = empty
        for s in np.unique(owner[owner >= 0]).tolist():
            rows = np.flatnonzero(owner == s)
            for row, value in zip(rows.tolist(), read(self.shards[s], ids[rows])):
                out[row] = value
        return out

    def keys_for_ids(self, ids: Any) -> np.ndarray:
        ids, _ = self._route(ids, strict=True)
        return self._per_shard(ids, lambda shard, part: shard.keys_for_ids(part), None)

    def labels_for_ids(self, ids: Any) -> np.ndarray:
        ids, _ = self._route(ids, strict=True)
        return self._per_shard(ids, lambda shard, part: shard.labels_for_ids(part), None)

    def keys_and_labels(self, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """(keys, labels) shaped like ids; None where an id is -1 or in no shard."""
        shape = np.shape(ids)
        pairs = self._per_shard(ids, lambda shard, part: zip(*shard.keys_and_labels(part)), (None, None))
        keys = np.array([p[0] for p in pairs], dtype=object).reshape(shape)
        labels = np.array([p[1] for p in pairs], dtype=object).reshape(shape)
        return keys, labels

    def ids_for_keys(self, keys: Sequence[str | int]) -> np.ndarray:
        """int64 ids (n,) for keys (n,); a key in no shard raises VectorIndexError."""
        out = np.full(len(keys), -1, dtype=np.int64)
        for i, key in enumerate(keys):
            for shard in self.shards:
                try:
                    out[i] = shard.ids_for_keys([key])[0]
                    break
                except VectorIndexError:
                    continue
            else:
                raise VectorIndexError(f"key {str(key)[:80]!r} is in none of the {len(self.shards)} shards")
        return out

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Stored vectors (n, d) of ids (n,) (a flat copy per shard; IVF-PQ vectors are approximate)."""
        ids, owner = self._route(ids, strict=True)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for s in np.unique(owner).tolist():
            rows = np.flatnonzero(owner == s)
            out[rows] = self.shards[s].reconstruct(ids[rows])
        return out

    def get(self, keys: str | int | Sequence[str | int]) -> np.ndarray:
        single = isinstance(keys, (str, int))
        vectors = self.reconstruct(self.ids_for_keys([keys] if single else list(keys)))
        return vectors[0] if single else vectors

    def labelled_items(self) -> tuple[np.ndarray, np.ndarray]:
        parts = [s.labelled_items() for s in self.shards]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def labelled_index(self) -> VectorIndex:
        """A flat VectorIndex of the labelled items only (their ids, keys, labels and vectors): what
        a kNN vote (index.KNNClassifier) reads."""
        ids, labels = self.labelled_items()
        if not len(ids):
            raise VectorIndexError("no shard holds a labelled item; index with labels to classify")
        return VectorIndex.build(self.reconstruct(ids), keys=list(self.keys_for_ids(ids)), labels=list(labels),
                                 metric=self.metric, model_fingerprint=self.model_fingerprint)

    # -- search -----------------------------------------------------------------------------------

    def search(self, queries: Any, k: int) -> SearchResult:
        """The k nearest of all shards per query, best first (each shard answers its own k nearest)."""
        hits = [shard.search(queries, k) for shard in self.shards]
        ids = np.concatenate([h.ids for h in hits], axis=1)
        distances = np.concatenate([h.distances for h in hits], axis=1)
        keys = np.concatenate([h.keys for h in hits], axis=1)
        labels = np.concatenate([h.labels for h in hits], axis=1)
        best = np.argsort(distances, axis=1, kind="stable")[:, :k]
        take = lambda a: np.take_along_axis(a, best, axis=1)  # noqa: E731
        return SearchResult(take(ids), take(keys), take(distances), take(labels))


def open_index_or_shards(path: str | Path, *, untrusted: bool = False) -> VectorIndex | ShardedIndex:
    """The index saved at `path`, or, when `path` is a folder of shard folders, those shards as one."""
    path = Path(path)
    if path.is_dir() and not (path / MANIFEST).exists():
        shards = sorted(p for p in path.iterdir() if p.is_dir() and (p / MANIFEST).is_file())
        if shards:
            return ShardedIndex.load(shards, untrusted=untrusted)
    return VectorIndex.load(path, untrusted=untrusted)
