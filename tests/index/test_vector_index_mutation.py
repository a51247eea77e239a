"""add/remove/train: stable ids, metadata, all-or-nothing adds, chunked building."""

from __future__ import annotations

import numpy as np
import pytest

from index import VectorIndex
from index_testlib import KINDS, assert_index_error


def _self_hits(index: VectorIndex, vectors: np.ndarray, ids: np.ndarray, k: int) -> float:
    """Share of `ids` found among the k nearest neighbours of their own vector."""
    hits = index.search(vectors, k).ids
    return float(np.mean([i in row for i, row in zip(ids, hits)]))


@pytest.mark.parametrize("kind", KINDS)
def test_ids_stable_through_remove_save_load(kind: str, small: np.ndarray, tmp_path) -> None:
    keys = [f"k{i}" for i in range(len(small))]
    labels = [str(i % 5) for i in range(len(small))]
    index = VectorIndex.build(small, keys=keys, labels=labels, kind=kind)
    removed = np.arange(0, len(small), 7)
    assert index.remove(ids=removed) == removed.size
    assert index.remove(keys=["k1", "k599"]) == 2  # 599 is the largest id ever assigned
    gone = set(removed.tolist()) | {1, 599}
    alive = np.array([i for i in range(len(small)) if i not in gone])
    np.testing.assert_array_equal(index.ids, alive)

    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded.kind == kind and len(loaded) == alive.size and loaded.next_id == 600
    np.testing.assert_array_equal(loaded.ids, alive)
    np.testing.assert_array_equal(loaded.keys_for_ids(alive), np.array([f"k{i}" for i in alive], dtype=object))
    np.testing.assert_array_equal(loaded.labels_for_ids(alive), np.array([str(i % 5) for i in alive], dtype=object))
    k = 1 if kind != "ivfpq" else 5  # PQ codes are approximate: the item itself is near the top
    assert _self_hits(loaded, small[alive], alive, k) >= 0.98
    hits = loaded.search(small, 10).ids
    assert not (set(hits.ravel().tolist()) & gone)

    new_ids = loaded.add(small[:3] + 0.001, keys=["n0", "n1", "n2"])
    np.testing.assert_array_equal(new_ids, [600, 601, 602])
    np.testing.assert_array_equal(loaded.ids_for_keys(["n1", "k2"]), [601, 2])
    if kind != "ivfpq":
        assert loaded.search(small[0] + 0.001, 1).keys[0, 0] == "n0"


@pytest.mark.parametrize("kind", KINDS)
def test_reconstruct_and_get(kind: str, small: np.ndarray) -> None:
    index = VectorIndex.build(small, keys=[f"k{i}" for i in range(len(small))], kind=kind)
    tol = 0.5 if kind == "ivfpq" else 1e-6
    np.testing.assert_allclose(index.reconstruct(5), small[5], atol=tol)
    np.testing.assert_allclose(index.get("k5"), small[5], atol=tol)
    np.testing.assert_allclose(index.get(["k5", "k9"]), small[[5, 9]], atol=tol)
    np.testing.assert_allclose(index.reconstruct([9, 5]), small[[9, 5]], atol=tol)
    index.remove(ids=[5])
    with pytest.raises(Exception) as excinfo:
        index.reconstruct(5)
    assert_index_error(excinfo, "ids", "[5]")


def test_cosine_stores_normalised_vectors(small: np.ndarray) -> None:
    index = VectorIndex.build(small * 3.0, metric="cosine")
    np.testing.assert_allclose(np.linalg.norm(index.reconstruct([0, 1, 2]), axis=1), 1.0, rtol=1e-5)
    assert small[0, 0] == np.random.default_rng(7).standard_normal((600, 16)).astype(np.float32)[0, 0]  # input untouched


def test_cosine_does_not_modify_callers_array() -> None:
    x = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    before = x.copy()
    index = VectorIndex.build(x, metric="cosine")
    index.add(x)
    index.search(x, 1)
    np.testing.assert_array_equal(x, before)


def test_metadata_round_trip(small: np.ndarray, tmp_path) -> None:
    keys = [f"doc/{i}" for i in range(20)]
    labels = [None, "cat", 3, "dog"] * 5
    attrs = [{"i": i, "tags": ["a", "b"], "nested": {"x": 1.5}} if i % 2 else None for i in range(20)]
    index = VectorIndex.build(small[:20], keys=keys, labels=labels, attrs=attrs, info={"threshold": 0.25})
    index.save(tmp_path / "m")
    loaded = VectorIndex.load(tmp_path / "m")
    ids = loaded.ids_for_keys(keys)
    np.testing.assert_array_equal(ids, np.arange(20))
    assert loaded.keys_for_ids(ids).tolist() == keys
    assert loaded.labels_for_ids(ids).tolist() == [None, "cat", "3", "dog"] * 5
    assert loaded.attrs_for_ids(ids) == attrs
    assert loaded.has_labels and loaded.info == {"threshold": 0.25}
    int_keys = VectorIndex.build(small[:3], keys=[10, 20, 30])
    assert int_keys.keys_for_ids([0, 1, 2]).tolist() == ["10", "20", "30"]
    assert not int_keys.has_labels


def test_default_keys_follow_ids(small: np.ndarray) -> None:
    index = VectorIndex.build(small[:5])
    index.remove(ids=[4])
    ids = index.add(small[5:7])
    np.testing.assert_array_equal(ids, [5, 6])
    assert index.keys_for_ids(ids).tolist() == ["5", "6"]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_duplicate_keys_refused_and_nothing_added(kind: str, small: np.ndarray) -> None:
    index = VectorIndex.build(small[:100], keys=[f"k{i}" for i in range(100)], kind=kind)
    state = (len(index), index.next_id, index.ids.copy())
    with pytest.raises(Exception) as excinfo:
        index.add(small[100:103], keys=["new", "k7", "k8"])
    assert_index_error(excinfo, "already in the index", "'k7'", "'k8'")
    with pytest.raises(Exception) as excinfo:
        index.add(small[100:103], keys=["x", "y", "x"])
    assert_index_error(excinfo, "duplicated", "'x'")
    bad = small[100:103].copy()
    bad[2, 0] = np.nan
    with pytest.raises(Exception) as excinfo:
        index.add(bad, keys=["p", "q", "r"])
    assert_index_error(excinfo, "NaN", "[2]")
    with pytest.raises(Exception):
        index.add(small[100:103], keys=["p", "q", "r"], labels=["a", "b"])
    assert (len(index), index.next_id) == state[:2]
    np.testing.assert_array_equal(index.ids, state[2])
    assert index.search(small[100:103], 3).ids.max() < 100
    np.testing.assert_array_equal(index.add(small[100:103], keys=["p", "q", "r"]), [100, 101, 102])


def test_nan_in_late_chunk_leaves_index_unchanged(small: np.ndarray) -> None:
    index = VectorIndex.build(small[:10], chunk_size=16)
    bad = small[:100].copy()
    bad[90, 3] = np.inf
    with pytest.raises(Exception) as excinfo:
        index.add(bad)
    assert_index_error(excinfo, "[90]")
    assert len(index) == 10 and index.stored_count == 10 and index.next_id == 10


def test_build_refuses_duplicate_keys(small: np.ndarray) -> None:
    with pytest.raises(Exception) as excinfo:
        VectorIndex.build(small[:4], keys=["a", "b", "a", "b"])
    assert_index_error(excinfo, "keys", "'a'", "'b'")


def test_remove_errors_remove_nothing(small: np.ndarray) -> None:
    index = VectorIndex.build(small[:50], keys=[f"k{i}" for i in range(50)])
    with pytest.raises(Exception) as excinfo:
        index.remove(ids=[1, 2, 777, 888])
    assert_index_error(excinfo, "777", "888")
    with pytest.raises(Exception) as excinfo:
        index.remove(keys=["k1", "nope"])
    assert_index_error(excinfo, "'nope'")
    with pytest.raises(Exception) as excinfo:
        index.remove()
    assert_index_error(excinfo, "ids=", "keys=")
    with pytest.raises(Exception) as excinfo:
        index.remove(ids=[1], keys=["k2"])
    assert_index_error(excinfo, "exactly one")
    assert len(index) == 50
    assert index.remove(ids=[3, 3, 4]) == 2


def test_hnsw_tombstones_then_compaction(small: np.ndarray) -> None:
    index = VectorIndex.build(small, kind="hnsw")
    index.remove(ids=np.arange(0, 100))
    assert index.tombstone_count == 100 and index.stored_count == 600  # tombstoned, not rebuilt yet
    assert index.search(small[:100], 5).ids.min() >= 100
    assert index.range_search(small[0], 100.0)[0].ids.min() >= 100
    index.remove(ids=np.arange(100, 200))  # now a third is dead: graph rebuilt
    assert index.tombstone_count == 0 and index.stored_count == 400
    assert _self_hits(index, small[200:], np.arange(200, 600), 1) >= 0.98
    np.testing.assert_array_equal(index.add(small[:2]), [600, 601])


def test_remove_everything_then_add(small: np.ndarray) -> None:
    for kind in ("flat", "hnsw"):
        index = VectorIndex.build(small[:10], kind=kind)
        index.remove(ids=index.ids)
        assert len(index) == 0
        assert index.labels_for_ids(index.ids).shape == (0,) and index.keys_for_ids([]).shape == (0,)
        assert index.attrs_for_ids(index.ids) == []
        with pytest.raises(Exception) as excinfo:
            index.search(small[0], 1)
        assert_index_error(excinfo, "empty")
        np.testing.assert_array_equal(index.add(small[:2]), [10, 11])
        assert index.search(small[1], 1).ids[0, 0] == 11


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_empty_train_add_in_chunks(kind: str, small: np.ndarray) -> None:
    index = VectorIndex.empty(16, kind=kind, expected_count=600, seed=3)
    assert not index.is_trained
    with pytest.raises(Exception) as excinfo:
        index.add(small[:10])
    assert_index_error(excinfo, "train(sample)")
    index.train(small)
    assert index.is_trained and index.params["nlist"] == 15
    for start in range(0, 600, 200):
        ids = index.add(small[start : start + 200], labels=["x"] * 200)
        np.testing.assert_array_equal(ids, np.arange(start, start + 200))
    assert len(index) == 600
    assert _self_hits(index, small[:100], np.arange(100), 5) >= 0.98
    with pytest.raises(Exception) as excinfo:
        index.train(small)
    assert_index_error(excinfo, "already trained")


def test_empty_flat_and_auto(small: np.ndarray) -> None:
    index = VectorIndex.empty(16)
    index.train(small)  # no-op for flat
    np.testing.assert_array_equal(index.add(small[:4]), [0, 1, 2, 3])
    assert VectorIndex.empty(16, kind="auto", expected_count=1000).kind == "flat"
    with pytest.raises(Exception) as excinfo:
        VectorIndex.empty(16, kind="auto")
    assert_index_error(excinfo, "expected_count")


class ChunkOnlyArray:
    """Array-like that refuses whole-array conversion and records the rows read per request."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.largest_read = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item):
        out = self._data[item]
        self.largest_read = max(self.largest_read, out.shape[0])
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was converted")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_build_reads_in_chunks(kind: str, small: np.ndarray) -> None:
    data = ChunkOnlyArray(small.astype(np.float64))
    index = VectorIndex.build(data, kind=kind, chunk_size=64)
    assert data.largest_read <= 64
    reference = VectorIndex.build(small, kind=kind)
    if kind == "flat":
        np.testing.assert_array_equal(index.search(small[:20], 5).ids, reference.search(small[:20], 5).ids)
    assert _self_hits(index, small[:50], np.arange(50), 1) >= 0.98


def test_build_from_memmap(small: np.ndarray, tmp_path) -> None:
    path = tmp_path / "vectors.f64"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=small.shape)
    mm[:] = small
    mm.flush()
    ro = np.memmap(path, dtype=np.float64, mode="r", shape=small.shape)
    index = VectorIndex.build(ro, kind="ivf", chunk_size=100, labels=["a"] * len(small))
    assert len(index) == 600
    extra = index.add(ro[:50], keys=[f"again{i}" for i in range(50)])
    np.testing.assert_array_equal(extra, np.arange(600, 650))


def test_info_and_fingerprint(small: np.ndarray, caplog) -> None:
    index = VectorIndex.build(small[:5], model_fingerprint="abc123", info={"model": {"dim": 16}})
    index.info["threshold"] = 0.4
    assert index.info == {"model": {"dim": 16}, "threshold": 0.4}
    index.check_model("abc123")
    index.check_model("abc123", dim=16)
    with pytest.raises(Exception) as excinfo:
        index.check_model("zzz")
    assert_index_error(excinfo, "abc123", "zzz", "force=True")
    with pytest.raises(Exception) as excinfo:
        index.check_model("abc123", dim=32)
    assert_index_error(excinfo, "dimension 16", "32")
    with caplog.at_level("WARNING", logger="index.vector_index"):
        index.check_model("zzz", force=True)
    assert "zzz" in caplog.text
    unfingerprinted = VectorIndex.build(small[:5])
    with pytest.raises(Exception) as excinfo:
        unfingerprinted.check_model("abc")
    assert_index_error(excinfo, "no fingerprint")
    with pytest.raises(Exception) as excinfo:
        index.info = {"bad": {1, 2}}
    assert_index_error(excinfo, "info", "JSON")


@pytest.mark.parametrize("kind", KINDS)
def test_reserve_then_add_in_chunks_allocates_storage_once(kind: str, small: np.ndarray) -> None:
    """reserve(total) sizes flat/hnsw storage and the hnsw graph up front (no buffer moves while chunks arrive);
    for IVF kinds it is a no-op. Either way the index answers like one built in one call."""
    import faiss

    first, n = 300, len(small)
    index = VectorIndex.build(small[:first], kind=kind, nlist=8 if kind in ("ivf", "ivfpq") else None)
    index.reserve(n)
    def addresses() -> list[int]:
        """Where the vectors and, for hnsw, the graph's level, offset and link tables live."""
        if kind not in ("flat", "hnsw"):
            return []
        inner = faiss.downcast_index(index.faiss_index.index)
        storage = faiss.downcast_index(inner.storage) if kind == "hnsw" else inner
        tables = [storage.codes] + ([inner.hnsw.levels, inner.hnsw.offsets, inner.hnsw.neighbors] if kind == "hnsw"
                                    else [])
        return [int(table.data()) for table in tables]

    before = addresses()
    for start in range(first, n, 150):
        index.add(small[start:start + 150])
    assert addresses() == before  # no buffer was grown (copied) while the chunks arrived
    assert len(index) == n
    if kind != "ivfpq":  # PQ codes are approximate
        np.testing.assert_array_equal(index.reconstruct([0, 250, n - 1]), small[[0, 250, n - 1]])
    assert _self_hits(index, small, np.arange(n), 1 if kind != "ivfpq" else 5) >= 0.98
    with pytest.raises(Exception) as excinfo:
        index.reserve(0)
    assert_index_error(excinfo, "total")
