"""A small faiss file whose arrays claim more than the file holds (checksums rewritten to match) is
refused in one line before faiss allocates: peak memory of the load stays far below the claim."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index import VectorIndex

LOAD = """
import sys
from pathlib import Path
from index import VectorIndex, VectorIndexError
def peak_kib():  # this process's own high-water mark (ru_maxrss of a child also counts its parent's fork)
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return int(line.split()[1])
try:
    VectorIndex.load(sys.argv[1])
except VectorIndexError as exc:
    print(peak_kib(), exc)
    sys.exit(2)
print(peak_kib(), "loaded")
"""
CLAIM = 2**29  # elements; as float32 codes 2 GiB


def _bomb(tmp_path: Path, kind: str, honest_size: int) -> Path:
    """A saved index whose first array of `honest_size` elements is re-labelled as CLAIM elements."""
    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    target = tmp_path / kind
    VectorIndex.build(x, kind=kind, **({"nlist": 4} if kind == "ivf" else {})).save(target)
    data = bytearray((target / "vectors.faiss").read_bytes())
    at = data.find(struct.pack("<Q", honest_size))
    assert at > 0, "the array length was not found in the file"
    data[at:at + 8] = struct.pack("<Q", CLAIM)
    (target / "vectors.faiss").write_bytes(bytes(data))
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"]["vectors.faiss"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize("kind, honest_size", [("flat", 300 * 8), ("ivf", 4 * 8)])  # codes / centroids, in 4-byte words
def test_a_faiss_file_claiming_huge_arrays_is_refused_before_allocating(kind, honest_size, tmp_path, tally):
    target = _bomb(tmp_path, kind, honest_size)
    run = subprocess.run([sys.executable, "-c", LOAD, str(target)], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    peak_kib, _, message = run.stdout.partition(" ")
    tally["fuzz_cases"] += 1
    assert run.returncode == 2 and "larger than the file itself" in message, run.stdout + run.stderr
    tally["rejected"] += 1
    assert int(peak_kib) < 1024 * 1024, f"peak {peak_kib} KiB"  # the claim alone is 2 GiB
