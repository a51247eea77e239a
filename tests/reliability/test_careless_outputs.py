"""A careless user's --out: every command that writes a folder replaces only its own earlier output
of the same kind. A user's folder, the current directory, home, / and files are refused in one
line before any work starts, and nothing of theirs is touched; --overwrite is the explicit way out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index import VectorIndex, VectorIndexError
from siamese.cli import main

ROWS = 64


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    """A tiny model, its data (.npy, 6 columns) and an index built from them."""
    root = tmp_path_factory.mktemp("careless")
    model_dir, _ = tiny_model_dir
    data = root / "data.npy"
    np.save(data, np.random.default_rng(0).standard_normal((ROWS, 6)).astype(np.float32))
    assert main(["index", "build", str(model_dir), str(data), "--out", str(root / "idx"), "-q"]) == 0
    return {"root": root, "model": model_dir, "data": data, "index": root / "idx"}


# command line with {out}; the kind of folder it writes
COMMANDS = {
    "pretrain": ("pretrain {data} --epochs 1 --latent-dim 2 --widths 4 --out {out}", "model"),
    "finetune": ("finetune {model} {data} --pairs {pairs} --epochs 1 --pseudo-pairs off --out {out}", "model"),
    "index build": ("index build {model} {data} --out {out}", "index"),
    "index train": ("index train {model} {data} --kind ivf --nlist 2 --out {out}", "index"),
    "export": ("export {model} {index} --out {out}", "bundle"),
    "reconstruct": ("reconstruct {model} {data} --out {out}", "reconstructions"),
}


def _argv(command: str, workspace, out) -> list[str]:
    pairs = workspace["root"] / "pairs.csv"
    if not pairs.exists():
        pairs.write_text("a,b,label\n0,1,1\n2,3,0\n4,5,1\n6,7,0\n")
    line = COMMANDS[command][0].format(data=workspace["data"], model=workspace["model"], index=workspace["index"],
                                       pairs=pairs, out=out)
    return line.split() + ["-q"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _victims(tmp_path: Path, monkeypatch) -> dict[str, tuple[Path, Path]]:
    """name -> (the --out given, the folder whose contents must survive)."""
    home, work = tmp_path / "home", tmp_path / "home" / "work"
    work.mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    (work / "draft.txt").write_text("mine too")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    user = tmp_path / "victim"
    user.mkdir()
    (user / "thesis.txt").write_text("years of work")
    lookalike = tmp_path / "lookalike"  # holds files named like our outputs' own, but is not ours
    lookalike.mkdir()
    for name in ("errors.csv", "bundle.json", "config.json", "manifest.json"):
        (lookalike / name).write_text("{\"user\": \"data\"}")
    afile = tmp_path / "afile"
    afile.write_text("a file")
    return {"user folder": (user, user), "look-alike folder": (lookalike, lookalike), "dot": (Path("."), work),
            "cwd absolute": (work, work), "parent of cwd": (home, home), "home": (Path("~").expanduser(), home),
            "a file": (afile, tmp_path)}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_out_never_replaces_what_is_not_ours(command, workspace, tmp_path, monkeypatch, capsys, tally):
    for name, (out, keep) in _victims(tmp_path, monkeypatch).items():
        before = _snapshot(keep)
        tally["fuzz_cases"] += 1
        code = main(_argv(command, workspace, out))
        stdout, err = capsys.readouterr()
        assert code == 2, (name, err)
        assert err.startswith("siamese: error: --out") and err.count("\n") == 1, (name, err)
        assert stdout == "", (name, stdout)  # refused before any data was read or trained on
        tally["rejected"] += 1
        after = _snapshot(keep)
        tally["data_lost"] += int(after != before)
        assert after == before, name


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_out_replaces_its_own_output_and_overwrite_is_explicit(command, workspace, tmp_path, capsys):
    kind = COMMANDS[command][1]
    out = tmp_path / "out"
    assert main(_argv(command, workspace, out)) == 0, capsys.readouterr().err
    assert main(_argv(command, workspace, out)) == 0, capsys.readouterr().err  # our own output: replaced
    other = next(c for c, (_, k) in COMMANDS.items() if k != kind)
    other_out = tmp_path / "other"
    assert main(_argv(other, workspace, other_out)) == 0
    capsys.readouterr()
    assert main(_argv(command, workspace, other_out)) == 2  # an output of another kind is not replaced
    assert "is a siamese" in capsys.readouterr().err
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "old.txt").write_text("to be replaced")
    assert main(_argv(command, workspace, folder) + ["--overwrite"]) == 0, capsys.readouterr().err
    assert not (folder / "old.txt").exists()
    assert main(_argv(command, workspace, Path.cwd()) + ["--overwrite"]) == 2  # never the current directory


def test_api_saves_refuse_foreign_folders(workspace, tmp_path, tiny_model_dir):
    _, model = tiny_model_dir
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("years of work")
    index = VectorIndex.load(workspace["index"])
    for save in (lambda: model.save(victim), lambda: index.save(victim)):
        with pytest.raises(VectorIndexError, match="not a siamese .* output .*thesis.txt.*--overwrite"):
            save()
    assert (victim / "thesis.txt").read_text() == "years of work"
    index.save(victim, overwrite=True)
    assert len(VectorIndex.load(victim)) == ROWS


@pytest.mark.parametrize("argv, suffix", [
    (["classify", "{index}", "{model}", "{data}", "--out", "{target}"], ".csv"),
    (["embed", "{model}", "{data}", "--out", "{target}"], ".npz"),
    (["anomaly", "{model}", "{data}", "--out", "{target}"], ".csv"),
])
def test_output_files_never_replace_another_kind_of_file_or_a_folder(argv, suffix, workspace, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    folder = tmp_path / f"folder{suffix}"
    folder.mkdir()
    for target in (notes, folder):
        code = main([a.format(target=target, **{k: str(v) for k, v in workspace.items()}) for a in argv] + ["-q"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
    assert notes.read_text() == "mine" and folder.is_dir() and not any(folder.iterdir())


def test_unwritable_out_is_refused_before_training(workspace, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder would have to be")
    code = main(_argv("pretrain", workspace, blocker / "model"))
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "is a file" in err and err.count("\n") == 1



def test_demo_refuses_a_folder_that_is_not_an_earlier_demo(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "report.md").write_text("my own report")
    code = main(["demo", "--out", str(victim), "-q"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "not a siamese demo output" in err and err.count("\n") == 1
    assert (victim / "report.md").read_text() == "my own report"
