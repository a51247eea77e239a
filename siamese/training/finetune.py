"""Stage 2: fine-tune the pretrained encoder as a Siamese network on labelled pairs.

Each step embeds labelled items (both members of sampled pairs, or a batch of labelled items
whose pairs PML forms and mines) with the shared encoder and applies a pytorch-metric-learning
loss (ContrastiveLoss by default: same pairs pulled within `pos_margin`, different pairs pushed
beyond `neg_margin`). The autoencoder's own loss over unlabelled *and* labelled items stays in
the objective, so a handful of labels cannot wreck the structure learned in pretraining.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from pytorch_metric_learning import distances, losses, miners
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

from ..data.augment import random_affine
from ..data.pairs import Pairs, read_pairs_csv, sample_pair_batch, select_per_class
from ..errors import SiameseError
from ..models.autoencoder import Autoencoder
from ..models.model_input import as_model_input
from ..models.saving import CHECKPOINT_DIR, save_model
from .distributed import Parallel
from .loop import Progress, TrainConfig, fit, shuffled_batches, steps_for
from .pseudo_pairs import PseudoPairConfig, PseudoPairTerm
from .self_training import SelfTrainingConfig, add_confident_labels
from .stages import (
    check_resume,
    claim_model_output,
    clean_reconstruction_loss,
    split_validation,
    training_callbacks,
)

logger = logging.getLogger(__name__)
DISTANCES = ("cosine", "euclidean")
MINERS = ("none", "hard")


FINETUNE_TRAIN = TrainConfig(epochs=10,
                             lr=1e-3)  # shorter and gentler than pretraining: it starts from a trained encoder


@dataclass(frozen=True)
class FinetuneConfig:
    """How labelled pairs shape the embedding."""

    loss: str = "contrastive"  # one of LOSSES (pytorch-metric-learning)
    # "cosine": L2 between unit-normalised z (index metric cosine); "euclidean": raw L2; None: cosine,
    # or euclidean for 2-D embeddings, where a direction alone is one angle for every class
    # (MNIST d=2, 100 labels per class: 74.5% cosine, 95.25% euclidean; BENCHMARKS.md)
    distance: str | None = None
    pos_margin: float = 0.0  # contrastive: same pairs closer than this cost nothing
    neg_margin: float = 1.0  # contrastive: different pairs farther than this cost nothing
    triplet_margin: float = 0.2  # triplet loss margin
    temperature: float = 0.1  # ntxent / supcon
    miner: str = "none"  # "none": every pair in the batch; "hard": PML PairMarginMiner / semi-hard triplets
    # weight of the metric loss against the reconstruction term; None: adapt to the labelled share
    # (adaptive_metric_weight: 10 with few labels, up to 50 with every item labelled)
    metric_weight: float | None = None
    recon_weight: float = 1.0  # weight of the autoencoder loss over labelled + unlabelled items
    labelled_per_step: int = 256  # labelled items (label mode) embedded per step
    pairs_per_step: int = 256  # pairs (pair-file mode) per step, half positive where possible
    unlabelled_per_step: int = 128  # items for the reconstruction term per step
    augment: bool = True  # random shift/rotation of labelled images before embedding them
    # confident pairs mined among unlabelled items add a second contrastive term; on MNIST with 10
    # labels per class they lifted kNN accuracy 98.35 -> 98.63% and MAP@R 76 -> 82% (BENCHMARKS.md).
    # None: labelled pairs only.
    pseudo_pairs: PseudoPairConfig | None = PseudoPairConfig()
    # with few labels, a second round on the given labels plus the most confident propagated ones
    # (self_training.py); None: one round on the given labels only
    self_training: SelfTrainingConfig | None = SelfTrainingConfig()

    def __post_init__(self) -> None:
        for name, allowed in (("loss", LOSSES), ("distance", DISTANCES), ("miner", MINERS)):
            if getattr(self, name) not in allowed and not (name == "distance" and self.distance is None):
                raise SiameseError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        if self.neg_margin <= self.pos_margin and self.loss == "contrastive":
            raise SiameseError(f"neg_margin ({self.neg_margin}) must exceed pos_margin ({self.pos_margin})")
        weights = (self.recon_weight,) + ((self.metric_weight,) if self.metric_weight is not None else ())
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise SiameseError(f"--metric-weight and --recon-weight must be finite numbers >= 0, got "
                               f"{self.metric_weight} and {self.recon_weight}")

    @property
    def index_metric(self) -> str:
        return "cosine" if self.distance != "euclidean" or self.loss in ("ntxent", "supcon") else "l2"

    def to_dict(self) -> dict:
        return asdict(self)


# (labelled share, weight) at both ends of the adaptive metric weight: few labels lean on the
# reconstruction term to keep the pretrained structure; with every item labelled the labels carry
# it (MNIST, all 8000 labels: kNN 98.65% at weight 10, 99.15% at 50; BENCHMARKS.md).
FEW_LABELS, ALL_LABELS = (0.0125, 10.0), (1.0, 50.0)


def adaptive_metric_weight(labelled_share: float) -> float:
    """Metric-loss weight for a labelled share of the training items: 10 up to 1.25% labelled
    (100 of 8000), rising log-linearly to 50 with every item labelled (23 at 12.5%)."""
    (low_share, low), (high_share, high) = FEW_LABELS, ALL_LABELS
    share = min(max(labelled_share, low_share), high_share)
    return low * (high / low) ** (math.log(share / low_share) / math.log(high_share / low_share))


def resolve_defaults(config: FinetuneConfig, model: Autoencoder, n_known: int, n_items: int) -> FinetuneConfig:
    """The config with its data-dependent defaults (None) filled in, as the model will record it."""
    if config.metric_weight is None:
        config = replace(config, metric_weight=round(adaptive_metric_weight(n_known / n_items), 2))
    if config.distance is None:
        config = replace(config, distance="euclidean" if model.latent_dim <= 2 else "cosine")
    return config


def _pair_distance(config: "FinetuneConfig") -> distances.LpDistance:
    """L2 between unit-normalised embeddings (cosine; also before `resolve_defaults` chose) or raw L2
    (euclidean), as the index will measure."""
    return distances.LpDistance(normalize_embeddings=config.distance != "euclidean", p=2)


# name -> PML loss built from the config (its distance and margins); FinetuneConfig.loss picks one
LOSS_FACTORIES = {
    "contrastive": lambda c: losses.ContrastiveLoss(pos_margin=c.pos_margin, neg_margin=c.neg_margin,
                                                    distance=_pair_distance(c)),
    "triplet": lambda c: losses.TripletMarginLoss(margin=c.triplet_margin, distance=_pair_distance(c)),
    "multisimilarity": lambda c: losses.MultiSimilarityLoss(distance=distances.CosineSimilarity()),
    "ntxent": lambda c: losses.NTXentLoss(temperature=c.temperature),
    "supcon": lambda c: losses.SupConLoss(temperature=c.temperature),
}
LOSSES = tuple(LOSS_FACTORIES)
# loss name -> the PML miner that suits it, used with FinetuneConfig.miner = "hard"
HARD_MINER_FACTORIES = {
    "triplet": lambda c: miners.TripletMarginMiner(margin=c.triplet_margin, type_of_triplets="semihard",
                                                   distance=_pair_distance(c)),
    "contrastive": lambda c: miners.PairMarginMiner(pos_margin=c.pos_margin, neg_margin=c.neg_margin,
                                                    distance=_pair_distance(c)),
}


def build_loss(config: FinetuneConfig) -> losses.BaseMetricLossFunction:
    """The PML loss named by the config, with the config's distance and margins."""
    return LOSS_FACTORIES[config.loss](config)


def build_miner(config: FinetuneConfig):
    """None (every pair in the batch) or the hard miner that suits the loss."""
    if config.miner == "none":
        return None
    return HARD_MINER_FACTORIES.get(config.loss, lambda c: miners.MultiSimilarityMiner())(config)


def resolve_labels(items, labels) -> np.ndarray:
    """Label codes per item (-1 = unlabelled) from True (the items' own), a {key: label} mapping
    or a LABELS.csv path."""
    if labels is True:
        if not items.has_labels:
            raise SiameseError(f"{items.source} carries no labels; pass a LABELS.csv (--labels)")
        return items.label_codes()[0]
    if isinstance(labels, (str, Path)):
        from ..data.loading import read_labels_csv

        labels = read_labels_csv(labels)
    if not isinstance(labels, Mapping):
        raise SiameseError("labels must be True, a {key: label} mapping or a LABELS.csv path")
    return items.with_labels(labels).label_codes()[0]


def finetune(
    model: Autoencoder,
    items,
    *,
    pairs: Pairs | str | Path | None = None,
    labels=None,
    labels_per_class: int | None = None,
    config: FinetuneConfig = FinetuneConfig(),
    train: TrainConfig = FINETUNE_TRAIN,
    loss: losses.BaseMetricLossFunction | None = None,
    miner=None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Progress = True,
    parallel: Parallel | None = None,
    overwrite: bool = False,
) -> Autoencoder:
    """Return a fine-tuned copy of `model` (the original is left untouched).

    Give exactly one of `pairs` (Pairs or a PAIRS.csv over item keys) or `labels` (True for the
    items' own labels, a {key: label} mapping, or a LABELS.csv); `labels_per_class=N` keeps N
    labelled items per class (seeded) and treats the rest as unlabelled. `loss`/`miner` replace
    the PML objects the config would build. `parallel` as in `pretrain`: under torchrun each rank
    embeds its share of the labelled items and the loss and miner see those of all ranks.
    `out`, `resume` and `progress` as in `pretrain`.

    With few labels (config.self_training) two rounds run, both from `model`: the second adds the
    most confident labels propagated over the first's embedding. Only the second keeps a
    checkpoint; `resume` runs the first again (seeded, it comes out the same).
    """
    from ..data.loading import ItemSet

    if not isinstance(items, ItemSet):
        raise SiameseError("finetune needs an ItemSet; build one with siamese.load_items(...)")
    train = train.with_default_epochs(FINETUNE_TRAIN.epochs)
    if resume:
        check_resume(Path(out) if out is not None else None, train.epochs)
    if (pairs is None) == (labels is None):
        raise SiameseError("give exactly one of pairs=PAIRS.csv or labels=LABELS.csv/True")
    if isinstance(pairs, (str, Path)):
        pairs = read_pairs_csv(pairs, items.keys)
    codes = None
    if labels is not None:
        codes = resolve_labels(items, labels)
        if labels_per_class is not None:
            codes = np.where(select_per_class(codes, labels_per_class, seed=train.seed), codes, -1)
        if (codes >= 0).sum() < 2 or len(np.unique(codes[codes >= 0])) < 2:
            raise SiameseError("need labelled items of at least two classes to fine-tune")
    elif labels_per_class is not None:
        raise SiameseError("labels_per_class applies to labels, not to a pairs file")
    elif config.self_training is not None and config.self_training.below_share is None:
        raise SiameseError("--self-training on propagates labels, and a pairs file has none: give --labels, "
                           "or use --self-training auto / off")
    elif pairs.items().max() >= len(items):
        raise SiameseError("pairs refer to item positions beyond the item set")

    x = as_model_input(model, items)
    train_idx, val_idx = split_validation(len(x), train.val_fraction, train.seed)
    x_val = x[val_idx]
    with torch.no_grad():
        recon_before = clean_reconstruction_loss(copy.deepcopy(model).eval(), x_val) if len(x_val) else None
    parallel = parallel or Parallel.current()
    given = codes
    n_given = int((codes >= 0).sum()) if codes is not None else len(pairs.items())
    self_training = config.self_training if codes is not None else None
    self_training = self_training if self_training is not None and self_training.applies(n_given, len(x)) else None
    rounds = 2 if self_training is not None else 1
    round_ = partial(_train_round, model, x, train_idx, x_val, pairs=pairs, train=train, loss=loss, miner=miner,
                     progress=progress, parallel=parallel)

    out = Path(out) if out is not None else None
    with claim_model_output(out, out is not None and (parallel is None or parallel.is_main), overwrite):
        summary = None
        if self_training is not None:  # round 1 keeps no checkpoint: --resume runs it again (seeded, the same)
            first, first_config = round_(codes, config, out=None, resume=False, description="round 1 of 2")
            codes, summary = add_confident_labels(first, x, codes, self_training, first_config.index_metric)
            summary = {**summary, "first_round_metric_weight": first_config.metric_weight}
        tuned, config = round_(codes, config, out=out, resume=resume,
                               description="round 2 of 2, with propagated labels" if rounds == 2 else "")
        with torch.no_grad():
            recon_after = clean_reconstruction_loss(tuned, x_val) if len(x_val) else None
        tuned.info = {
            **model.info,
            "metric": config.index_metric,
            "finetune": {
                "config": config.to_dict(), "train": train.to_dict(), "parent_fingerprint": model.fingerprint(),
                "threads": torch.get_num_threads(),
                "n_labelled": n_given if codes is not None else None,
                "n_pairs": len(pairs) if pairs is not None else None,
                "self_training": summary,
                "val_reconstruction_before": recon_before, "val_reconstruction_after": recon_after,
                "loss_object": _loss_name(loss if loss is not None else build_loss(config)),
            },
        }
        if recon_before is not None:
            logger.info("validation reconstruction loss %.3f -> %.3f", recon_before, recon_after)
        if out is not None and (parallel is None or parallel.is_main):
            save_model(tuned, out)
            if given is not None:
                _write_labels_used(Path(out) / "labels-used.csv", items.keys, given, items.label_codes()[1]
                                   if labels is True else None, labels)
    if parallel is not None:
        parallel.barrier()
    return tuned


def _loss_name(loss_fn) -> str:
    return type(loss_fn.loss if isinstance(loss_fn, DistributedLossWrapper) else loss_fn).__name__


def _train_round(model: Autoencoder, x: torch.Tensor, train_idx: torch.Tensor, x_val: torch.Tensor,
                 codes: np.ndarray | None, config: FinetuneConfig, *, pairs: Pairs | None, train: TrainConfig,
                 loss, miner, out: Path | None, resume: bool, progress: Progress, parallel: Parallel | None,
                 description: str) -> tuple[Autoencoder, FinetuneConfig]:
    """One fine-tuning run of a copy of `model` on the labelled items of `codes` (or on `pairs`);
    returns it with the config its data-dependent defaults resolved to."""
    known = np.flatnonzero(codes >= 0) if codes is not None else pairs.items()  # labelled / paired items
    config = resolve_defaults(config, model, len(known), len(x))
    tuned = copy.deepcopy(model)
    image_items = x.ndim == 4
    loss_fn = loss if loss is not None else build_loss(config)
    miner_fn = miner if miner is not None else build_miner(config)
    labelled = known if codes is not None else None
    codes_t = torch.as_tensor(codes) if codes is not None else None
    labelled_per_step, metric_scale = config.labelled_per_step, 1
    if parallel is not None and labelled is not None:  # pairs are mined across ranks; every rank a same-size share
        loss_fn = DistributedLossWrapper(loss_fn)
        miner_fn = DistributedMinerWrapper(miner_fn) if miner_fn is not None else None
        labelled_per_step = min(labelled_per_step, len(labelled)) // parallel.world_size * parallel.world_size
        metric_scale = parallel.world_size  # the wrapper returns world_size x the loss (DDP averages gradients)
    unlabelled_batches = shuffled_batches(len(train_idx), min(config.unlabelled_per_step, len(train_idx)), parallel)

    def batches(epoch: int, generator: torch.Generator):
        for batch in unlabelled_batches(epoch, generator):
            if pairs is not None:  # every rank takes the same pair batch (its loss is not split)
                chosen, indices_tuple = sample_pair_batch(pairs, config.pairs_per_step, generator)
                yield train_idx[batch], torch.as_tensor(chosen), indices_tuple
            else:
                order = torch.randperm(len(labelled), generator=generator)[:labelled_per_step]
                order = parallel.shard(order) if parallel is not None else order
                yield train_idx[batch], torch.as_tensor(labelled[order.numpy()]), None

    def step_loss(m: Autoencoder, batch, generator):
        unlabelled_idx, labelled_idx, indices_tuple = batch
        x_lab = x[labelled_idx]
        recon, _ = m.loss(torch.cat([x[unlabelled_idx], x_lab]), generator)
        if config.augment and image_items:
            x_lab = random_affine(x_lab, generator)
        z = m.encode(x_lab)
        if indices_tuple is None:
            y = codes_t[labelled_idx]
            mined = miner_fn(z, y) if miner_fn is not None else None
            metric = loss_fn(z, y, mined)
        else:
            metric = loss_fn(z, indices_tuple=indices_tuple)
        total = config.recon_weight * recon + config.metric_weight * metric
        parts = {"recon": recon.item(), "metric": metric.item() / metric_scale}
        if metric_scale != 1:
            parts["loss"] = config.recon_weight * parts["recon"] + config.metric_weight * parts["metric"]
        return total, parts

    if config.pseudo_pairs is not None:  # unlabelled training items: no label / in no given pair
        term = PseudoPairTerm(config.pseudo_pairs, x, np.setdiff1d(train_idx, known), reference=model,
                              normalize=config.distance != "euclidean", pos_margin=config.pos_margin,
                              neg_margin=config.neg_margin, scale=config.metric_weight, seed=train.seed)
        batches, step_loss = term.wrap(tuned, batches, step_loss)

    n_steps = steps_for(len(train_idx), min(config.unlabelled_per_step, len(train_idx)), parallel)
    fit(tuned, step_loss, batches, n_steps, train,
        validate=(lambda m: clean_reconstruction_loss(m, x_val)) if len(x_val) else None,
        callbacks=training_callbacks(out, train), resume_from=(out / CHECKPOINT_DIR) if resume else None,
        progress=progress, description=f"finetune {config.loss}" + (f", {description}" if description else ""),
        parallel=parallel)
    return tuned, config


def _write_labels_used(path: Path, keys, codes: np.ndarray, classes, labels) -> None:
    """The labelled items fine-tuning saw (key,label): reuse them to label an index (--labels)."""
    import csv

    from index.atomic import atomic_file

    if classes is None:  # labels came from a mapping / file: recover the strings from it
        from ..data.loading import read_labels_csv

        mapping = read_labels_csv(labels) if isinstance(labels, (str, Path)) else labels
        rows = [(k, str(mapping[k])) for k, c in zip(keys, codes) if c >= 0]
    else:
        rows = [(k, classes[c]) for k, c in zip(keys, codes) if c >= 0]
    with atomic_file(path, "w") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "label"])
        writer.writerows(rows)
