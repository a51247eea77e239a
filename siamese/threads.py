"""How many CPU threads torch and faiss should use here, and why.

torch and faiss default to one OpenMP thread per logical CPU. On a machine that other work keeps
busy that oversubscribes the cores: every parallel region waits for its slowest thread, and a
thread sharing its core with another process spins or sleeps at each barrier. On a 2-core machine
kept busy by other jobs, a pretraining step of the demo's digits autoencoder took 4-20x longer with
2 threads than with 1 (measured side by side).

`choose_threads` picks, in this order:

1. an explicit request (`--threads N`);
2. OMP_NUM_THREADS, when the user set it (torchrun and `--nproc` set it to share the cores);
3. the physical cores this process may use (hyper-threads share one core's arithmetic units, so a
   second OpenMP thread per core rarely helps dense maths), capped by the CPU affinity mask and a
   cgroup CPU quota, divided among the processes of a data-parallel run on this machine
   (LOCAL_WORLD_SIZE), minus the cores other work keeps busy.

"Other work" is the 1-minute load average, but only as far as the tasks runnable at this moment
confirm it (the median of a few readings of /proc/loadavg, ourselves excluded): the average alone
still counts a run that has just finished (say the previous command of a script) for about a
minute after it ended, while the instant count alone misses work that runs in bursts. Work that
started only seconds ago is missed; `--threads` overrides. Busy cores are rounded to the nearest
whole core (a core more than half busy is left alone) and at least one thread remains.

No torch or faiss import here: choosing is cheap, `apply_threads` imports them when it runs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import SiameseError

logger = logging.getLogger(__name__)
_SYS_CPU = Path("/sys/devices/system/cpu")
_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
_LOADAVG = Path("/proc/loadavg")
_CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and the short reason for it, e.g. "2 threads (2 physical cores, load 0.3)"."""

    count: int
    reason: str

    def __str__(self) -> str:
        return self.reason


def choose_threads(requested: int | None = None) -> ThreadChoice:
    """The thread count for torch and faiss (see the module docstring for the rules)."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise SiameseError(f"threads must be a positive integer, got {requested!r}")
        return ThreadChoice(requested, f"{_threads(requested)} (--threads)")
    from_env = _omp_num_threads()
    if from_env is not None:
        return ThreadChoice(from_env, f"{_threads(from_env)} (OMP_NUM_THREADS={from_env})")

    allowed = usable_cpus()
    cores = physical_cores(allowed)
    if cores is None:  # topology unknown: count logical CPUs
        cores, what = len(allowed), f"{len(allowed)} CPU{'s' if len(allowed) != 1 else ''}"
    else:
        what = f"{cores} physical core{'s' if cores != 1 else ''}"
    quota = cpu_quota()
    if quota is not None and quota < cores:
        cores, what = quota, f"{what}, CPU quota {quota}"
    processes = _local_processes()
    share = max(1, cores // processes)
    if processes > 1:
        what = f"{what} shared by {processes} processes"
    busy = other_work(processes - 1)
    count = max(1, share - int(busy + 0.5))
    if count < share:
        return ThreadChoice(count, f"{_threads(count)} ({what} but load {busy:.1f}: machine busy)")
    return ThreadChoice(count, f"{_threads(count)} ({what}, load {busy:.1f})")


def apply_threads(choice: ThreadChoice) -> None:
    """Make torch and faiss use `choice.count` threads (imports them)."""
    import faiss
    import torch

    torch.set_num_threads(choice.count)
    faiss.omp_set_num_threads(choice.count)
    logger.info("using %s", choice.reason)


def usable_cpus() -> list[int]:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int]) -> int | None:
    """Distinct physical cores among the logical `cpus`, or None when the topology is unknown."""
    cores = set()
    for cpu in cpus:
        topology = _SYS_CPU / f"cpu{cpu}" / "topology"
        siblings = _read(topology / "core_cpus_list") or _read(topology / "thread_siblings_list")
        if siblings is None:
            return _cpuinfo_cores(cpus)
        cores.add(siblings)
    return len(cores) or None


def _cpuinfo_cores(cpus: list[int]) -> int | None:
    """Distinct (physical id, core id) of `cpus` in /proc/cpuinfo (x86); None without those fields."""
    text = _read(_CPUINFO)
    if text is None:
        return None
    wanted, cores = set(cpus), set()
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "processor" not in fields:
            continue
        if "core id" not in fields:
            return None
        if fields["processor"].isdigit() and int(fields["processor"]) in wanted:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) or None


def cpu_quota() -> int | None:
    """CPUs' worth of time a cgroup v2 quota allows (rounded up), or None without a quota."""
    text = _read(_CPU_MAX)
    try:
        quota, period = text.split()[:2]  # type: ignore[union-attr]
        return max(1, math.ceil(int(quota) / int(period)))
    except (AttributeError, ValueError, ZeroDivisionError):  # no file, "max ...", or garbage
        return None


def other_work(siblings: int = 0) -> float:
    """Cores other processes keep busy: the 1-minute load average, capped by the tasks runnable now
    (minus this process and its `siblings` of a data-parallel run)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    running = running_now()
    if running is not None:
        load = min(load, max(0, running - 1))
    return max(0.0, load - siblings)


def running_now(samples: int = 5, interval: float = 0.004) -> int | None:
    """Tasks runnable now, counting this one: the median of a few readings of /proc/loadavg's
    fourth field over `samples * interval` seconds (steady work shows in every reading, while a
    kernel thread or a short command caught in one reading does not count)."""
    counts = []
    for i in range(samples):
        if i:
            time.sleep(interval)
        text = _read(_LOADAVG)
        try:
            counts.append(int(text.split()[3].split("/")[0]))  # type: ignore[union-attr]
        except (AttributeError, IndexError, ValueError):
            return None
    return sorted(counts)[len(counts) // 2] if counts else None


def _omp_num_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if not value:
        return None
    if value.isdigit() and int(value) >= 1:
        return int(value)
    logger.warning("ignoring OMP_NUM_THREADS=%r (not a positive integer)", os.environ["OMP_NUM_THREADS"])
    return None


def _local_processes() -> int:
    """Processes of one data-parallel run on this machine (torchrun's LOCAL_WORLD_SIZE), else 1."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "1")
    return int(value) if value.isdigit() and int(value) >= 1 else 1


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
