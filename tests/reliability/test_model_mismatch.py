"""An index answers only queries embedded by the model that built it, unless forced (API and CLI)."""

from __future__ import annotations

import numpy as np
import pytest

from index import VectorIndexError
from reliability_lib import model_version
from siamese import build_index, embed, load_items, open_index
from siamese.cli import main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("mismatch")
    np.save(root / "items.npy", np.random.default_rng(0).random((30, 6)).astype(np.float32), allow_pickle=False)
    models = {"own": model_version(1), "other": model_version(2), "wider": model_version(1, latent_dim=5)}
    for name, model in models.items():
        model.save(root / name)
    build_index(models["own"], str(root / "items.npy"), kind="flat").save(root / "index")
    return root, models


def test_api_refuses_another_model_unless_forced(workspace):
    root, models = workspace
    assert len(open_index(root / "index", models["own"])) == 30
    with pytest.raises(VectorIndexError, match="model mismatch: .*fingerprint.*force=True"):
        open_index(root / "index", models["other"])
    index = open_index(root / "index", models["other"], force=True)
    queries = embed(models["other"], load_items(str(root / "items.npy"), limit=2))
    assert index.search(queries, k=3).ids.shape == (2, 3)


def test_api_refuses_another_dimension_even_when_forced_at_search(workspace):
    root, models = workspace
    with pytest.raises(VectorIndexError, match="dimension 3 but the model embeds to 5"):
        open_index(root / "index", models["wider"])
    index = open_index(root / "index", models["wider"], force=True)
    queries = embed(models["wider"], load_items(str(root / "items.npy"), limit=2))
    with pytest.raises(VectorIndexError, match="dimension"):  # clean error, never a faiss crash
        index.search(queries, k=3)


@pytest.mark.parametrize("model", ["other", "wider"])
@pytest.mark.parametrize("command", ["query", "classify", "index add", "anomaly"])
def test_cli_refuses_another_model_with_one_line(workspace, model, command, capsys):
    root, _ = workspace
    before = {p.name: p.read_bytes() for p in (root / "index").iterdir()}
    index, data = str(root / "index"), str(root / "items.npy")
    argv = {"query": ["query", index, str(root / model), "--key", "3"],
            "classify": ["classify", index, str(root / model), data],
            "index add": ["index", "add", index, str(root / model), data],
            "anomaly": ["anomaly", str(root / model), data, "--index", index, "--out", str(root / "a.csv")]}[command]
    assert main(argv + ["-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("siamese: error: model mismatch") and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in (root / "index").iterdir()} == before
    assert not (root / "a.csv").exists()


def test_cli_force_accepts_another_model(workspace, capsys):
    root, _ = workspace
    code = main(["query", str(root / "index"), str(root / "other"), "--key", "3", "-k", "2", "--force", "--json", "-q"])
    assert code == 0 and '"neighbors"' in capsys.readouterr().out
