"""Kill -9 during saves and appends, 20 times each: the previous or the new version loads, never a mix."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index import VectorIndex

KILLS = 20
HARNESS = Path(__file__).with_name("crash_harness.py")


SCENARIOS = {"model": 11, "index": 12, "append": 13}  # scenario: seed of its kill times


@pytest.fixture(scope="module")
def harness_runs(tmp_path_factory) -> dict[str, subprocess.Popen]:
    """The three harnesses run side by side (they mostly wait for their next kill)."""
    root = tmp_path_factory.mktemp("crash")
    runs = {name: subprocess.Popen([sys.executable, str(HARNESS), name, str(root / name), str(seed), str(KILLS)],
                                   cwd=HARNESS.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, seed in SCENARIOS.items()}
    yield runs
    for run in runs.values():
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sigkill_mid_save_leaves_old_or_new_version(scenario, harness_runs, tally):
    stdout, stderr = harness_runs[scenario].communicate(timeout=300)
    assert harness_runs[scenario].returncode == 0, stderr[-2000:]
    records = json.loads(stdout.strip().splitlines()[-1])["records"]
    tally["kills"] += len(records)
    tally["kills_survived"] += sum(r["killed"] and r["ok"] for r in records)
    tally["data_lost"] += sum(not r["ok"] for r in records)
    failed = [r for r in records if not r["ok"]]
    assert not failed, failed
    assert len(records) == KILLS and all(r["killed"] for r in records)
    assert sum(r["mid_save"] for r in records) >= KILLS // 2, "kills should mostly land inside a save"
    assert records[-1]["found"] > 0, "some saves must have completed between kills"


def test_saved_metadata_is_wal_sqlite_inside_the_checksummed_directory(tmp_path):
    index = VectorIndex.build(np.eye(4, dtype=np.float32), keys=list("abcd"))
    index.save(tmp_path / "idx")
    db = tmp_path / "idx" / "meta.sqlite"
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert "meta.sqlite" in manifest["files"]  # swapped in with the directory, checksum-verified on load
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    before = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert len(VectorIndex.load(tmp_path / "idx")) == 4
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == before  # loading writes no -wal/-shm files
