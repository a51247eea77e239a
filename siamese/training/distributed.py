"""Data-parallel training across processes: torchrun / `--nproc N`, DistributedDataParallel.

Every process (rank) holds the whole model and trains on its share of each *global* batch
(`--batch-size` is the global batch, so results do not depend on the number of processes).
All ranks draw the same permutation from the same seeded generator and keep every
`world_size`-th item of each batch; DistributedDataParallel averages the gradients, so each
optimizer step is the step one process would take on the whole batch. Batch-norm statistics are
computed over the global batch too (torch's SyncBatchNorm is GPU-only, so `GlobalBatchNorm`
does it with one differentiable all-reduce per layer); fine-tuning gathers embeddings with
pytorch-metric-learning's DistributedLossWrapper/DistributedMinerWrapper so pairs are formed
and mined across all ranks. Only rank 0 prints, shows progress bars and writes files.

The process group comes from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT): gloo for CPU tensors, plus nccl for CUDA tensors when CUDA is present.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import SiameseError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parallel:
    """This process's place in the group: rank in [0, world_size)."""

    rank: int
    world_size: int

    @classmethod
    def current(cls) -> "Parallel | None":
        """The initialised torch.distributed group with more than one process, else None."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's items of a global batch (every world_size-th, sizes differ by at most 1)."""
        return batch[self.rank::self.world_size]

    def generator(self, seed: int, epoch: int) -> torch.Generator:
        """Generator for per-item noise/augmentation in the loss: different on every rank, and a
        function of (seed, epoch, rank) alone, so resuming at an epoch boundary stays exact
        while the shared batch generator stays identical across ranks."""
        state = np.random.SeedSequence([seed, epoch, self.rank]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel over the whole loss computation, with batch norm made global.

        Call the result as `step(batch_loss, batch, generator)` -> batch_loss(model, batch, generator).
        """
        for module in model.modules():
            global_class = _GLOBAL_NORMS.get(type(module))
            if global_class is not None:
                module.__class__ = global_class
        return nn.parallel.DistributedDataParallel(_LossCall(model))

    def unwrap(self, model: nn.Module) -> None:
        """Give batch-norm layers their ordinary class back (after training)."""
        for module in model.modules():
            plain = _PLAIN_NORMS.get(type(module))
            if plain is not None:
                module.__class__ = plain

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written the files the others read next)."""
        dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average floats over the ranks (for the logged history)."""
        if not values:
            return {}
        tensor = torch.tensor(list(values.values()), dtype=torch.float64)
        dist.all_reduce(tensor)
        return {key: float(v) / self.world_size for key, v in zip(values, tensor.tolist())}


class _LossCall(nn.Module):
    """Lets DDP see a whole training step's loss as one forward call, so its gradient hooks fire."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch_loss: Callable, batch: Any, generator: torch.Generator):
        return batch_loss(self.model, batch, generator)


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient (the sum of every rank's gradient)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _GlobalBatchNormMixin:
    """Training-mode batch norm over the items of all ranks (statistics all-reduced with
    autograd, as SyncBatchNorm does on GPUs); evaluation mode is the ordinary layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_tensor([x.numel() / channels])])
        total = _SumOverRanks.apply(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(factor * mean)
                self.running_var.mul_(1 - factor).add_(factor * var * count / (count - 1).clamp_min(1))
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


class GlobalBatchNorm1d(_GlobalBatchNormMixin, nn.BatchNorm1d):
    pass


class GlobalBatchNorm2d(_GlobalBatchNormMixin, nn.BatchNorm2d):
    pass


_GLOBAL_NORMS = {nn.BatchNorm1d: GlobalBatchNorm1d, nn.BatchNorm2d: GlobalBatchNorm2d}
_PLAIN_NORMS = {v: k for k, v in _GLOBAL_NORMS.items()}


# ---------------------------------------------------------------- process group and launching


def launched() -> bool:
    """True inside a process started by torchrun (or any launcher that sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(backend: str | None = None) -> Parallel:
    """Join the process group described by torchrun's environment variables."""
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise SiameseError(f"distributed training needs the environment torchrun sets; {', '.join(missing)} "
                           "missing: launch with torchrun --nproc_per_node=N or pass --nproc N")
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    parallel = Parallel(dist.get_rank(), dist.get_world_size())
    logger.info("rank %d of %d joined (%s)", parallel.rank, parallel.world_size, backend)
    return parallel


@contextlib.contextmanager
def session(quiet_others: bool = True) -> Iterator[Parallel | None]:
    """Inside torchrun: join the group, silence stdout and logging on ranks other than 0, and
    leave the group together at the end. Outside: a no-op yielding None."""
    if not launched():
        yield None
        return
    parallel = init_from_env()
    devnull = None
    if quiet_others and not parallel.is_main:
        devnull = open(os.devnull, "w")
        logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(devnull) if devnull else contextlib.nullcontext():
            yield parallel
        dist.barrier()
    finally:
        if devnull:
            devnull.close()
        dist.destroy_process_group()


def run_command(command: Callable[[Any], int], args: Any, argv: Sequence[str]) -> int:
    """Run a CLI command: relaunched under torchrun for `--nproc N` (N > 1), inside the process
    group when torchrun started this process, plainly otherwise."""
    nproc = getattr(args, "nproc", None)
    if nproc is not None and nproc < 1:
        raise SiameseError(f"--nproc must be >= 1, got {nproc}")
    if nproc is not None and nproc > 1 and not launched():
        return relaunch(_without_nproc(argv), nproc)
    with session():
        return command(args)


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """argv minus `--nproc N` (torchrun would read it as an abbreviation of its own option)."""
    kept, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--nproc="):
            skip = False
        elif arg == "--nproc":
            skip = True
        else:
            kept.append(arg)
    return kept


def relaunch(argv: Sequence[str], nproc: int, module: str = "siamese") -> int:
    """Run `python -m <module> argv` in `nproc` processes under torchrun on this machine."""
    if nproc < 1:
        raise SiameseError(f"--nproc must be >= 1, got {nproc}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", module, *argv]
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # share the cores
    logger.info("launching %s", " ".join(command))
    return subprocess.call(command, env=env)
