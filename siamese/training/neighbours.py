"""The neighbour term of pretraining: keep items that are near in input space near in latent space.

A reconstruction alone folds classes over each other when the latent space is tiny (d=2: 81-85%
kNN accuracy on MNIST against 97% for raw pixels). Beside the reconstruction, each batch item is
paired with one of its k nearest neighbours in input space (found once with faiss after a PCA to
at most PCA_DIMS dimensions) and an InfoNCE loss with a Cauchy kernel, 1 / (1 + |zi - zj|^2),
pulls the pair together and pushes the other items of the batch away: the contrastive form of
t-SNE / UMAP (Damrich et al. 2023, "From t-SNE to UMAP with contrastive learning"), computed as
pytorch-metric-learning's SupConLoss over a log-Cauchy distance.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_metric_learning.distances import BaseDistance
from pytorch_metric_learning.losses import SupConLoss

from index import VectorIndex

PCA_DIMS = 64  # inputs are projected to this many principal components before the neighbour search
LOW_LATENT_DIM = 2  # latent sizes up to this get the neighbour term by default
LOW_DIM_WEIGHT = 30.0  # its default weight there (chosen on MNIST d=2, BENCHMARKS.md)


def default_neighbour_weight(latent_dim: int) -> float:
    """The neighbour term's weight when the user chose none: on for 2-D maps, off otherwise."""
    return LOW_DIM_WEIGHT if latent_dim <= LOW_LATENT_DIM else 0.0


class LogCauchyDistance(BaseDistance):
    """log(1 + |a - b|^2): SupConLoss negates a distance, so its logits are the log Cauchy kernel."""

    def __init__(self) -> None:
        super().__init__(normalize_embeddings=False)

    def compute_mat(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        squared = (query_emb.pow(2).sum(1, keepdim=True) - 2 * query_emb @ ref_emb.T
                   + ref_emb.pow(2).sum(1).unsqueeze(0))
        return torch.log1p(squared.clamp_min(0))

    def pairwise_distance(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        return torch.log1p((query_emb - ref_emb).pow(2).sum(-1))


def input_neighbours(x: torch.Tensor, k: int) -> np.ndarray:
    """Positions of each item's k nearest other items in input space, shape (n, k)."""
    flat = x.detach().flatten(1).float()
    if flat.shape[1] > PCA_DIMS and len(flat) > PCA_DIMS:
        mean = flat.mean(0, keepdim=True)
        _, _, components = torch.pca_lowrank(flat - mean, q=PCA_DIMS, center=False, niter=4)
        flat = (flat - mean) @ components
    vectors = np.ascontiguousarray(flat.numpy(), dtype=np.float32)
    k = min(k, len(vectors) - 1)
    # "auto": exact below a size where that gets slow, approximate (HNSW, IVF) above: a few wrong
    # neighbours among k only add noise to the term
    ids = VectorIndex.build(vectors, kind="auto").search(vectors, k + 1).ids
    # drop each item itself (usually column 0; duplicates may push it later): a stable sort moves it last
    own = ids == np.arange(len(ids))[:, None]
    found = np.take_along_axis(ids, np.argsort(own, axis=1, kind="stable"), axis=1)[:, :k]
    found = np.where(found < 0, found[:, :1], found)  # an approximate search may return fewer: repeat the nearest
    return np.where(found < 0, np.arange(len(found))[:, None], found)


def neighbour_agreement(z: torch.Tensor, z_neighbours: torch.Tensor) -> torch.Tensor:
    """InfoNCE with a Cauchy kernel over 2n embeddings: row i of z and of z_neighbours are a
    positive pair, every other row a negative."""
    labels = torch.arange(z.shape[0], device=z.device).repeat(2)
    return SupConLoss(temperature=1.0, distance=LogCauchyDistance())(torch.cat([z, z_neighbours]), labels)
