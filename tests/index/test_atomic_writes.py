"""Temporaries left beside a target by a writer killed mid-save are cleaned up by the next save;
those of a live writer, another target, or a target that does not exist yet are kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from index.atomic import _temp_prefix, atomic_directory, atomic_file


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("writer", ["directory", "file"])
def test_next_save_removes_temporaries_of_killed_writers(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "thing"
    own = _temp_prefix(target)  # .thing.tmp-HOST-PID-
    host_prefix = own.rsplit("-", 2)[0]
    dead = tmp_path / f"{host_prefix}-{_dead_pid()}-abc"
    dead.mkdir()
    (dead / "part").write_text("half written")
    dead_file = tmp_path / f"{host_prefix}-{_dead_pid()}-xyz"
    dead_file.write_text("half")
    live = tmp_path / f"{own}live"  # this very process: a save in progress
    live.mkdir()
    foreign = tmp_path / ".thing.tmp-otherhost-1-abc"  # another host's writer may still be alive
    foreign.mkdir()
    other = tmp_path / f".other{host_prefix[6:]}-{_dead_pid()}-abc"  # another target
    other.mkdir()

    def save(text: str) -> None:
        if writer == "directory":
            with atomic_directory(target, "reconstructions") as tmp:
                (tmp / "data").write_text(text)
        else:
            with atomic_file(target, "w") as fh:
                fh.write(text)

    save("v1")  # the target did not exist: a leftover might have been its only copy, keep all
    assert dead.exists() and dead_file.exists()
    save("v2")
    assert not dead.exists() and not dead_file.exists()
    assert live.exists() and foreign.exists() and other.exists()
    assert (target / "data" if writer == "directory" else target).read_text() == "v2"
