"""Concurrent writers lose nothing (a lock per index, a lost-update check on save), --untrusted
works on every command that opens an index, and the environment's failures (disk full, read-only
file system, a closed pipe) are one line with the old data intact."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index import VectorIndex, VectorIndexError
from index.locking import write_lock
from siamese.cli import main

ROWS, ADD = 64, 20
SIAMESE = [sys.executable, "-m", "siamese"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    """A tiny model, its data, an index of it and three batches of new items with distinct keys."""
    root = tmp_path_factory.mktemp("writers")
    model_dir, _ = tiny_model_dir
    rng = np.random.default_rng(1)
    data = root / "data.npz"
    np.savez(data, x=rng.standard_normal((ROWS, 6)).astype(np.float32), y=np.arange(ROWS) % 2)
    assert main(["index", "build", str(model_dir), str(data), "--out", str(root / "idx"), "-q"]) == 0
    for name in "abc":
        np.savez(root / f"{name}.npz", x=rng.standard_normal((ADD, 6)).astype(np.float32),
                 keys=np.array([f"{name}{i}" for i in range(ADD)]))
    return {"root": root, "model": model_dir, "data": data, "index": root / "idx"}


def _fresh_index(workspace, tmp_path: Path) -> Path:
    target = tmp_path / "idx"
    shutil.copytree(workspace["index"], target)
    return target


def test_concurrent_adds_keep_every_item(workspace, tmp_path, tally):
    """Three `siamese index add` processes at once on one index: every item arrives."""
    target = _fresh_index(workspace, tmp_path)
    adds = [subprocess.Popen(SIAMESE + ["index", "add", str(target), str(workspace["model"]),
                                        str(workspace["root"] / f"{name}.npz"), "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in "abc"]
    for add in adds:
        out, err = add.communicate(timeout=300)
        assert add.returncode == 0, err
    index = VectorIndex.load(target)
    keys = set(index.keys_for_ids(index.ids).tolist())
    tally["fuzz_cases"] += 1
    lost = {f"{n}{i}" for n in "abc" for i in range(ADD)} - keys
    tally["data_lost"] += len(lost)
    assert not lost and len(index) == ROWS + 3 * ADD


LOCKED_ADDER = """
import sys, numpy as np
from index import VectorIndex
from index.locking import write_lock
target, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for r in range(rounds):
    with write_lock(target):
        index = VectorIndex.load(target)
        index.add(np.full((5, 3), r, np.float32), keys=[f"{name}-{r}-{i}" for i in range(5)])
        index.save(target)
"""


@pytest.mark.parametrize("round_", range(3))
def test_rounds_of_concurrent_locked_adds_are_exact(round_, workspace, tmp_path, tally):
    """The lock itself under contention (index package only, many saves): an exact count each round."""
    target = _fresh_index(workspace, tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", LOCKED_ADDER, str(target), name, "4"], stderr=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2]) for name in "abc"]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        proc.stderr.close()
    tally["fuzz_cases"] += 1
    missing = ROWS + 3 * 4 * 5 - len(VectorIndex.load(target))
    tally["data_lost"] += missing
    assert missing == 0


HOLDER = """
import sys, time
from index.locking import write_lock
with write_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_waiting_writer_gives_up_naming_the_holder(workspace, tmp_path, capsys, tally):
    target = _fresh_index(workspace, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["index", "add", str(target), str(workspace["model"]), str(workspace["root"] / "a.npz"), "-q",
                     "--lock-timeout", "0.5"])
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    err = capsys.readouterr().err
    tally["fuzz_cases"] += 1
    assert code == 2 and err.count("\n") == 1, err
    assert f"is being written by pid {holder.pid}" in err and "--lock-timeout" in err
    tally["rejected"] += 1
    assert len(VectorIndex.load(target)) == ROWS


def test_saving_over_a_newer_version_is_refused(workspace, tmp_path):
    target = _fresh_index(workspace, tmp_path)
    first, second = VectorIndex.load(target), VectorIndex.load(target)
    first.add(np.ones((2, 3), np.float32), keys=["x1", "x2"])
    first.save(target)
    second.add(np.ones((1, 3), np.float32), keys=["y1"])
    with pytest.raises(VectorIndexError, match="saved by another writer after this index was loaded"):
        second.save(target)
    assert len(VectorIndex.load(target)) == ROWS + 2
    second.save(tmp_path / "elsewhere")  # a new path is always fine
    first.add(np.zeros((1, 3), np.float32), keys=["x3"])
    first.save(target)  # the writer of the current version may go on saving
    assert len(VectorIndex.load(target)) == ROWS + 3


def _break_faiss_file(target: Path) -> None:
    (target / "vectors.faiss").write_bytes(b"not a faiss file at all")


UNTRUSTED_COMMANDS = {
    "index info": "index info {index}",
    "index add": "index add {index} {model} {root}/b.npz",
    "index rebuild": "index rebuild {index} {model} {data}",
    "query": "query {index} {model} --key 3 -k 2",
    "classify": "classify {index} {model} {data} --propagate off",
    "anomaly": "anomaly {model} {data} --index {index} --out {tmp}/scores.csv",
    "plot neighbors": "plot neighbors {model} {data} --index {index} -n 2 -k 2 --out {tmp}/n.png",
    "export": "export {model} {index} --out {tmp}/bundle",
}


@pytest.mark.parametrize("command", sorted(UNTRUSTED_COMMANDS))
def test_untrusted_never_parses_the_faiss_file(command, workspace, tmp_path, capsys, tally):
    target = _fresh_index(workspace, tmp_path)
    _break_faiss_file(target)
    line = UNTRUSTED_COMMANDS[command].format(index=target, model=workspace["model"], data=workspace["data"],
                                              root=workspace["root"], tmp=tmp_path)
    tally["fuzz_cases"] += 2
    assert main(line.split() + ["-q"]) == 2  # trusted: the damaged file is caught in one line
    assert capsys.readouterr().err.count("\n") == 1
    tally["rejected"] += 1
    code = main(line.split() + ["-q", "--untrusted"])
    assert code == 0, capsys.readouterr().err


def test_merge_refuses_untrusted_in_one_line(workspace, tmp_path, capsys):
    assert main(["index", "merge", str(workspace["index"]), "--out", str(tmp_path / "m"), "--untrusted"]) == 2
    err = capsys.readouterr().err
    assert "cannot take --untrusted" in err and err.count("\n") == 1 and not (tmp_path / "m").exists()


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k none /mnt 2>/dev/null || mount -t tmpfs -o size=64k none /tmp"],
                           capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs `unshare` to mount a small private tmpfs")


def _run_in_namespace(workspace, tmp_path: Path, cases: list[tuple[str, bool, list[str]]]) -> list[dict]:
    """Each case (tmpfs size, read-only?, argv) runs in its own private tmpfs holding a copy of the
    index as `idx`; all cases share one interpreter (environment_worker.py)."""
    lines, specs = [], []
    for i, (size, read_only, argv) in enumerate(cases):
        mount = tmp_path / f"fs{i}"
        mount.mkdir()
        lines.append(f"mount -t tmpfs -o size={size} none {mount} && cp -r {workspace['index']} {mount}/idx")
        if read_only:
            lines.append(f"mount -o remount,ro {mount}")
        specs.append({"cwd": str(mount), "argv": argv + ["-q"]})
    (tmp_path / "cases.json").write_text(json.dumps(specs))
    worker = Path(__file__).with_name("environment_worker.py")
    lines.append(f"cd {Path(__file__).resolve().parents[2]} && {sys.executable} {worker} {tmp_path / 'cases.json'}")
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-e", "-c", "\n".join(lines)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@needs_mount
def test_disk_full_and_read_only_are_one_line_and_the_index_survives(workspace, tmp_path, tally):
    model, data, new = str(workspace["model"]), str(workspace["data"]), str(workspace["root"] / "a.npz")
    add = ["index", "add", "idx", model, new]
    pages = sum(-(-f.stat().st_size // 4096) for f in workspace["index"].iterdir())  # tmpfs counts 4 KiB pages
    # room for the old copy and 1/4, 1/2, 3/4 of the new one: the disk fills up at different files of the save
    full = [(f"{4 * (pages + pages * q // 4 + 1)}k", False, add) for q in (1, 2, 3)]
    read_only = [("2m", True, argv) for argv in (
        add, ["pretrain", data, "--epochs", "1", "--out", "m2"], ["embed", model, data, "--out", "z.npz"],
        ["classify", "idx", model, data, "--out", "p.csv"], ["export", model, "idx", "--out", "b"],
        ["index", "build", model, data, "--out", "i2"])]
    results = _run_in_namespace(workspace, tmp_path, full + read_only)
    for (size, ro, argv), result in zip(full + read_only, results):
        tally["fuzz_cases"] += 1
        if result["code"] == 0 and not ro:  # it fitted: then the new version is whole
            assert result["count"] == ROWS + ADD
            continue
        cause = "Read-only file system" if ro else "No space left on device"
        assert result["code"] == 2 and result["stderr"].count("\n") == 1 and cause in result["stderr"], (argv, result)
        tally["rejected"] += 1
        assert result["count"] == ROWS  # the old version, whole
    assert sum(r["code"] == 2 for r in results[:3]) >= 2  # the sizes really made the disk run full


def test_a_closed_pipe_is_not_an_error(workspace):
    info = subprocess.Popen(SIAMESE + ["index", "info", str(workspace["index"])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    info.stdout.close()  # the reader left at once, like `| head -0`
    assert info.wait(timeout=300) == 0
    assert info.stderr.read() == b""


def test_a_long_key_gives_a_bounded_file_name(workspace, tmp_path, capsys):
    data = tmp_path / "long.npz"
    np.savez(data, x=np.zeros((2, 6), np.float32), keys=np.array(["k" * 300, "k" * 299 + "j"]))
    assert main(["reconstruct", str(workspace["model"]), str(data), "--out", str(tmp_path / "r"), "-q"]) == 0
    names = [p.name for p in (tmp_path / "r").glob("*.png")]
    assert len(names) == 2 and all(len(n) < 128 for n in names)


def test_too_many_threads_names_the_flag(workspace, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--threads", "100000", "index", "info", str(workspace["index"])])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--threads" in err and err.count("\n") == 1
