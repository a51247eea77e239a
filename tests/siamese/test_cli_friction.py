"""What a new user hit in the first hour, each fixed and kept fixed: plots of repeated and added
neighbours, evaluation without labels, --labels that match nothing, tiny distances, messages in
the CLI's terms, -k with --key, training flags checked before data, and `index remove`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from torchvision.io import write_png

import tiny_workspace
from index import VectorIndex
from siamese.cli import main


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """The shared tiny workspace plus `extra/` (images in a second folder, keys x/0.png..x/3.png)."""
    root = tiny_workspace.shared(tmp_path_factory)
    extra = root / "friction-extra"
    if not extra.exists():
        rng = np.random.default_rng(7)
        (extra / "x").mkdir(parents=True)
        for i in range(4):
            write_png(tiny_workspace.draw(i % 2, rng), str(extra / "x" / f"{i}.png"))
    return root


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def copy_index(ws: Path, tmp_path: Path) -> Path:
    shutil.copytree(ws / "index", tmp_path / "index")
    return tmp_path / "index"


def one_line_error(code: int, err: str) -> bool:
    return code == 2 and err.startswith("siamese: error:") and err.count("\n") == 1


# -- 1. neighbours shared by several queries -----------------------------------------------------


def test_query_plot_with_neighbours_shared_by_two_queries(ws, capsys, tmp_path):
    # 9 neighbours each among 24 items of two classes: the two class-0 queries must share some
    code, out, err = run(capsys, "query", ws / "index", ws / "tuned", ws / "queries" / "a.png",
                         ws / "queries" / "b.png", "-k", "9", "--json", "--plot", tmp_path / "grid.png")
    assert code == 0, err
    hits = json.loads(out.splitlines()[0])
    first, second = ({h["key"] for h in q["neighbors"]} for q in hits)
    assert first & second
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_neighbors_with_default_n_and_k(ws, capsys, tmp_path):
    code, _, err = run(capsys, "plot", "neighbors", ws / "tuned", ws / "images", "--index", ws / "index",
                       "--out", tmp_path / "n.png")
    assert code == 0, err
    assert (tmp_path / "n.png").read_bytes()[:4] == b"\x89PNG"


# -- 2. every item read back from its own source -----------------------------------------------


def test_plot_reads_items_added_from_a_second_folder(ws, capsys, tmp_path):
    from siamese.data.loading import load_items
    from siamese.models.checkpoint import load_model
    from siamese.models.model_input import model_normalization
    from siamese.retrieval.item_sources import item_arrays

    index_path = copy_index(ws, tmp_path)
    assert run(capsys, "index", "add", index_path, ws / "tuned", ws / "friction-extra", "-q")[0] == 0
    index = VectorIndex.load(index_path)
    assert index.info["sources"] == [
        {"source": str((ws / "images").resolve()), "first_id": 0, "last_id": 23},
        {"source": str((ws / "friction-extra").resolve()), "first_id": 24, "last_id": 27}]
    code, _, err = run(capsys, "query", index_path, ws / "tuned", "--key", "x/1.png", "--key", "x/0.png", "-k", "5",
                       "--plot", tmp_path / "grid.png")
    assert code == 0, err
    model = load_model(ws / "tuned")
    keys = np.array([["x/2.png", "0/3.png"], ["0/3.png", None]], dtype=object)
    got = item_arrays(index, keys, normalization=model_normalization(model))
    norm = model_normalization(model)
    direct = load_items([str(ws / "friction-extra" / "x" / "2.png"), str(ws / "images" / "0" / "3.png")],
                        normalization=norm).x.numpy()
    assert got.shape == (2, 2, 1, 8, 8)
    np.testing.assert_array_equal(got[0, 0], direct[0])
    np.testing.assert_array_equal(got[0, 1], direct[1])
    np.testing.assert_array_equal(got[1, 0], direct[1])
    assert not got[1, 1].any()  # no item: blank


def test_open_set_quantile_reads_every_source(ws, capsys, tmp_path):
    from siamese.retrieval.item_sources import indexed_item_sets

    index_path = copy_index(ws, tmp_path)
    assert run(capsys, "index", "add", index_path, ws / "tuned", ws / "friction-extra", "-q")[0] == 0
    parts = indexed_item_sets(VectorIndex.load(index_path))
    assert sorted(len(p) for p in parts) == [4, 24]
    code, out, err = run(capsys, "classify", index_path, ws / "tuned", ws / "queries", "--unknown-recon-quantile",
                         "0.9")
    assert code == 0 and "reconstruction error above" in out, err


def test_an_index_recording_only_its_build_source_still_plots(ws, capsys, tmp_path):
    index_path = copy_index(ws, tmp_path)
    index = VectorIndex.load(index_path)
    index.info = {k: v for k, v in index.info.items() if k != "sources"}  # as saved before ranges existed
    index.save(index_path)
    code, _, err = run(capsys, "query", index_path, ws / "tuned", "--key", "1/2.png", "-k", "3", "--plot",
                       tmp_path / "grid.png")
    assert code == 0, err
    # and an add from elsewhere is found beside it
    assert run(capsys, "index", "add", index_path, ws / "tuned", ws / "friction-extra", "-q")[0] == 0
    code, _, err = run(capsys, "query", index_path, ws / "tuned", "--key", "x/3.png", "--key", "0/1.png", "-k", "27",
                       "--plot", tmp_path / "grid2.png")
    assert code == 0, err


# -- 4. --labels says what it matched and what it replaced --------------------------------------


def test_index_build_and_add_report_what_labels_matched(ws, capsys, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("key,label\n0/1.png,a\n1/2.png,b\nnope.png,c\n0/99.png,d\nzz.png,e\nx/1.png,f\n")
    code, out, err = run(capsys, "index", "build", ws / "tuned", ws / "images", "--out", tmp_path / "index",
                         "--labels", labels, "-q")
    assert code == 0, err
    lines = out.splitlines()
    assert f"--labels {labels}: 2 of 6 labels matched items" in lines[0]
    assert "4 key(s) are not items" in lines[1] and "'nope.png', '0/99.png', 'zz.png', ..." in lines[1]
    assert "item keys look like '0/0.png'" in lines[1]
    assert "replaced the data's own labels (24 items had one; 22 of them are now unlabelled)" in lines[2]
    assert "2 labelled" in lines[3]
    code, out, err = run(capsys, "index", "add", tmp_path / "index", ws / "tuned", ws / "friction-extra",
                         "--labels", labels, "-q")
    assert code == 0, err
    assert "1 of 6 labels matched items" in out and "5 key(s) are not items" in out
    assert "replaced" not in out  # friction-extra/ has one class folder: no labels of its own
    assert VectorIndex.load(tmp_path / "index").labels_for_ids([1, 25]).tolist() == ["a", "f"]


# -- 3. evaluation without labels ---------------------------------------------------------------


def test_evaluate_without_labels_says_how_to_give_them(ws, capsys, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        shutil.copy(ws / "images" / "0" / f"{i}.png", flat / f"{i}.png")
    code, _, err = run(capsys, "evaluate", ws / "tuned", flat)
    assert one_line_error(code, err), err
    assert "needs labels" in err and "--labels LABELS.csv" in err and "one sub-folder per class" in err
    code, _, err = run(capsys, "evaluate", ws / "tuned", ws / "images", "--query", flat)
    assert one_line_error(code, err) and "--query-labels LABELS.csv" in err, err


# -- 5. distances with significant digits -------------------------------------------------------


def test_query_prints_small_distances_with_significant_digits(ws, capsys):
    args = ["query", ws / "index", ws / "tuned", "--key", "0/3.png", "-k", "5"]
    code, out, _ = run(capsys, *args, "--json")
    distances = [h["distance"] for h in json.loads(out)[0]["neighbors"]]
    code, out, _ = run(capsys, *args)
    printed = [float(line.split("distance ")[1].split()[0]) for line in out.splitlines() if "distance" in line]
    assert code == 0 and len(printed) == len(distances) == 5
    for shown, exact in zip(printed, distances):
        assert shown == pytest.approx(exact, rel=1e-3, abs=1e-12)  # 4 significant digits, not 4 decimals


# -- 6. messages in the CLI's terms -------------------------------------------------------------


def test_errors_name_commands_and_flags_not_python_arguments(ws, capsys, tmp_path):
    code, _, err = run(capsys, "index", "info", tmp_path / "missing")
    assert one_line_error(code, err) and "save()" not in err and "siamese index build" in err, err
    index_path = copy_index(ws, tmp_path)
    code, _, err = run(capsys, "index", "add", index_path, ws / "tuned", ws / "images", "-q")
    assert one_line_error(code, err), err
    assert "already in the index" in err and "siamese index remove INDEX --key KEY" in err
    unlabelled = tmp_path / "unlabelled.index"
    VectorIndex.build(VectorIndex.load(ws / "index").reconstruct(np.arange(24)), keys=[f"k{i}" for i in range(24)],
                      metric="cosine", model_fingerprint=VectorIndex.load(ws / "index").model_fingerprint,
                      ).save(unlabelled)
    for propagate in ("auto", "off"):  # the propagation's message, then the classifier's
        code, _, err = run(capsys, "classify", unlabelled, ws / "tuned", ws / "queries", "--propagate", propagate)
        assert one_line_error(code, err) and "siamese index build --labels" in err, err


# -- 7. -k in the user's terms ------------------------------------------------------------------


def test_query_k_is_checked_as_the_user_gave_it(ws, capsys):
    code, _, err = run(capsys, "query", ws / "index", ws / "tuned", "--key", "0/3.png", "-k", "1000")
    assert one_line_error(code, err), err
    assert "-k 1000" in err and "23 other items" in err and "give -k 23 or less" in err and "1001" not in err
    code, out, err = run(capsys, "query", ws / "index", ws / "tuned", "--key", "0/3.png", "-k", "23", "--json")
    neighbours = json.loads(out)[0]["neighbors"]
    assert code == 0 and len(neighbours) == 23 and "0/3.png" not in {h["key"] for h in neighbours}
    code, _, err = run(capsys, "query", ws / "index", ws / "tuned", ws / "queries" / "a.png", "-k", "25")
    assert one_line_error(code, err) and "-k 25 is larger than the index (24 items); give -k 24 or less" in err
    code, _, err = run(capsys, "plot", "neighbors", ws / "tuned", ws / "images", "--index", ws / "index",
                       "-k", "30", "--out", ws / "never.png")
    assert one_line_error(code, err) and "-k 30" in err and "k=" not in err, err
    code, _, err = run(capsys, "classify", ws / "index", ws / "tuned", ws / "queries", "-k", "0")
    assert one_line_error(code, err) and "-k must be at least 1" in err, err


# -- 8. training flags checked before any data is read ------------------------------------------


@pytest.mark.parametrize("flags, match", [
    (["--epochs", "0"], "epochs"),
    (["--batch-size", "1"], "batch_size"),
    (["--lr", "0"], "lr"),
    (["--val-fraction", "1"], "val_fraction"),
])
def test_training_flags_are_checked_before_the_data(capsys, tmp_path, flags, match):
    missing = tmp_path / "no-such-data"
    code, out, err = run(capsys, "pretrain", missing, "--out", tmp_path / "m", *flags)
    assert one_line_error(code, err) and match in err and "no-such-data" not in err, err
    assert out == ""  # nothing was loaded, nothing announced
    code, _, err = run(capsys, "finetune", tmp_path / "no-such-model", missing, "--labels", "items",
                       "--out", tmp_path / "t", *flags)
    assert one_line_error(code, err) and match in err and "no-such" not in err, err


# -- 9. siamese index remove --------------------------------------------------------------------


def test_index_remove_then_add_the_same_items_again(ws, capsys, tmp_path):
    index_path = copy_index(ws, tmp_path)
    assert run(capsys, "index", "add", index_path, ws / "tuned", ws / "friction-extra", "-q")[0] == 0
    code, _, err = run(capsys, "index", "add", index_path, ws / "tuned", ws / "friction-extra", "-q")
    assert one_line_error(code, err) and "siamese index remove" in err
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("x/2.png\n\nx/3.png\n")
    code, out, err = run(capsys, "index", "remove", index_path, "--key", "x/0.png", "--key", "x/1.png",
                         "--keys-file", keys_file)
    assert code == 0, err
    assert out.strip() == f"removed 4 items (x/0.png, x/1.png, x/2.png, x/3.png) from {index_path}: 28 -> 24"
    code, out, err = run(capsys, "index", "add", index_path, ws / "tuned", ws / "friction-extra", "-q")
    assert code == 0 and "24 -> 28" in out, err
    index = VectorIndex.load(index_path)
    assert len(index) == 28 and sorted(index.keys_for_ids(index.ids[-4:])) == [f"x/{i}.png" for i in range(4)]
    assert index.ids[-4:].tolist() == [28, 29, 30, 31]  # ids are never reused
    assert index.info["sources"][-1] == {"source": str((ws / "friction-extra").resolve()), "first_id": 24,
                                         "last_id": 31}  # one range for both adds from the folder


def test_index_remove_with_a_csv_keys_file_and_untrusted(ws, capsys, tmp_path):
    index_path = copy_index(ws, tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("key,label\n0/1.png,0\n1/1.png,1\n")
    code, out, err = run(capsys, "index", "remove", index_path, "--keys-file", labels, "--untrusted")
    assert code == 0 and "24 -> 22" in out, err
    code, out, err = run(capsys, "index", "add", index_path, ws / "tuned", ws / "friction-extra", "--untrusted", "-q")
    assert code == 0 and "22 -> 26" in out, err
    index = VectorIndex.load(index_path)  # what --untrusted saved loads as a trusted index too
    assert len(index) == 26 and "0/1.png" not in set(index.keys_for_ids(index.ids))


def test_index_remove_unknown_keys_removes_nothing(ws, capsys, tmp_path):
    index_path = copy_index(ws, tmp_path)
    before = sorted(p.name for p in index_path.iterdir())
    manifest = (index_path / "manifest.json").read_bytes()
    code, _, err = run(capsys, "index", "remove", index_path, "--key", "0/1.png", "--key", "nope.png",
                       "--key", "zz.png")
    assert one_line_error(code, err), err
    assert "2 key(s) not in the index ['nope.png', 'zz.png']" in err and "nothing was removed" in err
    assert (index_path / "manifest.json").read_bytes() == manifest
    assert sorted(p.name for p in index_path.iterdir()) == before
    code, _, err = run(capsys, "index", "remove", index_path)
    assert one_line_error(code, err) and "--key KEY" in err and "--keys-file" in err
    code, _, err = run(capsys, "index", "remove", index_path, "--keys-file", tmp_path / "none.txt")
    assert one_line_error(code, err) and "keys file not found" in err


def test_index_remove_is_torch_free(ws, tmp_path):
    from test_startup import HEAVY, imported_by

    index_path = copy_index(ws, tmp_path)
    code, modules = imported_by("index", "remove", str(index_path), "--key", "0/1.png", "-q")
    assert code == 0 and "faiss" in modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert len(VectorIndex.load(index_path)) == 23


def test_concurrent_removes_and_an_add_lose_nothing(ws, tmp_path):
    import subprocess
    import sys

    index_path = copy_index(ws, tmp_path)
    command = [sys.executable, "-m", "siamese", "index"]
    removes = [[*command, "remove", str(index_path), "--key", f"{c}/{i}.png"] for c in (0, 1) for i in (5, 6)]
    add = [[*command, "add", str(index_path), str(ws / "tuned"), str(ws / "friction-extra"), "-q"]]
    running = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for argv in add + removes]
    for process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    index = VectorIndex.load(index_path)
    keys = set(index.keys_for_ids(index.ids))
    assert len(index) == 24 - 4 + 4
    assert not keys & {f"{c}/{i}.png" for c in (0, 1) for i in (5, 6)}
    assert {f"x/{i}.png" for i in range(4)} <= keys


def test_indexed_keys_never_lead_outside_their_source_folder(tmp_path):
    from PIL import Image

    from siamese.errors import SiameseError
    from siamese.retrieval.item_sources import item_arrays

    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "secret.png")  # beside, not inside, the source
    index = VectorIndex.build(np.zeros((1, 4), np.float32), keys=["../secret.png"])
    index.info = {"sources": [{"source": str(tmp_path / "photos"), "first_id": 0, "last_id": 0}]}
    with pytest.raises(SiameseError, match="points outside its source folder"):
        item_arrays(index, np.array([["../secret.png"]], dtype=object))
