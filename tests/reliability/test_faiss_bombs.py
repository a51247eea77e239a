"""A small faiss file whose arrays claim more than the file holds (checksums rewritten to match) is
refused in one line before faiss allocates: peak memory of the load stays far below the claim."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index import VectorIndex

LOAD = """
import sys
from index import VectorIndex, VectorIndexError
try:
    VectorIndex.load(sys.argv[1])
except VectorIndexError as exc:
    print(exc)
    sys.exit(2)
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
    proc = subprocess.Popen([sys.executable, "-c", LOAD, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak resident memory
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close(), proc.stderr.close()
    tally["fuzz_cases"] += 1
    assert os.waitstatus_to_exitcode(status) == 2 and "larger than the file itself" in out, out + err
    tally["rejected"] += 1
    assert usage.ru_maxrss < 1024 * 1024, f"peak {usage.ru_maxrss} KiB"  # the claim alone is 2 GiB
