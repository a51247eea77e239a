"""A reader loading and searching an index while another process appends to it and saves it sees
the old or the new version, whole, and never an error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import reliability_lib as lib
from index import VectorIndex
from index.atomic import atomic_directory, read_consistently
from index.errors import VectorIndexError

WORKER = Path(__file__).with_name("concurrent_worker.py")


def test_reader_never_sees_a_half_written_index(tmp_path):
    target = tmp_path / "idx"
    lib.index_version(0).save(target)
    run = [sys.executable, str(WORKER)]
    writer = subprocess.Popen(run + ["writer", str(target), "40"], cwd=WORKER.parent, stderr=subprocess.PIPE, text=True)
    reader = subprocess.run(run + ["reader", str(target), "20"], cwd=WORKER.parent, capture_output=True, text=True,
                            timeout=300)
    assert writer.wait(timeout=300) == 0, writer.stderr.read()[-2000:]
    writer.stderr.close()
    assert reader.returncode == 0, reader.stderr[-2000:]
    report = json.loads(reader.stdout.strip().splitlines()[-1])
    assert report["n_errors"] == 0, report["errors"]
    assert report["loads"] >= 20 and len(report["versions"]) >= 3, report  # the two really overlapped
    assert lib.check_index(VectorIndex.load(target)) == 40


def test_a_read_that_straddles_a_swap_is_repeated(tmp_path):
    target = tmp_path / "d"
    with atomic_directory(target, "reconstructions") as tmp:
        (tmp / "v").write_text("1")
    calls = []

    def read():
        calls.append(1)
        if len(calls) == 1:  # another process replaces the directory while this read runs
            with atomic_directory(target, "reconstructions") as tmp:
                (tmp / "v").write_text("2")
            raise VectorIndexError("checksum mismatch")
        return (target / "v").read_text()

    assert read_consistently(target, read, (VectorIndexError,)) == "2" and len(calls) == 2


def test_a_failure_without_a_swap_is_raised_at_once(tmp_path):
    calls = []

    def read():
        calls.append(1)
        raise VectorIndexError("really damaged")

    with pytest.raises(VectorIndexError, match="really damaged"):
        read_consistently(tmp_path, read, (VectorIndexError,))
    assert len(calls) == 1
