"""Stage 1: pretrain the encoder as an autoencoder on unlabeled items."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import SiameseError
from ..models.autoencoder import Autoencoder, AutoencoderConfig
from ..models.model_input import as_model_input
from ..models.saving import CHECKPOINT_DIR, HISTORY_FILE, save_model
from .distributed import Parallel
from .loop import Progress, TrainConfig, fit, shuffled_batches, steps_for
from .neighbours import LOW_LATENT_DIM, default_neighbour_weight, input_neighbours, neighbour_agreement
from .stages import (
    check_resume,
    claim_model_output,
    clean_reconstruction_loss,
    split_validation,
    training_callbacks,
)

logger = logging.getLogger(__name__)
# the knee of the default autoencoder's quality-against-time curve (MNIST, d=32; BENCHMARKS.md "Cost"):
# 20 epochs gained 0.12 points of leave-one-out kNN for twice the time
PRETRAIN_EPOCHS = 10
# 2-D maps still gain from 10 to 20 epochs (MNIST d=2 with the neighbour term: 88.9% -> 91.9% leave-one-out)
MAP_PRETRAIN_EPOCHS = 20


def default_pretrain_epochs(latent_dim: int) -> int:
    """Pretraining epochs when the user chose none (TrainConfig.epochs None)."""
    return MAP_PRETRAIN_EPOCHS if latent_dim <= LOW_LATENT_DIM else PRETRAIN_EPOCHS


def pretrain(
    items,
    config: AutoencoderConfig = AutoencoderConfig(),
    train: TrainConfig = TrainConfig(),
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Progress = True,
    parallel: Parallel | None = None,
    overwrite: bool = False,
) -> Autoencoder:
    """Train an autoencoder of `config.variant` on `items` (ItemSet from `load_items`).

    With `out`, history.csv and a per-epoch checkpoint are written there and the final model is
    saved there; `resume=True` continues from that checkpoint exactly (same seed and settings), and
    refuses a folder with no checkpoint or a finished model. progress: False (silent), True (bars
    on a terminal, else one INFO log line per epoch) or write(line) (bars on a terminal, else one
    line per epoch to `write`).
    parallel: data-parallel training over processes; default: the torch.distributed process
    group if one is initialised (torchrun), where rank 0 alone writes `out`. `out` must be new,
    empty or an earlier model (`overwrite=True` replaces any other folder); it is locked while
    training runs.
    """
    from ..data.loading import ItemSet

    if not isinstance(items, ItemSet):
        raise SiameseError("pretrain needs an ItemSet; build one with siamese.load_items(...)")
    out = Path(out) if out is not None else None
    config = resolve_defaults(config)
    train = train.with_default_epochs(default_pretrain_epochs(config.latent_dim))
    if resume:
        check_resume(out, train.epochs)
    torch.manual_seed(train.seed)
    model = Autoencoder(config, config.network(items.item_shape))
    model.info = {
        "normalization": items.normalization.to_dict(),
        "preprocessing": items.preprocessing.to_dict(),
        "metric": "l2",
        # threads: results depend on the thread count (reduction order), so a repeat needs the same --threads
        "pretrain": {"train": train.to_dict(), "items": len(items), "source": items.source,
                     "threads": torch.get_num_threads()},
    }
    x = as_model_input(model, items)
    train_idx, val_idx = split_validation(len(x), train.val_fraction, train.seed)
    x_train, x_val = x[train_idx], x[val_idx]
    if len(x_train) < 2:
        raise SiameseError(f"need at least 2 training items, got {len(x_train)}")
    parallel = parallel or Parallel.current()
    writes = out is not None and (parallel is None or parallel.is_main)
    with claim_model_output(out, writes, overwrite):
        if writes and not resume:
            for stale in (out / HISTORY_FILE, out / CHECKPOINT_DIR / "state.json"):
                stale.unlink(missing_ok=True)
        batch_size = min(train.batch_size, len(x_train))
        fit(
            model,
            reconstruction_and_neighbours(x_train, config),
            shuffled_batches(len(x_train), batch_size, parallel),
            steps_for(len(x_train), batch_size, parallel),
            train,
            validate=(lambda m: clean_reconstruction_loss(m, x_val)) if len(x_val) else None,
            callbacks=training_callbacks(out, train),
            resume_from=(out / CHECKPOINT_DIR) if resume else None,
            progress=progress,
            description=f"pretrain {config.variant}",
            parallel=parallel,
        )
        if writes:
            save_model(model, out)
            logger.info("saved %s to %s", config.variant, out)
    if parallel is not None:
        parallel.barrier()
    return model


def resolve_defaults(config: AutoencoderConfig) -> AutoencoderConfig:
    """The config with its data-dependent default (neighbour_weight None) filled in, as the model records it."""
    if config.neighbour_weight is None:
        config = replace(config, neighbour_weight=default_neighbour_weight(config.latent_dim))
    return config


def reconstruction_and_neighbours(x_train: torch.Tensor, config: AutoencoderConfig):
    """The batch loss: the variant's own, plus the neighbour term when config.neighbour_weight > 0."""
    if not config.neighbour_weight:
        return lambda m, idx, gen: m.loss(x_train[idx], gen)
    neighbours = torch.from_numpy(input_neighbours(x_train, config.neighbour_k))

    def batch_loss(m, idx, gen):
        loss, parts = m.loss(x_train[idx], gen)
        picked = neighbours[idx, torch.randint(neighbours.shape[1], (len(idx),), generator=gen)]
        agreement = neighbour_agreement(m.encode(x_train[idx]), m.encode(x_train[picked]))
        return loss + config.neighbour_weight * agreement, {**parts, "recon": parts.get("recon", loss.item()),
                                                            "neighbours": agreement.item()}

    return batch_loss
