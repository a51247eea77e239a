"""What pretraining and fine-tuning share around the training loop: the seeded validation split,
the clean reconstruction loss both report (so fine-tuning is seen not to wreck the autoencoder), the
per-epoch callbacks, the claimed, locked output folder, what `resume` may continue, and the
one-line summary of a run."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from index.locking import write_lock
from index.outputs import check_output_directory, claim_output_directory

from ..errors import SiameseError
from ..models.autoencoder import Autoencoder, reconstruction_loss
from ..models.saving import CHECKPOINT_DIR, CONFIG_FILE, HISTORY_FILE, WEIGHTS_FILE
from .loop import Checkpointer, EarlyStopping, HistoryCSV, TrainConfig, has_checkpoint, seconds_text


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


def check_resume(out: Path | None, epochs: int) -> None:
    """Refuse `resume` when `out` holds nothing to continue: no checkpoint (a new run, which
    `resume` used to start silently) or a finished run (its model saved after the checkpoint's last
    epoch, or saved with no checkpoint at all)."""
    if out is None:
        raise SiameseError("--resume needs the output directory of the interrupted run (out=... / --out)")
    checkpoint = out / CHECKPOINT_DIR
    weights = out / WEIGHTS_FILE
    saved = (out / CONFIG_FILE).is_file() and weights.is_file()
    if not has_checkpoint(checkpoint):
        if saved:
            raise SiameseError(f"--resume: {out} holds a finished model and no checkpoint/; nothing to resume "
                               "(drop --resume to train it again from the start)")
        raise SiameseError(f"--resume: no interrupted run to resume in {out} (no checkpoint/); "
                           "drop --resume to start a new run")
    done, stopped = _checkpoint_progress(checkpoint)
    if saved and (stopped or done >= epochs) and weights.stat().st_mtime >= (checkpoint / "state.json").stat().st_mtime:
        why = "stopped early" if stopped and done < epochs else f"all {done} epochs ran"
        raise SiameseError(f"--resume: {out} holds a finished model ({why}); nothing to resume "
                           "(drop --resume to train it again, or raise the epochs to train it further)")


def _checkpoint_progress(checkpoint: Path) -> tuple[int, bool]:
    """(epochs done, stopped early) from a checkpoint's state.json; (0, False) when unreadable
    (`load_checkpoint` then says what is wrong)."""
    from index.safe_json import read_json

    try:
        meta = read_json(checkpoint / "state.json", "the training checkpoint", "", error=SiameseError)
        epoch, stop = meta.get("epoch"), meta.get("stop")
    except (OSError, SiameseError, AttributeError):
        return 0, False
    return (epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0), stop is True


def summarize_history(rows: Sequence[Mapping[str, Any]], *, pseudo_pairs: Any = None) -> str:
    """One line for a finished run from its history rows (history.csv rows as read by
    csv.DictReader, or TrainState.history): "20 epochs (mean 0.69 s/epoch, 1874 items/s); final
    training loss 16.59, validation loss 16.92". Speeds are means over all epochs, not the last
    one's. pseudo_pairs: the PseudoPairConfig (or its dict) of a fine-tuning run, to say they were on.
    """
    if not rows:
        return "no epochs ran"
    seconds = [float(r["seconds"]) for r in rows]
    items = sum(float(r["items_per_second"]) * t for r, t in zip(rows, seconds))
    total = sum(seconds)
    last = rows[-1]
    val = f", validation loss {float(last['val_loss']):.4g}" if last.get("val_loss") not in (None, "") else ""
    line = (f"{len(rows)} epoch{'s' if len(rows) != 1 else ''} (mean {seconds_text(total / len(rows))} s/epoch, "
            f"{items / total if total > 0 else 0:.0f} items/s); final training loss {float(last['train_loss']):.4g}"
            f"{val}")
    mined = any(r.get("pseudo") not in (None, "") for r in rows)
    if pseudo_pairs is not None:
        k = pseudo_pairs["k"] if isinstance(pseudo_pairs, Mapping) else pseudo_pairs.k
        line += f"; pseudo-pairs on (k={k})" + ("" if mined else ", none mined: no unlabelled items")
    elif mined:
        line += "; pseudo-pairs on"
    return line
