"""MetadataStore key -> id lookups through sorted key hashes, and id -> key lookups on both the
dense (ids 0..n-1) and the sparse path, give the same answers as a plain dict would."""

from __future__ import annotations

import numpy as np
import pytest

from index import metadata_keys
from index.errors import VectorIndexError
from index.metadata import MetadataStore
from index_testlib import assert_index_error


def _store(ids: np.ndarray) -> MetadataStore:
    store = MetadataStore.in_memory()
    store.add(ids, [f"k{i}" for i in ids.tolist()], [None if i % 2 else f"L{i % 3}" for i in ids.tolist()])
    return store


@pytest.mark.parametrize("collide", [False, True])
def test_key_lookups_survive_adds_removes_and_hash_collisions(collide, monkeypatch) -> None:
    if collide:  # every key gets the same hash: equal hashes must be told apart by the keys
        monkeypatch.setattr(metadata_keys, "key_hashes", lambda keys: np.zeros(len(keys), dtype=np.int64))
    store = _store(np.arange(40, dtype=np.int64))
    store.check_new_keys(["new"])  # builds the key index
    store.add(np.arange(40, 60, dtype=np.int64), [f"k{i}" for i in range(40, 60)])
    store.remove(np.array([3, 41], dtype=np.int64))
    expected = {f"k{i}": i for i in range(60) if i not in (3, 41)}
    keys = list(expected)[::-1]
    assert store.ids_for_keys(keys).tolist() == [expected[k] for k in keys]
    with pytest.raises(VectorIndexError) as missing:
        store.ids_for_keys(["k3"])
    assert_index_error(missing, "not in the index", "k3")
    with pytest.raises(VectorIndexError) as clash:
        store.check_new_keys(["fresh", "k59"])
    assert_index_error(clash, "already in the index", "k59")
    store.check_new_keys(["k3", "k41"])  # removed keys may come back


@pytest.mark.parametrize("ids", [np.arange(30), np.arange(5, 35), np.delete(np.arange(30), [4, 17])],
                         ids=["dense", "offset", "gaps"])
def test_lookup_matches_keys_and_labels_for_ids(ids) -> None:
    store = _store(ids.astype(np.int64))
    rng = np.random.default_rng(0)
    query = rng.choice(ids, size=(6, 4)).astype(np.int64)
    query[0, 3] = query[2, 1] = -1  # faiss's "no result"
    keys, labels = store.lookup(query)
    assert keys.shape == labels.shape == query.shape and keys.dtype == labels.dtype == object
    hit = query >= 0
    assert keys[hit].tolist() == [f"k{i}" for i in query[hit].tolist()]
    assert labels[hit].tolist() == [None if i % 2 else f"L{i % 3}" for i in query[hit].tolist()]
    assert keys[~hit].tolist() == labels[~hit].tolist() == [None, None]
    empty_keys, empty_labels = MetadataStore.in_memory().lookup(query)
    assert (empty_keys == None).all() and (empty_labels == None).all()  # noqa: E711


@pytest.mark.parametrize("custom", [None, "k7", "007"], ids=["row-keys", "named", "zero-padded"])
def test_row_keys_are_made_from_ids_until_a_custom_key_arrives(custom, tmp_path) -> None:
    """Items added without keys (key == str(id)) cache no keys; the first other key switches to cached
    keys without changing any answer, and a save/load round trip picks the same mode back up."""
    store = MetadataStore.in_memory()
    store.add(np.arange(10, dtype=np.int64), [str(i) for i in range(10)])
    store.remove(np.array([4], dtype=np.int64))
    if custom is not None:
        store.add(np.array([10], dtype=np.int64), [custom])
    assert (store._keys is None) == (custom is None)
    expected = {str(i): i for i in range(10) if i != 4} | ({custom: 10} if custom else {})
    for current in (store, _reloaded(store, tmp_path)):
        assert (current._keys is None) == (custom is None)
        assert current.ids_for_keys(list(expected)).tolist() == list(expected.values())
        ids = np.array(list(expected.values()), dtype=np.int64)
        assert current.keys_for_ids(ids).tolist() == list(expected)
        assert current.lookup(ids.reshape(1, -1))[0].ravel().tolist() == list(expected)
        for absent in ("4", "04", "+5", " 5", "5.0", "-1", "99", "k7" if custom != "k7" else "k8"):
            assert current._key_positions([absent]).tolist() == [-1], absent
        with pytest.raises(VectorIndexError) as clash:
            current.check_new_keys(["fresh", "3"])
        assert_index_error(clash, "already in the index", "3")


def _reloaded(store: MetadataStore, tmp_path) -> MetadataStore:
    store.save(tmp_path / "meta.sqlite")
    return MetadataStore.load(tmp_path / "meta.sqlite")


def test_deferred_row_keys_describe_the_search_even_after_later_changes(small) -> None:
    """A search's keys made on first access are the keys of the hits as they were at search time."""
    from index import VectorIndex

    index = VectorIndex.build(small[:50])
    result = index.search(small[:3], 4)
    index.remove(ids=result.ids[:, 0])
    assert result.keys.tolist() == [[str(i) for i in row] for row in result.ids.tolist()]
    missing = MetadataStore.in_memory()
    missing.add(np.arange(3, dtype=np.int64), ["0", "1", "2"])
    keys, _ = missing.lookup(np.array([[2, -1, 7]]), defer_row_keys=True)
    assert callable(keys) and keys().tolist() == [["2", None, None]]
