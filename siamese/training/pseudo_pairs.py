"""Pseudo-pairs: confident same/different pairs mined among unlabelled items in the latent space.

Positives are mutual k-nearest neighbours (i is among j's k nearest and j among i's) whose
distance is below the `positive_quantile` of all mutual-neighbour distances: the tightest
links, which in a reasonable pretrained space almost always join items of one class.
Negatives are random pairs farther apart than the `negative_quantile` of random-pair distances,
`negatives_per_positive` of them per positive. Neighbours come from a flat faiss index
(`index.VectorIndex`), exact.

During fine-tuning (FinetuneConfig.pseudo_pairs) the mined pairs add a contrastive term beside
the labelled one; with refresh=True they are mined again each epoch in the current latent
space, otherwise once in the pretrained one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from pytorch_metric_learning import distances, losses

from index import VectorIndex

from ..data.pairs import Pairs, sample_pair_batch
from ..errors import SiameseError

logger = logging.getLogger(__name__)
_RANDOM_PAIRS = 20000  # random pairs drawn to estimate the negative distance quantile


@dataclass(frozen=True)
class PseudoPairConfig:
    """How pseudo-pairs are mined and weighted (FinetuneConfig.pseudo_pairs; None turns them off)."""

    k: int = 5  # mutual k-nearest neighbours are positive candidates
    positive_quantile: float = 0.5  # keep candidates closer than this quantile of their distances (confidence)
    negative_quantile: float = 0.9  # negatives: random pairs beyond this quantile of random-pair distances
    negatives_per_positive: float = 1.0  # ratio of negatives to positives
    max_positives: int = 50000  # cap on positives (the tightest are kept)
    refresh: bool = False  # mine again at every epoch in the current latent space
    weight: float = 1.0  # weight of the pseudo-pair term relative to the labelled metric term
    pairs_per_step: int = 128  # pseudo-pairs per training step, half positive

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise SiameseError(f"pseudo-pair k must be a positive int, got {self.k!r}")
        for name in ("positive_quantile", "negative_quantile"):
            if not 0 < getattr(self, name) <= 1:
                raise SiameseError(f"pseudo-pair {name} must lie in (0, 1], got {getattr(self, name)!r}")
        if self.negatives_per_positive < 0 or self.weight < 0:
            raise SiameseError("pseudo-pair negatives_per_positive and weight must be >= 0")
        if self.max_positives < 1 or self.pairs_per_step < 2:
            raise SiameseError("pseudo-pair max_positives must be >= 1 and pairs_per_step >= 2")

    def to_dict(self) -> dict:
        return asdict(self)


def mutual_neighbours(z: np.ndarray, k: int, metric: str = "l2") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual k-nearest-neighbour pairs of the rows of z (n, d): (i, j, distance), i < j, arrays (m,)."""
    n = len(z)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    k = min(k, n - 1)
    hits = VectorIndex.build(np.ascontiguousarray(z, dtype=np.float32), metric=metric).search(z, k + 1)
    ids, dist = hits.ids, hits.distances.astype(np.float64)
    rows = np.repeat(np.arange(n), k + 1)
    cols, d = ids.ravel(), dist.ravel()
    keep = (cols != rows) & (cols >= 0)
    rows, cols, d = rows[keep], cols[keep], d[keep]
    forward = rows * n + cols
    mutual = np.isin(forward, cols * n + rows) & (rows < cols)
    return rows[mutual], cols[mutual], d[mutual]


def mine_pseudo_pairs(z: np.ndarray, config: PseudoPairConfig = PseudoPairConfig(), *, metric: str = "l2",
                      candidates: np.ndarray | None = None, seed: int = 0) -> Pairs | None:
    """Pairs over positions of z (n, d), mined among `candidates` (positions; default all).

    Returns None when no confident positive exists (too few items)."""
    from ..models.metrics import pair_distances

    candidates = np.arange(len(z)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if len(candidates) < 3:
        return None
    zc = np.asarray(z, dtype=np.float32)[candidates]
    i, j, d = mutual_neighbours(zc, config.k, metric)
    if not len(d):
        return None
    keep = d <= np.quantile(d, config.positive_quantile)
    order = np.argsort(d[keep], kind="stable")[:config.max_positives]
    pos_a, pos_b = i[keep][order], j[keep][order]
    rng = np.random.default_rng(seed)
    n = len(zc)
    want = int(round(config.negatives_per_positive * len(pos_a)))
    draws = max(_RANDOM_PAIRS, int(1.5 * want / max(1e-3, 1 - config.negative_quantile)) + 1)
    a, b = rng.integers(0, n, draws), rng.integers(0, n, draws)
    a, b = a[a != b], b[a != b]
    random_d = pair_distances(zc[a], zc[b], "cosine" if metric == "cosine" else "l2")
    far = random_d > np.quantile(random_d, config.negative_quantile)
    neg_a, neg_b = a[far][:want], b[far][:want]
    if len(neg_a) < want:
        logger.info("found %d of %d wanted pseudo-negatives; draw more by lowering negative_quantile", len(neg_a), want)
    pairs = Pairs(np.concatenate([candidates[pos_a], candidates[neg_a]]),
                  np.concatenate([candidates[pos_b], candidates[neg_b]]),
                  np.concatenate([np.ones(len(pos_a), np.int64), np.zeros(len(neg_a), np.int64)]))
    logger.info("mined %d pseudo-positives and %d pseudo-negatives among %d items", len(pos_a), len(neg_a), n)
    return pairs


class PseudoPairTerm:
    """The fine-tuning hook: mines pairs (once, or every epoch) and adds their contrastive loss."""

    def __init__(self, config: PseudoPairConfig, x: torch.Tensor, candidates: np.ndarray, *, reference,
                 normalize: bool, pos_margin: float, neg_margin: float, scale: float, seed: int) -> None:
        self.config, self.x, self.candidates, self.reference, self.seed = config, x, candidates, reference, seed
        self.scale = scale * config.weight  # relative to the labelled metric term's weight
        self.metric = "cosine" if normalize else "l2"
        self.loss_fn = losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin,
                                              distance=distances.LpDistance(normalize_embeddings=normalize, p=2))
        self.pairs: Pairs | None = None
        self.mined_at: int | None = None

    def mine(self, model, epoch: int) -> None:
        from ..inference.embed import embed

        if self.mined_at is not None and not self.config.refresh:
            return
        self.mined_at = epoch
        if len(self.candidates) < 3:  # every item is labelled: nothing to mine
            return
        source = model if self.config.refresh else self.reference
        z = embed(source, self.x[self.candidates])
        # mined once: the draw of the first epoch (0) even when a resumed run starts later, so it resumes the same
        self.pairs = mine_pseudo_pairs(z, self.config, metric=self.metric,
                                       seed=self.seed + (epoch if self.config.refresh else 0))
        if self.pairs is not None:  # positions among candidates -> positions in x
            self.pairs = Pairs(self.candidates[self.pairs.a], self.candidates[self.pairs.b], self.pairs.label)

    def wrap(self, model, batches, step_loss):
        """(batches, step_loss) of finetune, extended with a pseudo-pair batch and its loss."""

        def wrapped_batches(epoch: int, generator: torch.Generator):
            self.mine(model, epoch)
            for batch in batches(epoch, generator):
                extra = sample_pair_batch(self.pairs, self.config.pairs_per_step, generator) if self.pairs else None
                yield batch, extra

        def wrapped_step(m, batch, generator):
            inner, extra = batch
            total, parts = step_loss(m, inner, generator)
            if extra is None:
                return total, parts
            chosen, indices_tuple = extra
            pseudo = self.loss_fn(m.encode(self.x[torch.as_tensor(chosen)]), indices_tuple=indices_tuple)
            return total + self.scale * pseudo, {**parts, "pseudo": pseudo.item()}

        return wrapped_batches, wrapped_step

