"""The `siamese` command end to end on a tiny image folder written by the test."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from siamese.cli import main
from tiny_workspace import TINY, draw



@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    folder, extra = root / "images", root / "more"
    for cls in ("0", "1"):
        (folder / cls).mkdir(parents=True)
        (extra / cls).mkdir(parents=True)
        for i in range(12):
            write_png(draw(int(cls), rng), str(folder / cls / f"{i}.png"))
        for i in range(3):
            write_png(draw(int(cls), rng), str(extra / cls / f"new{i}.png"))
    write_png(draw(0, rng), str(root / "query.png"))
    assert main(["pretrain", str(folder), "--out", str(root / "model"), *TINY]) == 0
    assert main(["finetune", str(root / "model"), str(folder), "--labels", "items", "--out", str(root / "tuned"),
                 "--epochs", "1", "--batch-size", "8", "-q"]) == 0
    assert main(["index", "build", str(root / "tuned"), str(folder), "--out", str(root / "index"), "-q"]) == 0
    return root


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_index_info_and_add(workspace, capsys):
    code, out, _ = run(capsys, "index", "info", workspace / "index", "--json")
    info = json.loads(out)
    assert code == 0 and info["count"] == 24 and info["dim"] == 4 and info["metric"] == "cosine"
    assert info["model"]["finetuned"] is True and info["classes"] == {"0": 12, "1": 12}
    import shutil

    shutil.copytree(workspace / "index", workspace / "index2")
    code, out, _ = run(capsys, "index", "add", workspace / "index2", workspace / "tuned", workspace / "more", "-q")
    assert code == 0 and "24 -> 30" in out
    code, out, err = run(capsys, "index", "add", workspace / "index2", workspace / "tuned", workspace / "more", "-q")
    assert code == 2 and "already in the index" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "index", "info", workspace / "index2", "--json")
    assert json.loads(out)["count"] == 30  # nothing partial was written


def test_index_check_reads_every_file_again(workspace, capsys, tmp_path):
    import shutil

    shutil.copytree(workspace / "index", tmp_path / "index")
    code, out, _ = run(capsys, "index", "check", tmp_path / "index")
    assert code == 0 and "24 items" in out and "every file matches its checksum" in out
    meta = tmp_path / "index" / "meta.sqlite"
    data = bytearray(meta.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stat = meta.stat()
    meta.write_bytes(bytes(data))
    os.utime(meta, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the modification time put back: ctime still changed
    code, out, err = run(capsys, "query", tmp_path / "index", workspace / "tuned", "--key", "0/3.png", "-k", "2")
    assert code == 2 and "meta.sqlite fails its sha256 check" in err and err.count("\n") == 1
    code, out, err = run(capsys, "index", "check", tmp_path / "index")
    assert code == 2 and "meta.sqlite fails its sha256 check" in err


def test_query_by_file_and_by_key(workspace, capsys, tmp_path):
    code, out, _ = run(capsys, "query", workspace / "index", workspace / "tuned", workspace / "query.png", "-k", "3",
                       "--json", "--plot", tmp_path / "grid.png")
    hits = json.loads(out.splitlines()[0])
    assert code == 0 and len(hits[0]["neighbors"]) == 3
    assert [h["distance"] for h in hits[0]["neighbors"]] == sorted(h["distance"] for h in hits[0]["neighbors"])
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run(capsys, "query", workspace / "index", workspace / "tuned", "--key", "0/3.png", "-k", "5")
    assert code == 0 and "0/3.png" not in out.split("\n", 1)[1] and out.count("distance") == 5


def test_classify_and_anomaly(workspace, capsys, tmp_path):
    code, out, _ = run(capsys, "classify", workspace / "index", workspace / "tuned", workspace / "more", "-k", "3",
                       "--out", tmp_path / "pred.csv")
    assert code == 0 and "accuracy" in out
    rows = list(csv.DictReader(open(tmp_path / "pred.csv")))
    assert len(rows) == 6 and {r["predicted"] for r in rows} <= {"0", "1"}
    code, out, _ = run(capsys, "classify", workspace / "index", workspace / "tuned", workspace / "more", "--skip", "1",
                       "--limit", "2", "--out", tmp_path / "pred2.csv")
    assert code == 0 and [r["key"] for r in csv.DictReader(open(tmp_path / "pred2.csv"))] == [
        r["key"] for r in rows[1:3]]
    code, out, _ = run(capsys, "anomaly", workspace / "tuned", workspace / "more", "--index", workspace / "index",
                       "--out", tmp_path / "scores.csv", "--plot", tmp_path / "hist.png")
    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert code == 0 and len(rows) == 6 and all(float(r["reconstruction_error"]) > 0 for r in rows)
    assert (tmp_path / "hist.png").exists()
    assert "nearest indexed items, whitened" in out
    code, out, _ = run(capsys, "anomaly", workspace / "tuned", workspace / "more", "--index", workspace / "index",
                       "--out", tmp_path / "raw.csv", "--whiten", "off")
    raw = {r["key"]: float(r["knn_distance"]) for r in csv.DictReader(open(tmp_path / "raw.csv"))}
    assert code == 0 and "whitened" not in out
    assert raw != {r["key"]: float(r["knn_distance"]) for r in rows}


@pytest.mark.parametrize("what", ["latent", "reconstructions", "neighbors", "curves"])
def test_plots(workspace, capsys, tmp_path, what):
    extra = {"neighbors": ["--index", workspace / "index", "-n", "2", "-k", "3"]}.get(what, [])
    data = [] if what == "curves" else [workspace / "images"]
    code, out, err = run(capsys, "plot", what, workspace / "tuned", *data, "--out", tmp_path / f"{what}.png", *extra)
    assert code == 0, err
    assert (tmp_path / f"{what}.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_and_embed(workspace, capsys, tmp_path):
    code, out, _ = run(capsys, "evaluate", workspace / "tuned", workspace / "images", "--query", workspace / "more",
                       "--json")
    assert code == 0 and 0 <= json.loads(out)["knn_accuracy"] <= 1
    code, out, _ = run(capsys, "embed", workspace / "tuned", workspace / "more", "--out", tmp_path / "z.npz")
    data = np.load(tmp_path / "z.npz", allow_pickle=False)
    assert code == 0 and data["z"].shape == (6, 4) and data["z"].dtype == np.float32 and len(data["keys"]) == 6


@pytest.mark.parametrize("args, match", [
    (["query", "{index}", "{tuned}", "--key", "nope.png"], "nope.png"),
    (["query", "{index}", "{tuned}", "{query}", "-k", "99"], "larger than the index"),
    (["query", "{index}", "{model}", "{query}"], "fingerprint"),
    (["query", "{index}", "{tuned}", "{missing}"], "missing"),
    (["classify", "{index}", "{tuned}", "{empty}"], "no image"),
    (["index", "info", "{missing}"], "missing"),
    (["pretrain", "{missing}", "--out", "{tmp}/m"], "missing"),
    (["query", "{index}", "{tuned}", "{big}", "--image-size", "12"], "does not fit the model, which takes 8x8"),
    (["plot", "samples", "{tuned}", "--out", "{tmp}/s.png"], "variational"),
    (["finetune", "{model}", "{images}", "--pairs", "{missing}", "--out", "{tmp}/x"], "missing"),
])
def test_user_errors_exit_2_with_one_line(workspace, capsys, tmp_path, args, match):
    (tmp_path / "empty").mkdir()
    write_png(torch.zeros(1, 12, 12, dtype=torch.uint8), str(tmp_path / "big.png"))
    names = {"index": workspace / "index", "tuned": workspace / "tuned", "model": workspace / "model",
             "query": workspace / "query.png", "missing": tmp_path / "missing", "empty": tmp_path / "empty",
             "tmp": tmp_path, "images": workspace / "images", "big": tmp_path / "big.png"}
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, *[a.format(**names) for a in args])
    assert code == 2 and err.startswith("siamese: error:") and err.count("\n") == 1
    assert match.lower() in err.lower(), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing partial written


def test_console_script_runs_in_a_subprocess(workspace):
    result = subprocess.run([sys.executable, "-m", "siamese", "index", "info", str(workspace / "index")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "count" in result.stdout
    result = subprocess.run([sys.executable, "-m", "siamese", "pretrain"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
