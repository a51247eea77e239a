"""Sharded IVF indexes: shards of one trained template, merged on disk, equal a one-go build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from index import VectorIndex, VectorIndexError
from index.shards import build_shard, merge_shards, shard_bounds, train_template

N_SHARDS = 3


def labels_for(start: int, stop: int) -> list[str]:
    return [f"c{i % 5}" for i in range(start, stop)]


def make_shards(template_dir, vectors, out_dir, n_shards=N_SHARDS, keys=None) -> list:
    paths = []
    for i in range(n_shards):
        start, stop = shard_bounds(len(vectors), (i, n_shards))
        shard = build_shard(template_dir, vectors[start:stop], first_id=start, shard=(i, n_shards),
                            keys=None if keys is None else keys[start:stop], labels=labels_for(start, stop))
        paths.append(shard.save(out_dir / f"shard-{i}"))
    return paths


@pytest.fixture(scope="module", params=[("ivf", "l2"), ("ivfpq", "cosine")], ids=["ivf-l2", "ivfpq-cosine"])
def built(request, tmp_path_factory, clustered):
    """(template dir, merged index dir, one-go index over the same template) for each kind."""
    kind, metric = request.param
    root = tmp_path_factory.mktemp(kind)
    vectors = clustered.vectors[:6000]
    template = train_template(vectors[::3], kind=kind, expected_count=len(vectors), metric=metric, nlist=40,
                              pq_m=8 if kind == "ivfpq" else None)
    template.save(root / "template")
    shards = make_shards(root / "template", vectors, root)
    merge_shards(list(reversed(shards)), root / "merged")  # order given does not matter
    whole = VectorIndex.load(root / "template")
    whole.add(vectors, labels=labels_for(0, len(vectors)))
    return root, VectorIndex.load(root / "merged"), whole


def test_merged_search_equals_a_one_go_build_with_the_same_quantizer(built, clustered):
    _, merged, whole = built
    assert len(merged) == len(whole) == 6000
    assert np.array_equal(merged.ids, whole.ids)
    for nprobe in (1, 40):
        merged.set_search_params(nprobe=nprobe)
        whole.set_search_params(nprobe=nprobe)
        got, want = merged.search(clustered.queries, 10), whole.search(clustered.queries, 10)
        assert np.array_equal(got.ids, want.ids)
        assert np.array_equal(got.distances, want.distances)
        assert np.array_equal(got.keys, want.keys) and np.array_equal(got.labels, want.labels)
    assert np.array_equal(merged.reconstruct([0, 2999, 5999]), whole.reconstruct([0, 2999, 5999]))


def test_merged_index_is_a_checked_index_directory(built):
    root, merged, _ = built
    manifest = json.loads((root / "merged" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"vectors.faiss", "meta.sqlite", "lists.ivfdata"}
    assert manifest["count"] == 6000 and manifest["next_id"] == 6000
    assert manifest["info"]["merged_from"]["shards"] == N_SHARDS
    assert merged.kind == manifest["kind"]
    with open(root / "merged" / "lists.ivfdata", "r+b") as fh:  # damage one byte of the lists
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    try:
        with pytest.raises(VectorIndexError, match="lists.ivfdata fails its sha256 check"):
            VectorIndex.load(root / "merged")
    finally:
        with open(root / "merged" / "lists.ivfdata", "r+b") as fh:
            fh.seek(100)
            fh.write(byte)


@pytest.mark.parametrize("action", ["add", "remove", "save"])
def test_merged_index_refuses_changes(built, tmp_path, action):
    _, merged, _ = built
    with pytest.raises(VectorIndexError, match="merged shard index"):
        if action == "add":
            merged.add(np.zeros((1, merged.dim), dtype=np.float32) + 1)
        elif action == "remove":
            merged.remove(ids=[0])
        else:
            merged.save(tmp_path / "copy")
    assert len(merged) == 6000


def test_shard_bounds_cover_every_item_once():
    bounds = [shard_bounds(10, (i, 4)) for i in range(4)]
    assert bounds == [(0, 2), (2, 5), (5, 7), (7, 10)]
    with pytest.raises(VectorIndexError, match="out of range"):
        shard_bounds(10, (4, 4))


@pytest.fixture(scope="module")
def template_dir(tmp_path_factory, clustered):
    root = tmp_path_factory.mktemp("template")
    train_template(clustered.vectors[:2000], kind="ivf", expected_count=3000, nlist=20).save(root / "t")
    return root / "t"


@pytest.mark.parametrize("case, message", [
    ("missing", r"missing \[1\]"),
    ("twice", "exactly once"),
    ("other-template", "another trained template"),
    ("same-keys", "repeats an id or key"),
    ("not-a-shard", "is not a shard"),
])
def test_merge_refuses_shards_that_do_not_belong_together(template_dir, clustered, tmp_path, case, message):
    vectors = clustered.vectors[:3000]
    shards = make_shards(template_dir, vectors, tmp_path, keys=[f"k{i}" for i in range(len(vectors))])
    if case == "missing":
        shards = [shards[0], shards[2]]
    elif case == "twice":
        shards = shards + [shards[1]]
    elif case == "other-template":
        train_template(vectors[1000:], kind="ivf", expected_count=3000, nlist=20).save(tmp_path / "t2")
        shards[1] = build_shard(tmp_path / "t2", vectors[1000:2000], first_id=1000, shard=(1, 3)).save(tmp_path / "x")
    elif case == "same-keys":
        shards[1] = build_shard(template_dir, vectors[1000:2000], first_id=1000, shard=(1, 3),
                                keys=[f"k{i}" for i in range(1000)]).save(tmp_path / "x")
    else:
        shards[1] = VectorIndex.build(vectors[:100]).save(tmp_path / "x")
    with pytest.raises(VectorIndexError, match=message):
        merge_shards(shards, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_start_shard_needs_an_empty_trained_template(tmp_path, clustered):
    VectorIndex.build(clustered.vectors[:500], kind="ivf", nlist=8).save(tmp_path / "full")
    with pytest.raises(VectorIndexError, match="not an empty trained IVF index"):
        build_shard(tmp_path / "full", clustered.vectors[:10], first_id=0, shard=(0, 1))


MERGE_UNDER_LIMIT = textwrap.dedent("""
    import resource, sys
    import faiss
    from index import VectorIndex
    from index.shards import merge_shards
    faiss.omp_set_num_threads(1)
    data_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmData"))
    limit = data_kb * 1024 + int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    if sys.argv[2] == "merge":
        merge_shards(sys.argv[4:], sys.argv[1], direct_map=False)
    else:  # what merging without memory maps would do: every shard in RAM
        shards = [VectorIndex.load(path) for path in sys.argv[4:]]
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA accounting is Linux's")
def test_merging_memory_stays_below_the_size_of_the_vectors(tmp_path):
    """4 shards of 24 MB of vectors merge under a 16 MB allowance of private memory: shards are
    read memory-mapped (file-backed pages, not counted), never loaded."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((96_000, 256)).astype(np.float32)  # 98 MB in all
    train_template(vectors[:4000], kind="ivf", expected_count=len(vectors), nlist=32).save(tmp_path / "t")
    shards = make_shards(tmp_path / "t", vectors, tmp_path, n_shards=4)
    del vectors
    script = tmp_path / "merge.py"
    script.write_text(MERGE_UNDER_LIMIT)

    def run(mode, allowance):
        return subprocess.run([sys.executable, str(script), str(tmp_path / "merged"), mode, str(allowance),
                               *map(str, shards)], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})

    done = run("merge", 16 << 20)
    assert done.returncode == 0, done.stderr[-2000:]
    merged = VectorIndex.load(tmp_path / "merged")
    assert len(merged) == 96_000 and merged.search(np.ones((1, 256), dtype=np.float32), 3).ids.shape == (1, 3)
    loaded = run("load", 16 << 20)  # the allowance does catch holding the shards in RAM
    assert loaded.returncode != 0 and ("MemoryError" in loaded.stderr or "bad_alloc" in loaded.stderr), loaded.stderr


def test_a_hostile_shard_database_is_refused_not_run(built, tmp_path):
    """A shard whose meta.sqlite hides its rows behind a recursive view (checksum rewritten to match)
    is refused by the merge's schema check instead of hanging it."""
    import hashlib
    import shutil
    import sqlite3

    root = built[0]
    shards = []
    for i in range(N_SHARDS):
        shutil.copytree(root / f"shard-{i}", tmp_path / f"shard-{i}")
        shards.append(tmp_path / f"shard-{i}")
    meta = shards[1] / "meta.sqlite"
    conn = sqlite3.connect(str(meta))
    conn.execute("ALTER TABLE items RENAME TO rows")
    conn.execute("CREATE VIEW items AS WITH RECURSIVE r(id, key, label, attrs) AS (SELECT * FROM rows "
                 "UNION ALL SELECT * FROM r) SELECT * FROM r")
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    manifest = json.loads((shards[1] / "manifest.json").read_text())
    manifest["files"]["meta.sqlite"]["sha256"] = hashlib.sha256(meta.read_bytes()).hexdigest()
    manifest["files"]["meta.sqlite"]["bytes"] = meta.stat().st_size
    (shards[1] / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VectorIndexError, match="shard-1/meta.sqlite is not a valid metadata database"):
        merge_shards(shards, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
