"""One small training loop shared by pretraining and fine-tuning.

Read top to bottom: for each epoch, draw batches from a seeded generator, take optimizer steps
with a one-cycle (or cosine/constant) learning rate and gradient clipping, measure validation
loss, then let callbacks log, checkpoint and decide on early stopping. Every random draw goes
through one torch.Generator whose state is checkpointed, so `resume` continues bit-exactly.

Progress: on a terminal, a tqdm bar per epoch; anywhere else (a log file, a pipe) one plain line
per epoch, because carriage-return bars are invisible or garbled there. The line goes to the
`progress` callable when one is given (the CLI and the demo print it), else to this module's
logger at INFO (a library prints nothing); progress=False silences both.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from index.atomic import atomic_directory, atomic_file
from index.safe_json import read_json

from ..errors import SiameseError
from .distributed import Parallel

logger = logging.getLogger(__name__)
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by both stages."""

    # passes over the data; None = the stage's default (pretrain: `default_pretrain_epochs`, finetune: 10)
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 2e-3  # peak learning rate (AdamW)
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # "onecycle" (linear warm-up, cosine decay) | "cosine" | "constant"
    warmup: float = 0.15  # fraction of all steps spent warming up (onecycle)
    grad_clip: float | None = 5.0  # max global grad norm; None = no clipping
    val_fraction: float = 0.1  # share of items held out for the validation loss
    patience: int | None = None  # stop after this many epochs without a better val loss
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.epochs is not None and self.epochs <= 0) or self.batch_size <= 1:
            raise SiameseError(f"epochs must be >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise SiameseError(f"lr must be a positive number, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise SiameseError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0 <= self.val_fraction < 1 or not 0 <= self.warmup < 1:
            raise SiameseError("val_fraction and warmup must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_default_epochs(self, epochs: int) -> TrainConfig:
        """This config with the stage's default filled in when epochs is None."""
        return self if self.epochs is not None else replace(self, epochs=epochs)


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total_steps`."""
    if config.schedule == "constant":
        return config.lr
    warmup_steps = int(config.warmup * total_steps) if config.schedule == "onecycle" else 0
    if step < warmup_steps:
        return config.lr * (0.04 + 0.96 * step / warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return config.lr * (0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * 0.999 + 0.001)


@dataclass
class TrainState:
    """What the loop knows after each epoch; callbacks read it and may set `stop`."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[dict] = field(default_factory=list)
    stop: bool = False


class Callback(Protocol):
    def on_epoch_end(self, state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator) -> None: ...


BatchLoss = Callable[[nn.Module, Any, torch.Generator], "tuple[torch.Tensor, dict]"]
Batches = Callable[[int, torch.Generator], Iterable[Any]]
# False: silent; True: bars on a terminal, else one INFO log line per epoch; write(line): bars on a
# terminal, else write(line) per epoch
Progress = bool | Callable[[str], None]


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def epoch_line(description: str, state: TrainState, epochs: int) -> str:
    """One plain progress line for the epoch just finished, e.g.
    "pretrain denoising: epoch 3/40, train loss 17.48, val loss 17.39, 0.7 s/epoch, ~26 s to go"."""
    record = state.history[-1]
    seconds = [r["seconds"] for r in state.history if "seconds" in r]
    mean = sum(seconds) / max(1, len(seconds))
    val = f", val loss {record['val_loss']:.4g}" if "val_loss" in record else ""
    left = epochs - state.epoch
    to_go = f", ~{_duration(left * mean)} to go" if left > 0 and not state.stop else ""
    return (f"{description}: epoch {state.epoch}/{epochs}, train loss {record['train_loss']:.4g}{val}, "
            f"{seconds_text(record['seconds'])} s/epoch{to_go}")


def seconds_text(seconds: float) -> str:
    """0.69, 1.9, 12, 340: two significant digits below 10 s, whole seconds above."""
    return f"{seconds:.2g}" if seconds < 10 else f"{seconds:.0f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def fit(
    model: nn.Module,
    batch_loss: BatchLoss,
    batches: Batches,
    steps_per_epoch: int,
    config: TrainConfig,
    *,
    validate: Callable[[nn.Module], float] | None = None,
    callbacks: Iterable[Callback] = (),
    resume_from: str | Path | None = None,
    progress: Progress = True,
    description: str = "train",
    parallel: Parallel | None = None,
) -> TrainState:
    """Train `model` in place; returns the final state (history holds one dict per epoch).

    batch_loss(model, batch, generator) -> (loss, parts)   parts: floats to log; parts["loss"], if
        given, is logged as the training loss instead of `loss` (when the differentiated value differs)
    batches(epoch, generator) -> iterable of `steps_per_epoch` batches
    validate(model) -> float, called in eval mode under no_grad
    resume_from: a checkpoint folder to continue from (pretrain / finetune refuse a folder without one first)
    progress: False, True or write(line): see the module docstring
    parallel: data-parallel training (siamese.training.distributed); `batches` then yields this rank's
    share of each global batch and the loss runs under DistributedDataParallel
    """
    if config.epochs is None:
        raise SiameseError("TrainConfig.epochs is None: pretrain and finetune fill in their default; "
                           "give fit a config with epochs")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = TrainState()
    shown = (callable(progress) or bool(progress)) and (parallel is None or parallel.is_main)
    bars = shown and stderr_is_terminal()
    write = progress if callable(progress) else logger.info
    say = write if shown and not bars else logger.info
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, generator)
        say(f"{description}: resuming after epoch {state.epoch}/{config.epochs}")
    total_steps = config.epochs * steps_per_epoch
    callbacks = [c for c in callbacks if parallel is None or parallel.is_main or not getattr(c, "main_only", False)]
    step = parallel.wrap(model) if parallel is not None else None

    while state.epoch < config.epochs and not state.stop:
        model.train()
        started, running, parts_sum = time.perf_counter(), 0.0, {}
        bar = tqdm(total=steps_per_epoch, desc=f"{description} {state.epoch + 1}/{config.epochs}",
                   disable=not bars, leave=False, dynamic_ncols=True)
        loss_generator = parallel.generator(config.seed, state.epoch) if parallel is not None else generator
        for i, batch in enumerate(batches(state.epoch, generator)):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, total_steps, config)
            if step is not None:
                loss, parts = step(batch_loss, batch, loss_generator)
            else:
                loss, parts = batch_loss(model, batch, generator)
            if not torch.isfinite(loss):
                raise SiameseError(f"training diverged (loss={loss.item()}) at epoch {state.epoch + 1}; "
                                   "lower the learning rate (--lr) or the loss weights")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            state.step += 1
            running += parts.pop("loss") if "loss" in parts else loss.item()
            for key, value in parts.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + value
            bar.update()
            bar.set_postfix(loss=f"{running / (i + 1):.4g}")
        bar.close()
        steps = max(1, i + 1)
        record = {"epoch": state.epoch + 1, "train_loss": running / steps,
                  **{k: v / steps for k, v in parts_sum.items()}}
        if parallel is not None:
            record.update(parallel.mean({k: v for k, v in record.items() if k != "epoch"}))
        if validate is not None:
            model.eval()
            with torch.no_grad():
                record["val_loss"] = float(validate(model))
        record["lr"] = optimizer.param_groups[0]["lr"]
        record["seconds"] = time.perf_counter() - started
        record["items_per_second"] = steps * config.batch_size / record["seconds"]
        state.epoch += 1
        state.history.append(record)
        for callback in callbacks:
            callback.on_epoch_end(state, model, optimizer, generator)
        say(epoch_line(description, state, config.epochs))
    if state.stop and state.epoch < config.epochs:
        say(f"{description}: stopped early after epoch {state.epoch}/{config.epochs} (no better validation loss)")
    if parallel is not None:
        parallel.unwrap(model)
    model.eval()
    return state


def shuffled_batches(n: int, batch_size: int, parallel: Parallel | None = None) -> Batches:
    """Index batches over range(n), reshuffled every epoch; a trailing batch of 1 is dropped (BatchNorm).

    With `parallel`, every rank draws the same permutation and keeps its share of each batch; a
    trailing batch that cannot give every rank 2 items is dropped."""
    world = parallel.world_size if parallel is not None else 1

    def batches(epoch: int, generator: torch.Generator):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            chunk = order[start:start + batch_size]
            if len(chunk) >= 2 * world:
                yield parallel.shard(chunk) if parallel is not None else chunk

    return batches


def steps_for(n: int, batch_size: int, parallel: Parallel | None = None) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 * (parallel.world_size if parallel is not None else 1) else 0)


# ---------------------------------------------------------------- callbacks


class EarlyStopping:
    """Stop when val_loss has not improved for `patience` epochs (decided from history alone)."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, state: TrainState, model, optimizer, generator) -> None:
        losses = [r["val_loss"] for r in state.history if "val_loss" in r]
        if len(losses) > self.patience and min(losses[-self.patience:]) >= min(losses[:-self.patience]):
            logger.info("early stopping after epoch %d", state.epoch)
            state.stop = True


class HistoryCSV:
    """Rewrite history.csv after each epoch (atomic), one row per epoch."""

    main_only = True  # data-parallel training: rank 0 writes

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_epoch_end(self, state: TrainState, model, optimizer, generator) -> None:
        write_history(self.path, state.history)


class Checkpointer:
    """Save model, optimizer, RNG and history after each epoch so `resume` continues exactly."""

    main_only = True  # data-parallel training: rank 0 writes

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def on_epoch_end(self, state: TrainState, model, optimizer, generator) -> None:
        save_checkpoint(self.directory, state, model, optimizer, generator)


def write_history(path: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for record in history:
        columns += [k for k in record if k not in columns]
    with atomic_file(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


# ---------------------------------------------------------------- checkpoints (no pickle)


def has_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / "state.json").is_file()


def save_checkpoint(directory: Path, state: TrainState, model: nn.Module,
                    optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
    tensors = {f"model/{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for pid, values in optim["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim/{pid}/{name}"] = value.contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    tensors["rng/generator"] = generator.get_state()
    tensors["rng/torch"] = torch.get_rng_state()
    meta = {"epoch": state.epoch, "step": state.step, "stop": state.stop, "history": state.history,
            "param_groups": optim["param_groups"], "optim_scalars": scalars}
    with atomic_directory(directory, "checkpoint") as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))


_STATE_FIELDS = {"epoch": int, "step": int, "stop": bool, "history": list, "param_groups": list, "optim_scalars": dict}


def _check_state(meta: dict, directory: Path) -> None:
    """state.json holds every field `load_checkpoint` reads, each of the type it was saved with."""
    for name, kind in _STATE_FIELDS.items():
        value = meta.get(name)
        entries = value if isinstance(value, list) else []
        if (not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0))
                or not all(isinstance(entry, dict) for entry in entries)):
            raise SiameseError(f"the training checkpoint in {directory} is incomplete or damaged (state.json field "
                               f"{name!r} is missing or invalid); delete it to start over")


def load_checkpoint(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator) -> TrainState:
    directory = Path(directory)
    try:
        meta = read_json(directory / "state.json", f"the training checkpoint {directory / 'state.json'}",
                         "delete the checkpoint folder to start over", error=SiameseError)
    except FileNotFoundError:
        raise SiameseError(f"the training checkpoint in {directory} is incomplete or damaged (no state.json); "
                           "delete it to start over") from None
    _check_state(meta, directory)
    try:
        tensors = load_file(str(directory / "state.safetensors"))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise SiameseError(f"cannot read the training checkpoint in {directory}: {exc}; "
                           "delete it to start over") from None
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    except RuntimeError as exc:
        raise SiameseError(f"checkpoint in {directory} does not fit this model ({str(exc)[:120]}); "
                           "resume with the same settings or delete the checkpoint") from None
    try:
        optim_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, pid, name = key.split("/", 2)
                optim_state.setdefault(int(pid), {})[name] = value
        for pid, values in meta["optim_scalars"].items():
            optim_state.setdefault(int(pid), {}).update(values)
        optimizer.load_state_dict({"state": optim_state, "param_groups": meta["param_groups"]})
        generator.set_state(tensors["rng/generator"])
        torch.set_rng_state(tensors["rng/torch"])
        return TrainState(epoch=int(meta["epoch"]), step=int(meta["step"]), history=list(meta["history"]),
                          stop=meta["stop"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise SiameseError(f"the training checkpoint in {directory} is incomplete or damaged ({type(exc).__name__}: "
                           f"{str(exc)[:80]}); delete it to start over") from None
