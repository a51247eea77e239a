"""`Backend`: the faiss structure of one index kind and everything that depends on which kind it is.

`VectorIndex` holds one backend (plus the metadata store) and never looks inside the faiss object;
each kind's module (flat.py, hnsw.py, ivf.py, ivfpq.py) overrides what differs from these defaults.
Vectors handed to a backend are already prepared (float32, normalised for cosine) and ids checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import faiss
import numpy as np

from .._faiss import faiss_call
from ..errors import VectorIndexError
from ..kinds import IndexParams


class Backend:
    """One kind's faiss index (None until an IVF kind is trained) and its parameters."""

    kind: ClassVar[str]
    trainable: ClassVar[bool] = False  # IVF kinds must be trained before the first add
    stores_vectors: ClassVar[bool] = True  # save() writes vectors.npy/ids.npy unless told otherwise

    def __init__(self, params: IndexParams, dim: int, metric_type: int, faiss_index: faiss.Index | None = None) -> None:
        self.params = params
        self.dim = dim
        self.metric_type = metric_type
        self._faiss = faiss_index if faiss_index is not None or self.trainable else self.create(params)

    # -- structure ---------------------------------------------------------------------------------

    def create(self, params: IndexParams) -> faiss.Index:
        """An empty faiss index of this kind (untrained for IVF kinds)."""
        raise NotImplementedError

    @property
    def faiss_index(self) -> faiss.Index | None:
        """The faiss structure itself (None while an IVF kind is untrained): for diagnostics and
        benchmarks; searching it directly skips tombstone filtering."""
        return self._faiss

    @property
    def is_trained(self) -> bool:
        return self._faiss is not None and bool(self._faiss.is_trained)

    @property
    def stored_count(self) -> int:
        """Vectors in the faiss structure, tombstoned ones included."""
        return 0 if self._faiss is None else int(self._faiss.ntotal)

    @property
    def tombstone_count(self) -> int:
        """Removed ids still in the structure (HNSW only)."""
        return 0

    def train(self, draw: Callable[[int], np.ndarray], seed: int, expected_count: int | None) -> None:
        """Train on a sample from `draw(size)` (IVF kinds only; see ivf.py)."""
        raise NotImplementedError(f"kind {self.kind!r} needs no training")

    def reserve(self, total: int) -> None:
        """Room for `total` vectors before adding chunk by chunk (flat/hnsw; IVF lists grow per list)."""

    def check_writable(self, action: str) -> None:
        """Raise if this structure cannot change (merged IVF shards); `action` words the refusal."""

    # -- changes ---------------------------------------------------------------------------------

    def require_trained(self) -> None:
        if self._faiss is None:
            raise VectorIndexError(
                f"kind {self.kind!r} must be trained first; "
                f"call train(sample) with representative vectors"
            )

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        faiss_call(self._faiss, "add_with_ids", vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove known, unique ids; returns how many the structure dropped."""
        return int(faiss_call(self._faiss, "remove_ids", ids))

    def compact_if_sparse(self, chunk_size: int) -> None:
        """Rebuild after removals when that pays (HNSW only)."""

    def compact(self, chunk_size: int) -> None:
        """Drop removed vectors for good (HNSW only; the others remove natively)."""

    # -- search ----------------------------------------------------------------------------------

    def set_search_params(self, nprobe: int | None, ef_search: int | None) -> None:
        """Store and apply nprobe (IVF kinds) or ef_search (hnsw); the others take neither."""
        if nprobe is not None:
            raise VectorIndexError(f"nprobe applies to kinds 'ivf' and 'ivfpq', not {self.kind!r}")
        if ef_search is not None:
            raise VectorIndexError(f"ef_search applies to kind 'hnsw', not {self.kind!r}")

    def search_params(self, k: int, selector: Any = None) -> Any:
        """faiss SearchParameters for `selector` (an id filter, which must already exclude removed
        ids), or None when faiss's defaults do. Callers keep `selector` alive."""
        if selector is None:
            return None
        params = faiss.SearchParameters()
        params.sel = selector
        return params

    def search(self, queries: np.ndarray, k: int, selector: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """faiss search on prepared queries: (faiss values float32 (q, k), ids int64 (q, k))."""
        return faiss_call(self._faiss, "search", queries, k, params=self.search_params(k, selector))

    def range_search(self, queries: np.ndarray, faiss_radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """faiss range_search on prepared queries: (lims, values, ids)."""
        params = self.search_params(self.params.ef_search or 1)
        return faiss_call(self._faiss, "range_search", queries, faiss_radius, params=params)

    # -- stored vectors ----------------------------------------------------------------------------

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """float32 (n, d) stored vectors of known ids."""
        return faiss_call(self._faiss, "reconstruct_batch", ids)

    def stored_ids(self) -> np.ndarray:
        """All int64 ids in the faiss structure (tombstoned ones included), sorted."""
        raise NotImplementedError

    def iter_vectors(self, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids int64 (c,), vectors float32 (c, d)) chunks of the live items in ascending id order."""
        raise NotImplementedError

    def exact_rows(self) -> tuple[np.ndarray, np.ndarray, Any] | None:
        """(ids (n,), float32 (n, d) view of the stored rows, the faiss object owning them) when the
        structure keeps exact vectors in one contiguous block (flat only), else None."""
        return None

    # -- files -------------------------------------------------------------------------------------

    def write(self, path: Path) -> None:
        """Write the faiss file (HNSW: `compact` first, so a saved graph holds no removed ids)."""
        faiss.write_index(self._faiss, str(path))

    @staticmethod
    def largest_array(file_bytes: int, params: IndexParams, dim: int) -> int:
        """Bytes of the largest array faiss may allocate while parsing a file of this kind: the
        file itself (see `bounded_faiss_reads`)."""
        return file_bytes

    def structure_problem(self) -> str | None:
        """Why a deserialised faiss index does not match the manifest, or None if it does."""
        index = self._faiss
        if index.d != self.dim:
            return f"has dimension {index.d} but manifest.json says {self.dim}"
        if index.metric_type != self.metric_type:
            return f"has faiss metric {index.metric_type}, expected {self.metric_type}"
        return self.kind_structure_problem(index)

    def kind_structure_problem(self, index: faiss.Index) -> str | None:
        raise NotImplementedError
