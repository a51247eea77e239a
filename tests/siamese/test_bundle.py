"""Bundles: export, checksummed load in a fresh process, stale-index detection and `index rebuild`."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from index import VectorIndex, VectorIndexError
from siamese import SiameseError, export_bundle, load_bundle, load_model
from siamese.cli import main

import tiny_workspace

SEARCH_IN_FRESH_PROCESS = """
import json, sys
from siamese import load_bundle
bundle = load_bundle(sys.argv[1])
hits = bundle.search(sys.argv[2], k=4)
print(json.dumps({"keys": hits.keys.tolist(), "distances": hits.distances.tolist(),
                  "calibrated": bundle.calibration is not None}))
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tiny_workspace.shared(tmp_path_factory)


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_round_trip_gives_identical_search_results_in_a_fresh_process(workspace, capsys, tmp_path):
    code, out, err = run(capsys, "export", workspace / "tuned", workspace / "index", "--out", tmp_path / "bundle")
    assert code == 0 and "exported 24 indexed items" in out, err
    manifest = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert manifest["format"] == "siamese-bundle" and manifest["count"] == 24
    assert {"model/config.json", "model/model.safetensors", "index/manifest.json"} <= set(manifest["files"])
    assert manifest["model_fingerprint"] == load_model(workspace / "tuned").fingerprint()
    result = subprocess.run([sys.executable, "-c", SEARCH_IN_FRESH_PROCESS, str(tmp_path / "bundle"),
                             str(workspace / "queries")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    fresh = json.loads(result.stdout)
    bundle = load_bundle(tmp_path / "bundle")
    here = bundle.search(workspace / "queries", k=4)
    from siamese import embed, load_items
    from siamese.models.model_input import model_normalization

    model = load_model(workspace / "tuned")
    queries = load_items(str(workspace / "queries"), normalization=model_normalization(model), channels=1)
    original = VectorIndex.load(workspace / "index").search(embed(model, queries), 4)
    assert fresh["keys"] == here.keys.tolist() == original.keys.tolist()
    assert np.array_equal(np.float32(fresh["distances"]), original.distances)


def test_tampered_or_incomplete_bundle_is_refused(workspace, tmp_path):
    out = export_bundle(workspace / "tuned", workspace / "index", tmp_path / "b")
    weights = out / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(SiameseError, match="model/model.safetensors does not match its checksum"):
        load_bundle(out)
    (out / "index" / "meta.sqlite").unlink()
    with pytest.raises(SiameseError, match="missing"):
        load_bundle(out)
    with pytest.raises(SiameseError, match="not a siamese bundle"):
        load_bundle(workspace / "index")
    with pytest.raises(VectorIndexError, match="not a siamese bundle output"):
        export_bundle(workspace / "tuned", workspace / "index", workspace / "images")


def test_stale_index_is_detected_and_rebuilt_in_place(workspace, capsys, tmp_path):
    shutil.copytree(workspace / "index", tmp_path / "index")
    before = VectorIndex.load(tmp_path / "index")
    with pytest.raises(SiameseError, match="stale index.*siamese index rebuild"):
        export_bundle(workspace / "model", tmp_path / "index", tmp_path / "bundle")
    code, out, err = run(capsys, "index", "rebuild", tmp_path / "index", workspace / "model", workspace / "images",
                         "-q")
    assert code == 0 and "re-embedded 24 items" in out, err
    after = VectorIndex.load(tmp_path / "index")
    model = load_model(workspace / "model")
    assert after.model_fingerprint == model.fingerprint() and after.metric == model.metric
    assert np.array_equal(after.ids, before.ids)
    assert after.keys_for_ids(after.ids).tolist() == before.keys_for_ids(before.ids).tolist()
    assert after.labels_for_ids(after.ids).tolist() == before.labels_for_ids(before.ids).tolist()
    assert after.info["source"] == before.info["source"] and after.info["model"]["finetuned"] is False
    export_bundle(workspace / "model", tmp_path / "index", tmp_path / "bundle")  # fresh now
    assert len(load_bundle(tmp_path / "bundle").index) == 24
    code, _, err = run(capsys, "index", "rebuild", tmp_path / "index", workspace / "model", workspace / "queries")
    assert code == 2 and "not in the data source" in err and err.count("\n") == 1
