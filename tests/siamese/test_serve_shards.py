"""Shards built with `index build --shard i/n` are searched without merging: a folder of shard
folders answers `siamese query` and `siamese serve` as the merged index does (fan-out, top-k merge),
and commands that need one index say how to merge."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from index import VectorIndex
from index.sharded import ShardedIndex, open_index_or_shards
from siamese.cli import main
from siamese.serve.app import create_app
from siamese.serve.config import ServeConfig
from siamese.serve.service import Service

import tiny_workspace


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """The tiny workspace's items as 3 IVF shards (shards/0, 1, 2) and the same shards merged."""
    root = tiny_workspace.shared(tmp_path_factory)
    out = tmp_path_factory.mktemp("sharded")
    model, images = str(root / "tuned"), str(root / "images")
    assert main(["index", "train", model, images, "--kind", "ivf", "--nlist", "2", "--out", str(out / "template"),
                 "-q"]) == 0
    for i in range(3):
        assert main(["index", "build", model, images, "--shard", f"{i}/3", "--from", str(out / "template"),
                     "--out", str(out / "shards" / str(i)), "-q"]) == 0
    assert main(["index", "merge", *[str(out / "shards" / str(i)) for i in range(3)], "--out",
                 str(out / "merged"), "-q"]) == 0
    return root, out


def test_shards_search_like_the_merged_index(sharded):
    _, out = sharded
    shards, merged = open_index_or_shards(out / "shards"), VectorIndex.load(out / "merged")
    assert isinstance(shards, ShardedIndex) and len(shards) == len(merged) == 24
    for index in (shards, merged):
        index.set_search_params(nprobe=2)  # every list: exact
    queries = merged.reconstruct(merged.ids[::5])
    a, b = shards.search(queries, 6), merged.search(queries, 6)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.distances, b.distances, rtol=1e-6)
    assert a.keys.tolist() == b.keys.tolist() and a.labels.tolist() == b.labels.tolist()
    assert np.array_equal(np.sort(shards.ids), merged.ids)
    np.testing.assert_array_equal(shards.get(["1/3.png", "0/0.png"]), merged.get(["1/3.png", "0/0.png"]))
    keys, labels = shards.keys_and_labels(np.array([[0, -1], [23, 999]]))
    assert keys.tolist() == [[merged.keys_for_ids([0])[0], None], [merged.keys_for_ids([23])[0], None]]
    assert len(shards.labelled_index()) == 24 and shards.info["sources"]


def test_query_reads_a_folder_of_shards(sharded, capsys):
    root, out = sharded
    answers = []
    for index in (out / "shards", out / "merged"):
        assert main(["query", str(index), str(root / "tuned"), "--key", "0/4.png", "-k", "5", "--json"]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    assert [h["key"] for h in answers[0][0]["neighbors"]] == [h["key"] for h in answers[1][0]["neighbors"]]


def test_serve_answers_from_shards(sharded):
    root, out = sharded
    served = {name: TestClient(create_app(Service.load(out / name, root / "tuned", ServeConfig(map_method="pca"))),
                               base_url="http://127.0.0.1") for name in ("shards", "merged")}
    results = [c.post("/search", json={"key": "1/2.png", "k": 5}).json()["results"] for c in served.values()]
    assert [r["key"] for r in results[0]] == [r["key"] for r in results[1]]
    labels = [c.post("/classify", json={"key": "1/2.png", "k": 3}).json()["label"] for c in served.values()]
    assert labels[0] == labels[1]
    shards = served["shards"]
    assert shards.get("/info").json()["count"] == 24
    assert shards.get("/items/20/image").headers["content-type"] == "image/png"
    assert len(shards.get("/map").json()["points"]) == 24 and shards.get("/pairs/next").status_code == 200


def test_commands_that_need_one_index_say_how_to_merge(sharded, capsys):
    root, out = sharded
    assert main(["classify", str(out / "shards"), str(root / "tuned"), str(root / "queries")]) == 2
    assert "siamese index merge" in capsys.readouterr().err
