"""A loaded index reads its metadata from meta.sqlite per hit, and trusts a record of an earlier full
check while its files are unchanged (index.metadata_view, index.verification)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from index import KNNClassifier, VectorIndex, VectorIndexError, propagate_labels
from index import storage as index_storage
from index import verification
from index_testlib import assert_index_error

N, D = 400, 8


def _items(n: int = N, d: int = D, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((4, d)).astype(np.float32) * 4
    labels_all = rng.integers(0, 4, n)
    x = centers[labels_all] + rng.standard_normal((n, d)).astype(np.float32)
    keys = [f"img/{i:04d}.png" for i in range(n)]
    labels = [f"class-{c}" if i % 3 == 0 else None for i, c in enumerate(labels_all)]
    attrs = [{"row": i, "tags": ["a", "b"][: i % 3]} if i % 2 else None for i in range(n)]
    return x, keys, labels, attrs


@pytest.fixture
def saved(tmp_path: Path, request) -> tuple[Path, np.ndarray]:
    kind = getattr(request, "param", "flat")
    x, keys, labels, attrs = _items()
    index = VectorIndex.build(x, keys=keys, labels=labels, attrs=attrs, kind=kind, nlist=4 if "ivf" in kind else None)
    index.save(tmp_path / "idx")
    return tmp_path / "idx", x


def _hashes(monkeypatch) -> list[str]:
    """Names of the files whose sha256 is computed from now on."""
    seen: list[str] = []
    original = index_storage.sha256_file
    monkeypatch.setattr(index_storage, "sha256_file", lambda path: seen.append(Path(path).name) or original(path))
    return seen


@pytest.mark.parametrize("saved", ["flat", "hnsw", "ivf", "ivfpq"], indirect=True)
def test_lookups_match_the_in_ram_copy(saved: tuple[Path, np.ndarray]) -> None:
    path, x = saved
    on_disk, in_ram = VectorIndex.load(path), VectorIndex.load(path, metadata_in_ram=True)
    a, b = on_disk.search(x[:40], 7), in_ram.search(x[:40], 7)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert (a.keys == b.keys).all() and (a.labels == b.labels).all()
    ids = np.array([5, 0, 5, 399, 17])
    assert on_disk.keys_for_ids(ids).tolist() == in_ram.keys_for_ids(ids).tolist()
    assert on_disk.labels_for_ids(ids).tolist() == in_ram.labels_for_ids(ids).tolist()
    assert on_disk.attrs_for_ids(ids) == in_ram.attrs_for_ids(ids)
    keys = ["img/0003.png", "img/0399.png", "img/0003.png"]
    np.testing.assert_array_equal(on_disk.ids_for_keys(keys), [3, 399, 3])
    np.testing.assert_array_equal(on_disk.ids, in_ram.ids)
    for got, want in zip(on_disk.labelled_items(), in_ram.labelled_items()):
        assert got.tolist() == want.tolist()
    assert on_disk.has_labels and len(on_disk) == N and on_disk.count_metadata_rows() == N
    keys_grid, labels_grid = on_disk.keys_and_labels(np.array([[-1, 3], [4, -1]]))
    assert keys_grid.tolist() == [[None, "img/0003.png"], ["img/0004.png", None]]
    assert labels_grid.tolist() == [[None, "class-" + str(in_ram.labels_for_ids([3])[0][-1])], [None, None]]


def test_classify_and_propagation_unchanged(saved: tuple[Path, np.ndarray]) -> None:
    path, x = saved
    on_disk, in_ram = VectorIndex.load(path), VectorIndex.load(path, metadata_in_ram=True)
    for exact in (True, False):
        got = KNNClassifier(on_disk, k=5, exact=exact).predict(x[::7])
        assert got.tolist() == KNNClassifier(in_ram, k=5, exact=exact).predict(x[::7]).tolist()
    a, b = propagate_labels(on_disk, k=5), propagate_labels(in_ram, k=5)
    assert a.labels.tolist() == b.labels.tolist()
    np.testing.assert_allclose(a.confidence, b.confidence)


def test_unknown_ids_and_keys_are_refused(saved: tuple[Path, np.ndarray]) -> None:
    index = VectorIndex.load(saved[0])
    with pytest.raises(VectorIndexError) as excinfo:
        index.keys_for_ids([3, 4000])
    assert_index_error(excinfo, "1 id(s) not in the index", "4000")
    with pytest.raises(VectorIndexError) as excinfo:
        index.ids_for_keys(["img/0003.png", "nope"])
    assert_index_error(excinfo, "not in the index", "nope")
    with pytest.raises(VectorIndexError):
        index.attrs_for_ids([4000])


def test_first_change_copies_the_rows_and_saves_them(saved: tuple[Path, np.ndarray]) -> None:
    path, x = saved
    index = VectorIndex.load(path)
    index.remove(keys=["img/0001.png"])
    new = index.add(x[:2] + 100, keys=["new-a", "new-b"], labels=["class-9", None])
    index.save(path)
    again = VectorIndex.load(path)
    assert len(again) == N + 1 and again.ids_for_keys(["new-b"]).tolist() == [new[1]]
    with pytest.raises(VectorIndexError):
        again.ids_for_keys(["img/0001.png"])
    assert again.search(x[:1] + 100, 1).labels[0, 0] == "class-9"


def test_unchanged_copy_saves_the_same_rows(saved: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    index = VectorIndex.load(saved[0])
    index.save(tmp_path / "copy")
    copy = VectorIndex.load(tmp_path / "copy", full_check=True)
    assert copy.attrs_for_ids(np.arange(N)) == index.attrs_for_ids(np.arange(N))


def test_threads_share_a_loaded_index(saved: tuple[Path, np.ndarray]) -> None:
    path, x = saved
    index = VectorIndex.load(path)
    want = index.search(x, 5).keys
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(5):
                assert (index.search(x, 5).keys == want).all()
                index.attrs_for_ids(np.arange(0, N, 3))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# -- the record of a full check ---------------------------------------------------------------------


def test_save_records_and_load_trusts_the_record(saved: tuple[Path, np.ndarray], monkeypatch) -> None:
    path, _ = saved
    assert (path / verification.RECORD).is_file()
    hashed = _hashes(monkeypatch)
    VectorIndex.load(path)
    assert hashed == ["manifest.json"]  # the origin of the load; no data file read whole
    hashed.clear()
    VectorIndex.load(path, full_check=True)
    assert set(hashed) >= {"meta.sqlite", "vectors.npy", "ids.npy"}
    assert hashed.count("meta.sqlite") == 1  # writing the record does not make the load start over


@pytest.mark.parametrize("name", ["meta.sqlite", "vectors.npy"])
def test_a_changed_file_is_checked_again(saved: tuple[Path, np.ndarray], monkeypatch, name: str) -> None:
    path, _ = saved
    data = (path / name).read_bytes()
    (path / name).write_bytes(data)  # same bytes, written again: new times, so the record no longer vouches
    hashed = _hashes(monkeypatch)
    VectorIndex.load(path)
    assert name in hashed
    hashed.clear()
    VectorIndex.load(path)  # recorded again by the load that checked it
    assert hashed == ["manifest.json"]


def test_a_damaged_file_is_caught_despite_the_record(saved: tuple[Path, np.ndarray]) -> None:
    path, _ = saved
    data = bytearray((path / "meta.sqlite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "meta.sqlite").write_bytes(bytes(data))
    with pytest.raises(VectorIndexError) as excinfo:
        VectorIndex.load(path)
    assert_index_error(excinfo, "meta.sqlite", "sha256")


def test_a_copied_index_is_checked_once(saved: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(saved[0], tmp_path / "copied", copy_function=shutil.copy2)  # times kept, not inodes
    hashed = _hashes(monkeypatch)
    VectorIndex.load(tmp_path / "copied")
    assert "meta.sqlite" in hashed


def test_untrusted_loads_never_use_the_record(saved: tuple[Path, np.ndarray], monkeypatch) -> None:
    hashed = _hashes(monkeypatch)
    VectorIndex.load(saved[0], untrusted=True)
    assert {"meta.sqlite", "vectors.npy", "ids.npy"} <= set(hashed)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_index_loads_without_recording(saved: tuple[Path, np.ndarray]) -> None:
    path, x = saved
    (path / verification.RECORD).unlink()
    os.chmod(path, 0o555)
    try:
        assert VectorIndex.load(path).search(x[:1], 1).keys[0, 0] == "img/0000.png"
        assert not (path / verification.RECORD).exists()
    finally:
        os.chmod(path, 0o755)


def _forge(path: Path, sql: str) -> None:
    """A tamperer with write access: change meta.sqlite, rehash the manifest, forge the record."""
    with sqlite3.connect(path / "meta.sqlite") as conn:
        conn.execute(sql)
    conn.close()
    manifest = json.loads((path / "manifest.json").read_text())
    data = (path / "meta.sqlite").read_bytes()
    manifest["files"]["meta.sqlite"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    for suffix in ("-wal", "-shm"):
        (path / f"meta.sqlite{suffix}").unlink(missing_ok=True)
    verification.write_record(path, index_storage.sha256_file(path / "manifest.json"),
                              verification.identities(path, manifest["files"]))


@pytest.mark.parametrize("sql, read, reason", [
    ("UPDATE items SET label = x'00ff' WHERE id = 3", lambda ix, x: ix.labels_for_ids([3]), "blob label"),
    ("UPDATE items SET key = x'3432' WHERE id = 3", lambda ix, x: ix.keys_for_ids([3]), "blob key"),
    ("UPDATE items SET attrs = '[1, 2]' WHERE id = 3", lambda ix, x: ix.attrs_for_ids([3]), "a JSON array"),
    ("UPDATE items SET label = zeroblob(9000) WHERE id = 3", lambda ix, x: ix.labelled_items(), "blob label"),
    ("UPDATE items SET key = 'img/0003.png' || zeroblob(5000) WHERE id = 3",
     lambda ix, x: ix.search(x[3:4], 3), "key of"),
])
def test_hostile_rows_behind_a_forged_record_fail_when_read(saved, sql, read, reason) -> None:
    path, x = saved
    _forge(path, sql)
    index = VectorIndex.load(path)  # the record vouches for the files: no full check
    assert index.keys_for_ids([5]).tolist() == ["img/0005.png"]  # other rows still read
    with pytest.raises(VectorIndexError) as excinfo:
        read(index, x)
    assert_index_error(excinfo, "meta.sqlite", "item 3", reason)
    (path / verification.RECORD).unlink()
    with pytest.raises(VectorIndexError) as excinfo:  # without the record the load itself refuses it
        VectorIndex.load(path)
    assert_index_error(excinfo, "meta.sqlite", "item 3")


def test_a_forged_record_with_missing_rows_gives_no_keys(saved) -> None:
    path, x = saved
    _forge(path, "DELETE FROM items WHERE id = 3")
    index = VectorIndex.load(path)
    hits = index.search(x[3:4], 1)
    assert hits.ids[0, 0] == 3 and hits.keys[0, 0] is None
    with pytest.raises(VectorIndexError) as excinfo:
        index.ids  # noqa: B018 (a property that reads every id)
    assert_index_error(excinfo, "meta.sqlite", "399 items", "400")


def test_a_hostile_row_stops_the_first_change(saved) -> None:
    path, x = saved
    _forge(path, "UPDATE items SET label = x'00' WHERE id = 3")
    index = VectorIndex.load(path)
    with pytest.raises(VectorIndexError) as excinfo:
        index.add(x[:1], keys=["new"])
    assert_index_error(excinfo, "meta.sqlite", "item 3", "blob label")


def test_a_record_that_cannot_be_written_costs_only_time(saved, monkeypatch) -> None:
    path, x = saved
    (path / verification.RECORD).unlink()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(verification, "write_record", refuse)
    assert VectorIndex.load(path).search(x[:1], 1).keys[0, 0] == "img/0000.png"
    assert not (path / verification.RECORD).exists()


def test_a_loaded_index_keeps_reading_its_version_after_a_save_replaces_it(saved) -> None:
    path, x = saved
    old, newer = VectorIndex.load(path), VectorIndex.load(path)
    newer.remove(keys=["img/0000.png"])
    newer.add(x[:1], keys=["replacement"])
    newer.save(path)  # the directory is swapped; the old version's files are deleted
    assert old.search(x[:1], 1).keys[0, 0] == "img/0000.png" and old.attrs_for_ids([1]) == [{"row": 1, "tags": ["a"]}]
    assert VectorIndex.load(path).search(x[:1], 1).keys[0, 0] == "replacement"
    old.add(x[:1], keys=["late"])  # copies the version it loaded, then refuses to save over the newer one
    with pytest.raises(VectorIndexError, match="saved by another writer"):
        old.save(path)
