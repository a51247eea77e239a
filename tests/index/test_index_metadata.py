"""MetadataStore: SQLite persistence, duplicate keys, vectorised lookups at 100k+ rows."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from index.metadata import MetadataStore
from index_testlib import assert_index_error


def _store(n: int, offset: int = 0) -> MetadataStore:
    store = MetadataStore.in_memory()
    ids = np.arange(offset, offset + n, dtype=np.int64)
    store.add(ids, [f"key-{i}" for i in ids], [None if i % 3 == 0 else f"L{i % 5}" for i in ids], [None] * n)
    return store


def test_round_trip_in_wal_mode(tmp_path: Path) -> None:
    store = MetadataStore.in_memory()
    store.add(np.array([0, 1, 5]), ["a", "b", "c"], ["x", None, "y"], ['{"n": 1}', None, '{"t": [1, 2]}'])
    store.save(tmp_path / "meta.sqlite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.sqlite"]  # WAL checkpointed on close
    conn = sqlite3.connect(tmp_path / "meta.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = [r[1] for r in conn.execute("PRAGMA table_info(items)")]
    assert columns == ["id", "key", "label", "attrs"]
    conn.close()
    loaded = MetadataStore.load(tmp_path / "meta.sqlite")
    np.testing.assert_array_equal(loaded.ids, [0, 1, 5])
    assert loaded.keys_for_ids(np.array([5, 0])).tolist() == ["c", "a"]
    assert loaded.labels_for_ids(np.array([0, 1, 5])).tolist() == ["x", None, "y"]
    assert loaded.attrs_for_ids(np.array([0, 1, 5])) == [{"n": 1}, None, {"t": [1, 2]}]
    assert loaded.has_labels


def test_duplicates_within_batch_and_against_existing() -> None:
    store = _store(10)
    with pytest.raises(Exception) as excinfo:
        store.check_new_keys(["n1", "n2", "n1", "n3", "n2"])
    assert_index_error(excinfo, "2 duplicated", "'n1'", "'n2'")
    with pytest.raises(Exception) as excinfo:
        store.check_new_keys(["fresh", "key-3", "key-4"])
    assert_index_error(excinfo, "2 key(s) already", "'key-3'", "'key-4'")
    many = [f"key-{i}" for i in range(10)]
    with pytest.raises(Exception) as excinfo:
        store.check_new_keys(many)
    assert_index_error(excinfo, "10 key(s)", "...")  # names a few, not all
    store.check_new_keys(["fresh"])


def test_lookup_maps_missing_to_none() -> None:
    store = _store(5)
    keys, labels = store.lookup(np.array([[0, -1, 4], [7, 2, -1]]))
    assert keys.tolist() == [["key-0", None, "key-4"], [None, "key-2", None]]
    assert labels.tolist() == [[None, None, "L4"], [None, "L2", None]]
    empty = MetadataStore.in_memory()
    keys, labels = empty.lookup(np.array([[-1, 3]]))
    assert keys.tolist() == [[None, None]]


def test_remove_updates_caches_and_sql() -> None:
    store = _store(10)
    store.ids_for_keys(["key-1"])  # build the key cache before removing
    store.remove(np.array([1, 2, 9]))
    assert len(store) == 7 and store.count_rows() == 7
    assert store.unknown_ids(np.array([1, 3])).tolist() == [1]
    with pytest.raises(Exception) as excinfo:
        store.ids_for_keys(["key-1"])
    assert_index_error(excinfo, "'key-1'")
    store.check_new_keys(["key-1"])  # the key is free again
    store.add(np.array([10]), ["key-1"], ["L"], None)
    assert store.ids_for_keys(["key-1"]).tolist() == [10]
    labelled_ids, labels = store.labelled()
    assert 10 in labelled_ids.tolist() and "L" in labels.tolist()


def test_large_store_is_fast(tmp_path: Path) -> None:
    n = 150_000
    start = time.perf_counter()
    store = _store(n)
    ids = np.random.default_rng(0).integers(0, n, size=(2000, 50))
    keys, labels = store.lookup(ids)
    assert keys[0, 0] == f"key-{ids[0, 0]}"
    looked_up = store.ids_for_keys([f"key-{i}" for i in range(0, n, 3)])
    assert looked_up[-1] == (n - 1) // 3 * 3
    store.remove(np.arange(0, n, 10))
    store.save(tmp_path / "m.sqlite")
    loaded = MetadataStore.load(tmp_path / "m.sqlite")
    assert len(loaded) == n - n // 10
    assert time.perf_counter() - start < 10.0


def test_load_rejects_other_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "other.sqlite")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(Exception) as excinfo:
        MetadataStore.load(tmp_path / "other.sqlite")
    assert_index_error(excinfo, "meta.sqlite", "columns")
