"""Self-training: fine-tune once more on the given labels plus the most confident labels that
label propagation spreads over the first fine-tuned embedding.

With few labels (10 per class of MNIST) the first round already gathers most items with their
class; propagation over its kNN graph (`index.propagation`) labels every item, and its most
confident 80% are about 99.7% right. The second round starts again from the *pretrained* encoder,
so it is a plain fine-tuning run on many labels, with the reconstruction term as before.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from index import VectorIndex
from index.propagation import propagate_labels

from ..errors import SiameseError
from ..inference.embed import embed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelfTrainingConfig:
    """When a second round runs and how many propagated labels it trusts (FinetuneConfig.self_training)."""

    keep: float = 0.8  # share of the propagated labels kept for the second round, most confident first
    # self-train only while the given labels cover less than this share of the items: with more, the
    # labels alone already reach nearly every item (None: always, when any item is unlabelled)
    below_share: float | None = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise SiameseError(f"--self-training-keep must lie in (0, 1], got {self.keep!r}")
        if self.below_share is not None and not 0 < self.below_share <= 1:
            raise SiameseError(f"self-training below_share must lie in (0, 1], got {self.below_share!r}")

    def applies(self, n_labelled: int, n_items: int) -> bool:
        """Whether a second round runs for this many labelled items among `n_items`."""
        if n_labelled >= n_items:
            return False
        return self.below_share is None or n_labelled < self.below_share * n_items

    def to_dict(self) -> dict:
        return asdict(self)


def add_confident_labels(model, x: torch.Tensor, codes: np.ndarray, config: SelfTrainingConfig,
                         metric: str) -> tuple[np.ndarray, dict]:
    """`codes` (label code per item, -1 = unlabelled) with the `config.keep` most confident labels
    propagated over `model`'s embedding filled in, and a summary for the model's info."""
    z = embed(model, x)
    given = codes >= 0
    index = VectorIndex.build(z, labels=[str(c) if g else None for c, g in zip(codes, given)], metric=metric,
                              kind="flat")
    propagated = propagate_labels(index)
    position = np.argsort(propagated.ids)  # ids are the items' positions 0..n-1
    labels, confidence = propagated.labels[position], propagated.confidence[position]
    candidates = np.flatnonzero(~given & (labels != None))  # noqa: E711 (object array)
    chosen = candidates[np.argsort(-confidence[candidates], kind="stable")[:int(round(config.keep * len(candidates)))]]
    result = codes.copy()
    result[chosen] = labels[chosen].astype(np.int64)
    lowest = float(confidence[chosen].min()) if len(chosen) else None
    logger.info("self-training: %d propagated labels kept of %d (confidence >= %s)", len(chosen), len(candidates),
                lowest)
    return result, {"n_propagated_labels": int(len(chosen)), "lowest_confidence_kept": lowest}
