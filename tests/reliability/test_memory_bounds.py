"""Embedding and index building stream over a memory-mapped .npy chunk by chunk: peak memory
follows the chunk size, not the number of items."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DIM, CHUNK = 2048, 1024
SMALL, LARGE = 8_500, 17_000  # 70 MB and 139 MB of float32 input (both above the 64 MB block of the NaN scan)
PROBE = Path(__file__).with_name("memory_probe.py")

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read memory")


@pytest.fixture(scope="module")
def peaks(tmp_path_factory) -> dict[str, dict[int, int]]:
    """Peak memory growth of each kind of work over SMALL and LARGE memory-mapped items."""
    root, rng = tmp_path_factory.mktemp("memmap"), np.random.default_rng(0)
    for n in (SMALL, LARGE):
        out = np.lib.format.open_memmap(root / f"x{n}.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
        for start in range(0, n, 5000):
            out[start:start + 5000] = rng.random((min(5000, n - start), DIM), dtype=np.float32)
        del out
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    run = subprocess.run([sys.executable, str(PROBE), str(root), json.dumps([SMALL, LARGE]), str(DIM), str(CHUNK)],
                         cwd=PROBE.parent, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    return {work: {int(n): v for n, v in by_n.items()} for work, by_n in measured.items()}


@pytest.mark.parametrize("work", ["embed", "build_index"])
def test_peak_memory_follows_the_chunk_not_the_input(work, peaks):
    small, large = peaks[work][SMALL], peaks[work][LARGE]
    input_growth = (LARGE - SMALL) * DIM * 4  # 70 MB more input
    # what may grow with n: the output (n x 4 floats) and an index's vectors and per-item
    # metadata (keys, labels), all far smaller than the input
    assert large - small < 0.1 * input_growth, peaks[work]
    assert large < 0.4 * LARGE * DIM * 4, peaks[work]


def test_the_measurement_sees_a_whole_copy(peaks):
    """Reading the whole file into memory does register (so the bounds above mean something)."""
    assert peaks["whole copy"][LARGE] > 0.9 * LARGE * DIM * 4
