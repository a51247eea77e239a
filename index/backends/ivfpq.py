"""kind "ivfpq": IndexIVFPQ (native ids, 8-bit codes, m sub-quantizers with m | d); otherwise as ivf."""

from __future__ import annotations

import faiss

from ..errors import VectorIndexError
from ..kinds import PQ_BITS, PQ_MIN_TRAIN, PQ_TRAIN_ITER, PQ_TRAIN_POINTS_PER_CENTROID, IndexParams
from .ivf import IvfBackend


class IvfPqBackend(IvfBackend):
    kind = "ivfpq"
    faiss_type = faiss.IndexIVFPQ

    def factory_spec(self, params: IndexParams) -> str:
        return f"IVF{params.nlist},PQ{params.pq_m}x{PQ_BITS}"

    def configure(self, index: faiss.Index) -> None:
        index.do_polysemous_training = False  # index_factory turns it on; minutes of annealing for Hamming pre-filtering we never use
        index.pq.cp.max_points_per_centroid = PQ_TRAIN_POINTS_PER_CENTROID
        index.pq.cp.min_points_per_centroid = 1
        index.pq.cp.niter = PQ_TRAIN_ITER

    def check_sample_size(self, s: int) -> None:
        if s < PQ_MIN_TRAIN:
            raise VectorIndexError(
                f"an ivfpq index needs at least {PQ_MIN_TRAIN} training vectors for its 8-bit code books, got "
                f"{s}; use the ivf or flat kind (--kind, kind=)"
            )

    def seed(self, index: faiss.Index, seed: int) -> None:
        super().seed(index, seed)
        index.pq.cp.seed = seed

    @staticmethod
    def largest_array(file_bytes: int, params: IndexParams, dim: int) -> int:
        """Also the residual table faiss precomputes (nlist x pq_m x 256 floats), admitted only when
        the file really holds the nlist centroids that table is sized by."""
        if params.nlist and params.pq_m and params.nlist * dim * 4 <= file_bytes:
            return max(file_bytes, params.nlist * params.pq_m * 256 * 4)
        return file_bytes

    def kind_structure_problem(self, index: faiss.Index) -> str | None:
        problem = super().kind_structure_problem(index)
        if problem is None and self.params.pq_m is not None and index.pq.M != self.params.pq_m:
            return f"has {index.pq.M} PQ sub-quantizers but manifest.json says {self.params.pq_m}"
        return problem
