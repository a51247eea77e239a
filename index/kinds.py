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

This module is the table: defaults, memory estimates and the `auto` choice, all decided before
any faiss object exists. What each kind does with its faiss structure (create, train, add, remove,
search parameters, reconstruct, save checks) lives in its backend, index/backends/<kind>.py.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

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
            raise VectorIndexError(f"pq_m={pq_m} (--pq-m) does not divide the dimension {d}; use one of {divisors(d)}")
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


def train_sample_size(params: IndexParams) -> int:
    """How many vectors IVF training uses at most (64 per list; PQ code books want more)."""
    size = IVF_SAMPLE_PER_LIST * (params.nlist or 1)
    if params.kind == "ivfpq":
        size = max(size, PQ_TRAIN_POINTS_PER_CENTROID * (1 << PQ_BITS))
    return size
