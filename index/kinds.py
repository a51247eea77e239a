"""Index kinds: how each is built in faiss, its default parameters and memory footprint.

=======  ===========================================  =============================================
kind     faiss structure                              ids / remove
=======  ===========================================  =============================================
flat     IndexIDMap(IndexFlat)                        exact; remove_ids natively
hnsw     IndexIDMap(IndexHNSWFlat, M=32)              efSearch=128; faiss cannot delete from an
                                                      HNSW graph, so removed ids are tombstoned
                                                      (filtered out with an IDSelector at search)
                                                      and the graph is rebuilt from the stored
                                                      vectors when tombstones pass 25 % or on save
ivf      IndexIVFFlat (native ids)                    nlist ~ 4 sqrt(n), nprobe = nlist/256 in
                                                      [16, 256]; remove_ids natively
ivfpq    IndexIVFPQ (native ids, 8-bit codes)         as ivf; m sub-quantizers, m | d
=======  ===========================================  =============================================

IVF kinds keep faiss's native int64 ids (plus a hash-table direct map for reconstruct/remove)
rather than an IndexIDMap: IDMap's remove_ids assumes the wrapped index renumbers its rows like
IndexFlat does, which IVF does not, so ids would silently shift after a removal.

flat/hnsw use IndexIDMap, not IndexIDMap2: ids are handed out in increasing order, so the id map
stays sorted and a binary search finds an id's row; IDMap2's reverse hash map would cost ~48 more
bytes per item (a fifth of a 64-d float32 vector). Indexes saved with IDMap2 still load.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator

import faiss
import numpy as np

from ._faiss import faiss_call
from .errors import VectorIndexError

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("flat", "hnsw", "ivf", "ivfpq")
REQUESTABLE_KINDS: tuple[str, ...] = KINDS + ("auto",)
IVF_KINDS: tuple[str, ...] = ("ivf", "ivfpq")

HNSW_M = 32
HNSW_EF_SEARCH = 128
HNSW_EF_CONSTRUCTION = 40
AUTO_FLAT_MAX = 50_000  # below this exact search is fast enough
AUTO_HNSW_MAX = 1_000_000  # from here on IVF: on 1M x 64 clustered vectors IVF (nprobe 16) had recall@10 1.00 at
# ~2x the QPS of HNSW32 (efSearch 128, recall 0.93), and it stores no graph (~280 bytes/vector)
MIN_POINTS_PER_CENTROID = 39  # faiss's own recommendation for k-means
IVF_SAMPLE_PER_LIST = 64  # IVF is trained on at most 64 * nlist vectors
PQ_BITS = 8
PQ_MIN_TRAIN = 1 << PQ_BITS  # one point per code-book entry at the very least
PQ_TRAIN_POINTS_PER_CENTROID = 32  # PQ code-book k-means subsample (speed; recall barely moves)
PQ_TRAIN_ITER = 15


def largest_honest_array(file_bytes: int, params: "IndexParams", dim: int) -> int:
    """Bytes of the largest array faiss may allocate while parsing a file of `file_bytes` of this
    structure: the file itself, or for IVF-PQ the residual table it precomputes (nlist x pq_m x 256
    floats), admitted only when the file really holds the nlist centroids that table is sized by."""
    if params.kind == "ivfpq" and params.nlist and params.pq_m and params.nlist * dim * 4 <= file_bytes:
        return max(file_bytes, params.nlist * params.pq_m * 256 * 4)
    return file_bytes


@dataclass(frozen=True)
class IndexParams:
    """Resolved structure of an index (recorded in manifest.json as `params`)."""

    kind: str
    hnsw_m: int | None = None
    ef_search: int | None = None
    ef_construction: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "IndexParams":
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise ValueError(f"bad params {data!r}")
        fields = {}
        for name in ("hnsw_m", "ef_search", "ef_construction", "nlist", "nprobe", "pq_m"):
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"bad params.{name} {value!r}")
            fields[name] = value
        return cls(kind=data["kind"], **fields)


def default_nlist(n: int) -> int:
    """~4 sqrt(n) lists, but never fewer than 39 training points per list."""
    return int(max(1, min(round(4 * math.sqrt(max(n, 1))), max(n, 1) // MIN_POINTS_PER_CENTROID, 65536)))


def default_nprobe(nlist: int) -> int:
    """Lists visited per query: nlist/256 within [16, 256]; on 1M x 64 clustered vectors (nlist 4000)
    16 lists gave recall@10 1.00 at ~27x the QPS of flat search, 250 lists only ~2x."""
    return int(min(nlist, max(16, min(256, nlist // 256))))


def divisors(d: int) -> list[int]:
    return [m for m in range(1, d + 1) if d % m == 0]


def default_pq_m(d: int) -> int:
    """Sub-quantizers (code bytes per vector): 1 dimension per byte up to d=64, then ~2."""
    cap = max(d // 2, min(d, 64))
    return max(m for m in divisors(d) if m <= cap)


def estimate_bytes(kind: str, n: int, d: int, pq_m: int | None = None, nlist: int | None = None) -> int:
    """Approximate resident memory of an index of n vectors (vectors, ids, id maps, graph)."""
    id_map = 8  # IDMap: the id vector (rows are found by binary search, no hash map)
    if kind == "flat":
        return n * (4 * d + id_map)
    if kind == "hnsw":
        graph = int(HNSW_M * 2 * 4 * 1.1) + 16  # level-0 links (2M) + upper levels + level table
        return n * (4 * d + id_map + graph)
    nlist = nlist or default_nlist(n)
    direct_map = 48  # hash-table direct map entry
    if kind == "ivf":
        return n * (4 * d + 8 + direct_map) + nlist * d * 4
    m = pq_m or default_pq_m(d)
    return n * (m + 8 + direct_map) + nlist * d * 4 + (1 << PQ_BITS) * d * 4


def resolve_params(
    kind: str,
    d: int,
    n: int | None,
    memory_budget_bytes: int | None = None,
    nlist: int | None = None,
    pq_m: int | None = None,
) -> IndexParams:
    """Resolve `kind` ("auto" included) to concrete parameters for n expected vectors.

    auto: flat below AUTO_FLAT_MAX vectors; HNSW below AUTO_HNSW_MAX; IVF-Flat from there; at each
    step a kind that does not fit `memory_budget_bytes` falls through to the next cheaper one,
    down to IVF-PQ with as many code bytes as the budget allows.
    """
    if kind == "auto":
        if n is None:
            raise VectorIndexError("kind='auto' needs the expected number of vectors; pass expected_count=")
        kind = _auto_kind(n, d, memory_budget_bytes, pq_m)
        if kind == "ivfpq" and pq_m is None:
            pq_m = _budget_pq_m(n, d, memory_budget_bytes)
        logger.info("kind='auto' resolved to %r for %d vectors of dim %d (budget %s bytes)", kind, n, d, memory_budget_bytes)
    elif memory_budget_bytes is not None and n is not None:
        if kind == "ivfpq" and pq_m is None:
            pq_m = _budget_pq_m(n, d, memory_budget_bytes)
            if pq_m is None:
                raise VectorIndexError(
                    f"memory_budget_bytes={memory_budget_bytes} is too small for {n} vectors of dim {d} even with 1-byte PQ codes (about {estimate_bytes('ivfpq', n, d, 1)} bytes); "
                    f"raise the budget"
                )
        elif estimate_bytes(kind, n, d, pq_m) > memory_budget_bytes:
            logger.warning(
                "kind=%r for %d vectors of dim %d needs about %d bytes, over memory_budget_bytes=%d; "
                "use kind='auto' to respect the budget",
                kind, n, d, estimate_bytes(kind, n, d, pq_m), memory_budget_bytes,
            )
    if kind == "flat":
        return IndexParams("flat")
    if kind == "hnsw":
        return IndexParams("hnsw", hnsw_m=HNSW_M, ef_search=HNSW_EF_SEARCH, ef_construction=HNSW_EF_CONSTRUCTION)
    if nlist is not None:
        nlist = int(nlist)
    elif n is not None:
        nlist = default_nlist(n)
    params = IndexParams(kind, nlist=nlist, nprobe=default_nprobe(nlist) if nlist else None)
    if kind == "ivfpq":
        if pq_m is None:
            pq_m = default_pq_m(d)
        if d % pq_m != 0:
            raise VectorIndexError(f"pq_m={pq_m} does not divide the dimension {d}; use one of {divisors(d)}")
        params = replace(params, pq_m=int(pq_m))
    return params


def _auto_kind(n: int, d: int, budget: int | None, pq_m: int | None) -> str:
    order = ["flat", "ivf", "ivfpq"] if n < AUTO_FLAT_MAX else (
        ["hnsw", "ivf", "ivfpq"] if n < AUTO_HNSW_MAX else ["ivf", "ivfpq"]
    )
    if n < PQ_MIN_TRAIN * 4 and "ivfpq" in order:
        order.remove("ivfpq")  # too few vectors to train 256-entry code books
    for kind in order:
        if budget is None or estimate_bytes(kind, n, d, pq_m) <= budget:
            return kind
    if "ivfpq" in order and _budget_pq_m(n, d, budget) is not None:
        return "ivfpq"
    cheapest = min(estimate_bytes(k, n, d, 1 if k == "ivfpq" else None) for k in order)
    raise VectorIndexError(
        f"memory_budget_bytes={budget} is too small for {n} vectors of dim {d} (the smallest kind needs about {cheapest} bytes); "
        f"raise the budget or index fewer vectors"
    )


def _budget_pq_m(n: int, d: int, budget: int | None) -> int | None:
    """Largest sub-quantizer count (<= default) whose codes fit the budget."""
    fitting = [m for m in divisors(d) if m <= default_pq_m(d) and (budget is None or estimate_bytes("ivfpq", n, d, m) <= budget)]
    return max(fitting) if fitting else None


def create(params: IndexParams, d: int, metric_type: int) -> faiss.Index:
    """An empty faiss index (IVF kinds untrained; they need params.nlist)."""
    if params.kind == "flat":
        return faiss.index_factory(d, "IDMap,Flat", metric_type)
    if params.kind == "hnsw":
        index = faiss.index_factory(d, f"IDMap,HNSW{params.hnsw_m},Flat", metric_type)
        hnsw = faiss.downcast_index(index.index)
        hnsw.hnsw.efSearch = params.ef_search
        hnsw.hnsw.efConstruction = params.ef_construction
        return index
    if params.nlist is None:
        raise RuntimeError("IVF index needs nlist")
    spec = f"IVF{params.nlist},Flat" if params.kind == "ivf" else f"IVF{params.nlist},PQ{params.pq_m}x{PQ_BITS}"
    index = faiss.index_factory(d, spec, metric_type)  # already the concrete IVF class
    index.nprobe = params.nprobe
    index.cp.min_points_per_centroid = 1  # we size nlist ourselves; silence faiss's stderr warning
    if params.kind == "ivfpq":
        index.do_polysemous_training = False  # index_factory turns it on; minutes of annealing for Hamming pre-filtering we never use
        index.pq.cp.max_points_per_centroid = PQ_TRAIN_POINTS_PER_CENTROID
        index.pq.cp.min_points_per_centroid = 1
        index.pq.cp.niter = PQ_TRAIN_ITER
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def train_sample_size(params: IndexParams) -> int:
    """How many vectors IVF training uses at most (64 per list; PQ code books want more)."""
    size = IVF_SAMPLE_PER_LIST * (params.nlist or 1)
    if params.kind == "ivfpq":
        size = max(size, PQ_TRAIN_POINTS_PER_CENTROID * (1 << PQ_BITS))
    return size


def train(index: faiss.Index, params: IndexParams, sample: np.ndarray, seed: int) -> None:
    """Train an IVF index on float32 (s, d) already prepared for the metric."""
    s = sample.shape[0]
    if s < (params.nlist or 1):
        raise VectorIndexError(
            f"the training sample has {s} vectors but nlist={params.nlist}; "
            f"pass at least {params.nlist} vectors (ideally {MIN_POINTS_PER_CENTROID * params.nlist})"
        )
    if params.kind == "ivfpq" and s < PQ_MIN_TRAIN:
        raise VectorIndexError(
            f"kind='ivfpq' needs at least {PQ_MIN_TRAIN} training vectors for its 8-bit code books, got {s}; "
            f"use kind='ivf' or 'flat'"
        )
    if s < MIN_POINTS_PER_CENTROID * params.nlist:
        logger.warning("training %d lists on only %d vectors; recall may suffer (want >= %d)", params.nlist, s, MIN_POINTS_PER_CENTROID * params.nlist)
    index.cp.seed = seed
    if params.kind == "ivfpq":
        index.pq.cp.seed = seed
    faiss_call(index, "train", sample)


def faiss_ids(index: faiss.Index, kind: str) -> np.ndarray:
    """All int64 ids stored in the faiss index (tombstoned ones included), sorted."""
    if kind in IVF_KINDS:
        ivf = faiss.extract_index_ivf(index)
        invlists = ivf.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
            for lst in range(ivf.nlist)
            if invlists.list_size(lst)
        ]
        ids = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return np.sort(ids.astype(np.int64, copy=False))
    ids = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    return ids if np.all(ids[1:] > ids[:-1]) else np.sort(ids)


def iter_vectors(
    index: faiss.Index, kind: str, chunk_size: int, exclude: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids int64 (c,), vectors float32 (c, d)) chunks in ascending id order, skipping `exclude`.

    flat/hnsw: exact stored vectors; ivf: exact; ivfpq: PQ reconstructions (approximate).
    """
    if kind in IVF_KINDS:
        ids = faiss_ids(index, kind)
        if exclude is not None and exclude.size:
            ids = ids[~np.isin(ids, exclude)]
        for start in range(0, ids.size, chunk_size):
            chunk = ids[start : start + chunk_size]
            yield chunk, faiss_call(index, "reconstruct_batch", chunk)
        return
    id_map = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    inner = faiss.downcast_index(index.index)
    for start in range(0, id_map.size, chunk_size):
        stop = min(id_map.size, start + chunk_size)
        chunk_ids = id_map[start:stop]
        vectors = faiss_call(inner, "reconstruct_n", start, stop - start)
        if exclude is not None and exclude.size:
            keep = ~np.isin(chunk_ids, exclude)
            chunk_ids, vectors = chunk_ids[keep], vectors[keep]
        if chunk_ids.size:
            yield chunk_ids, vectors


def reconstruct(index: faiss.Index, kind: str, ids: np.ndarray) -> np.ndarray:
    """float32 (n, d) stored vectors of ids (all present): flat/hnsw find rows by binary search in
    the sorted id map, IVF kinds through their direct map."""
    if kind in IVF_KINDS:
        return faiss_call(index, "reconstruct_batch", ids)
    id_map = faiss.rev_swig_ptr(index.id_map.data(), index.id_map.size())
    rows = np.searchsorted(id_map, ids)
    return faiss_call(faiss.downcast_index(index.index), "reconstruct_batch", rows.astype(np.int64))


def reserve(index: faiss.Index, kind: str, total: int) -> None:
    """Make room for `total` items so that adding the rest chunk by chunk never re-allocates the
    vector storage: growing a std::vector copies it, briefly holding the old and new buffers (up to
    1.5x the final size at once). A no-op for IVF kinds, whose lists are allocated per list."""
    if kind in IVF_KINDS or total <= index.ntotal:
        return
    inner = faiss.downcast_index(index.index)
    storage = faiss.downcast_index(inner.storage) if kind == "hnsw" else inner
    for vector, width in ((storage.codes, storage.code_size), (index.id_map, 1)):
        size = vector.size()
        vector.resize(total * width)  # allocates exactly total rows (no doubling from this size)
        vector.resize(size)  # shrinking keeps the capacity


def structure_problem(index: faiss.Index, params: IndexParams, d: int, metric_type: int) -> str | None:
    """Why a deserialised faiss index does not match the manifest, or None if it does."""
    if index.d != d:
        return f"has dimension {index.d} but manifest.json says {d}"
    if index.metric_type != metric_type:
        return f"has faiss metric {index.metric_type}, expected {metric_type}"
    if params.kind in ("flat", "hnsw"):
        if not isinstance(index, faiss.IndexIDMap):  # IndexIDMap2 (older saves) is a subclass
            return f"is a {type(index).__name__}, expected IndexIDMap for kind {params.kind!r}"
        inner = faiss.downcast_index(index.index)
        expected = faiss.IndexFlat if params.kind == "flat" else faiss.IndexHNSWFlat
        if not isinstance(inner, expected):
            return f"wraps a {type(inner).__name__}, expected {expected.__name__} for kind {params.kind!r}"
        if index.id_map.size() != index.ntotal:
            return "has an id map that does not match its vector count"
        ids = faiss.vector_to_array(index.id_map)
        if np.any(ids[1:] <= ids[:-1]):
            return "has an id map that is not in increasing id order"
        return None
    expected = faiss.IndexIVFFlat if params.kind == "ivf" else faiss.IndexIVFPQ
    if not isinstance(index, expected):
        return f"is a {type(index).__name__}, expected {expected.__name__} for kind {params.kind!r}"
    if params.nlist is not None and index.nlist != params.nlist:
        return f"has nlist={index.nlist} but manifest.json says {params.nlist}"
    if params.kind == "ivfpq" and params.pq_m is not None and index.pq.M != params.pq_m:
        return f"has {index.pq.M} PQ sub-quantizers but manifest.json says {params.pq_m}"
    return None
