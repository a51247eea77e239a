"""kind "ivf": IndexIVFFlat with faiss's native int64 ids and a hash-table direct map.

Not an IndexIDMap: IDMap's remove_ids assumes the wrapped index renumbers its rows like IndexFlat
does, which IVF does not, so ids would silently shift after a removal. IVF kinds are trained (on a
seeded sample) before the first add; nprobe trades speed for recall. A merged shard index maps its
lists read-only from lists.ivfdata (index.shards) and cannot change.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import faiss
import numpy as np

from .. import storage as _storage
from .._checks import check_positive_int
from .._faiss import faiss_call
from ..errors import VectorIndexError
from ..kinds import MIN_POINTS_PER_CENTROID, IndexParams, default_nlist, default_nprobe, train_sample_size
from .base import Backend

logger = logging.getLogger(__name__)


class IvfBackend(Backend):
    kind = "ivf"
    trainable = True
    stores_vectors = False
    faiss_type: type = faiss.IndexIVFFlat

    def factory_spec(self, params: IndexParams) -> str:
        return f"IVF{params.nlist},Flat"

    def create(self, params: IndexParams) -> faiss.Index:
        if params.nlist is None:
            raise RuntimeError("IVF index needs nlist")
        index = faiss.index_factory(self.dim, self.factory_spec(params), self.metric_type)  # the concrete IVF class
        index.nprobe = params.nprobe
        index.cp.min_points_per_centroid = 1  # we size nlist ourselves; silence faiss's stderr warning
        self.configure(index)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return index

    def configure(self, index: faiss.Index) -> None:
        """Kind-specific settings of a fresh index (IVF-PQ's code-book training)."""

    # -- training --------------------------------------------------------------------------------------

    def train(self, draw: Callable[[int], np.ndarray], seed: int, expected_count: int | None) -> None:
        """Create and train the structure on `draw(size)` (prepared float32 (s, d)); nlist, if not
        set, follows `expected_count`. Parameters change only once training succeeded."""
        params = self.params
        if params.nlist is None and expected_count is not None:
            nlist = default_nlist(expected_count)
            params = replace(params, nlist=nlist, nprobe=default_nprobe(nlist))
        sample = draw(train_sample_size(params))
        index = self.create(params)
        s = sample.shape[0]
        if s < (params.nlist or 1):
            raise VectorIndexError(
                f"the training sample has {s} vectors for {params.nlist} inverted lists; train on at least "
                f"{params.nlist} vectors (ideally {MIN_POINTS_PER_CENTROID * params.nlist}) or ask for fewer lists "
                f"(--nlist, nlist=)"
            )
        self.check_sample_size(s)
        if s < MIN_POINTS_PER_CENTROID * params.nlist:
            logger.warning("training %d lists on only %d vectors; recall may suffer (want >= %d)", params.nlist, s, MIN_POINTS_PER_CENTROID * params.nlist)
        self.seed(index, seed)
        faiss_call(index, "train", sample)
        self.params, self._faiss = params, index

    def check_sample_size(self, s: int) -> None:
        """Refuse samples too small for this kind beyond the one-per-list rule."""

    def seed(self, index: faiss.Index, seed: int) -> None:
        index.cp.seed = seed

    # -- changes and search ----------------------------------------------------------------------------

    def check_writable(self, action: str) -> None:
        if self._faiss is not None and isinstance(
            faiss.downcast_InvertedLists(faiss.extract_index_ivf(self._faiss).invlists), faiss.OnDiskInvertedLists
        ):
            raise VectorIndexError(
                f"cannot {action} a merged shard index: its inverted lists are memory-mapped read-only from "
                f"{_storage.IVFDATA_FILE}; build another shard and merge again (copy the directory to move it)"
            )

    def set_search_params(self, nprobe: int | None, ef_search: int | None) -> None:
        if nprobe is not None:
            nprobe = check_positive_int(nprobe, "nprobe")
            if self.params.nlist is not None:
                nprobe = min(nprobe, self.params.nlist)
            self.params = replace(self.params, nprobe=nprobe)
            if self._faiss is not None:
                self._faiss.nprobe = nprobe
        super().set_search_params(None, ef_search)

    def search_params(self, k: int, selector: Any = None) -> Any:
        if selector is None:
            return None
        params = faiss.SearchParametersIVF()
        params.nprobe = self._faiss.nprobe
        params.sel = selector
        return params

    # -- stored vectors --------------------------------------------------------------------------------

    def stored_ids(self) -> np.ndarray:
        ivf = faiss.extract_index_ivf(self._faiss)
        invlists = ivf.invlists
        ids, start = np.empty(ivf.ntotal, dtype=np.int64), 0  # one array, filled list by list, sorted in place
        for lst in range(ivf.nlist):
            size = invlists.list_size(lst)
            if size:
                if start + size > ids.size:
                    raise VectorIndexError(f"the inverted lists hold more than the {ids.size} vectors the index "
                                           "counts; restore the index from a good copy")
                ids[start:start + size] = faiss.rev_swig_ptr(invlists.get_ids(lst), size)
                start += size
        ids = ids[:start]
        ids.sort()
        return ids

    def iter_vectors(self, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Exact vectors for ivf, PQ reconstructions (approximate) for ivfpq."""
        ids = self.stored_ids()
        for start in range(0, ids.size, chunk_size):
            chunk = ids[start : start + chunk_size]
            yield chunk, faiss_call(self._faiss, "reconstruct_batch", chunk)

    # -- files -----------------------------------------------------------------------------------------

    def kind_structure_problem(self, index: faiss.Index) -> str | None:
        if not isinstance(index, self.faiss_type):
            return f"is a {type(index).__name__}, expected {self.faiss_type.__name__} for kind {self.kind!r}"
        if self.params.nlist is not None and index.nlist != self.params.nlist:
            return f"has nlist={index.nlist} but manifest.json says {self.params.nlist}"
        return None


def map_lists(index: faiss.Index, path: Path) -> None:
    """Point a merged index read with IO_FLAG_SKIP_IVF_DATA at its lists.ivfdata and map it read-only."""
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    if not isinstance(lists, faiss.OnDiskInvertedLists):
        raise VectorIndexError(f"manifest.json lists {path.name} but {_storage.FAISS_FILE} keeps its lists in "
                               "memory; restore the index from a good copy")
    if lists.totsize > path.stat().st_size:
        raise VectorIndexError(f"{path.name} has {path.stat().st_size} bytes but {_storage.FAISS_FILE} expects "
                               f"{lists.totsize}; restore the index from a good copy")
    lists.filename = str(path)
    lists.read_only = True
    lists.do_mmap()
