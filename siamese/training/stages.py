"""What pretraining and fine-tuning share around the training loop: the seeded validation split,
the clean reconstruction loss both report (so fine-tuning is seen not to wreck the autoencoder), the
per-epoch callbacks, and the claimed, locked output folder."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from index.locking import write_lock
from index.outputs import check_output_directory, claim_output_directory

from ..models.autoencoder import Autoencoder, reconstruction_loss
from ..models.saving import CHECKPOINT_DIR, HISTORY_FILE
from .loop import Checkpointer, EarlyStopping, HistoryCSV, TrainConfig


def split_validation(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train_indices, val_indices); no validation set below 20 items."""
    n_val = int(round(n * fraction)) if n >= 20 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    return order[n_val:], order[:n_val]


def clean_reconstruction_loss(model: Autoencoder, x: torch.Tensor, batch_size: int = 1024) -> float:
    """Mean per-item reconstruction loss of clean items: comparable across variants and stages."""
    total = 0.0
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        total += reconstruction_loss(model.decode(model.encode(batch)), batch).item() * len(batch)
    return total / max(1, len(x))


def training_callbacks(out: Path | None, config: TrainConfig) -> list:
    callbacks: list = [EarlyStopping(config.patience)] if config.patience else []
    if out is not None:
        callbacks += [HistoryCSV(out / HISTORY_FILE), Checkpointer(out / CHECKPOINT_DIR)]
    return callbacks


@contextlib.contextmanager
def claim_model_output(out: Path | None, writes: bool, overwrite: bool) -> Iterator[None]:
    """Hold `out` for a whole training run: refuse a folder that is not ours before anything is
    written into it, mark it as a model output (so `--resume` finds it ours) and keep its writer
    lock until the final model is saved."""
    if out is None or not writes:
        yield
        return
    check_output_directory(out, "model", overwrite=overwrite)  # before the lock: a refusal leaves no trace
    with write_lock(out):
        claim_output_directory(out, "model", overwrite=overwrite)
        yield
