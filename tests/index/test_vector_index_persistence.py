"""save/load: layout, integrity checks on damaged or lying files, untrusted loading."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest

from index import VectorIndex
from index._faiss import faiss_call
from index_testlib import KINDS, assert_index_error


def _saved(small: np.ndarray, path: Path, kind: str = "flat", n: int = 200, **save_kwargs) -> VectorIndex:
    index = VectorIndex.build(
        small[:n],
        keys=[f"k{i}" for i in range(n)],
        labels=[None if i % 4 == 0 else str(i % 3) for i in range(n)],
        kind=kind,
        model_fingerprint="fp",
        info={"note": "x"},
    )
    index.remove(ids=[3, 4])
    index.save(path, **save_kwargs)
    return index


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _write_manifest(path: Path, manifest: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest))


def _rehash(path: Path, name: str) -> None:
    """Make the manifest agree with the current bytes of `name` (a tamperer who knows the format)."""
    manifest = _manifest(path)
    data = (path / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _write_manifest(path, manifest)


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    pos = len(data) // 2 if offset is None else offset
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))


def test_layout_and_manifest(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    names = sorted(os.listdir(tmp_path / "idx"))
    assert names == [".siamese-output.json", ".verified.json", "ids.npy", "manifest.json", "meta.sqlite",
                     "vectors.faiss", "vectors.npy"]
    manifest = _manifest(tmp_path / "idx")
    assert manifest["format"] == "siamese-index" and manifest["format_version"] == 1
    assert (manifest["dim"], manifest["metric"], manifest["kind"], manifest["count"], manifest["next_id"]) == (16, "l2", "flat", 198, 200)
    assert manifest["model_fingerprint"] == "fp" and manifest["info"] == {"note": "x"}
    assert set(manifest["libraries"]) >= {"numpy", "faiss"} and manifest["created_at"]
    for name in ("vectors.faiss", "meta.sqlite", "vectors.npy", "ids.npy"):
        digest = hashlib.sha256((tmp_path / "idx" / name).read_bytes()).hexdigest()
        assert manifest["files"][name]["sha256"] == digest
    assert np.load(tmp_path / "idx" / "vectors.npy", allow_pickle=False).shape == (198, 16)
    conn = sqlite3.connect(tmp_path / "idx" / "meta.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 198
    conn.close()


def test_load_writes_nothing_into_the_directory(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "idx").iterdir()}
    VectorIndex.load(tmp_path / "idx")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "idx").iterdir()} == before


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_ivf_kinds_skip_vectors_unless_asked(kind: str, small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "a", kind=kind, n=600)
    assert not (tmp_path / "a" / "vectors.npy").exists()
    _saved(small, tmp_path / "b", kind=kind, n=600, store_vectors=True)
    assert (tmp_path / "b" / "vectors.npy").exists()


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("vectors.faiss", "flip"),
        ("meta.sqlite", "flip"),
        ("vectors.npy", "flip"),
        ("ids.npy", "flip"),
        ("vectors.faiss", "truncate"),
        ("meta.sqlite", "truncate"),
        ("vectors.faiss", "delete"),
        ("meta.sqlite", "delete"),
    ],
)
def test_damaged_file_is_named(name: str, damage: str, small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    target = tmp_path / "idx" / name
    if damage == "flip":
        _flip_byte(target)
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        target.unlink()
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx")
    assert_index_error(excinfo, name)


@pytest.mark.parametrize(("name", "garbage"), [("vectors.faiss", b"IxMp" + b"\x00garbage" * 50),
                                              ("meta.sqlite", b"not a database" * 100)])
def test_garbage_file_with_matching_checksum(small: np.ndarray, tmp_path: Path, name: str, garbage: bytes) -> None:
    _saved(small, tmp_path / "idx")
    (tmp_path / "idx" / name).write_bytes(garbage)
    _rehash(tmp_path / "idx", name)
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx")
    assert_index_error(excinfo, name)


def test_wrong_kind_of_faiss_index(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    other = faiss.IndexFlatL2(16)
    other.add(small[:198])
    faiss.write_index(other, str(tmp_path / "idx" / "vectors.faiss"))
    _rehash(tmp_path / "idx", "vectors.faiss")
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx")
    assert_index_error(excinfo, "vectors.faiss", "IndexIDMap")


def _rewrap(path: Path, wrap, ids: np.ndarray) -> None:
    """Replace the saved flat index by `wrap(IndexFlat)` holding the same vectors under `ids`."""
    saved = faiss.read_index(str(path / "vectors.faiss"))
    inner = faiss.downcast_index(saved.index)
    vectors = faiss_call(inner, "reconstruct_n", 0, inner.ntotal)
    rewrapped = wrap(faiss.IndexFlatL2(inner.d))
    faiss_call(rewrapped, "add_with_ids", vectors, ids)
    faiss.write_index(rewrapped, str(path / "vectors.faiss"))
    _rehash(path, "vectors.faiss")


def test_older_saves_with_an_idmap2_still_load(small: np.ndarray, tmp_path: Path) -> None:
    index = _saved(small, tmp_path / "idx")
    _rewrap(tmp_path / "idx", faiss.IndexIDMap2, index.ids)
    loaded = VectorIndex.load(tmp_path / "idx")
    np.testing.assert_array_equal(loaded.reconstruct([0, 5, 199]), index.reconstruct([0, 5, 199]))
    np.testing.assert_array_equal(loaded.search(small[:7], 3).ids, index.search(small[:7], 3).ids)
    loaded.remove(ids=[5])
    np.testing.assert_array_equal(loaded.reconstruct([6, 199]), index.reconstruct([6, 199]))


def test_id_map_out_of_order_is_refused(small: np.ndarray, tmp_path: Path) -> None:
    index = _saved(small, tmp_path / "idx")
    _rewrap(tmp_path / "idx", faiss.IndexIDMap, index.ids[::-1].copy())
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx")
    assert_index_error(excinfo, "vectors.faiss", "increasing id order")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("format_version", 2, "format_version"),
        ("format", "other", "format"),
        ("dim", 8, "dimension 16 but manifest.json says 8"),
        ("count", 198 + 5, "198"),
        ("next_id", 10, "next_id"),
        ("metric", "hamming", "metric"),
        ("kind", "hnsw", "kind"),
        ("info", [1, 2], "info"),
    ],
)
def test_lying_manifest(field: str, value, fragment: str, small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    manifest = _manifest(tmp_path / "idx")
    manifest[field] = value
    _write_manifest(tmp_path / "idx", manifest)
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx")
    assert_index_error(excinfo, fragment)


def test_count_mismatch_names_meta(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    manifest = _manifest(tmp_path / "idx")
    manifest["count"] = 150
    _write_manifest(tmp_path / "idx", manifest)
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx")
    assert_index_error(excinfo, "meta.sqlite", "150")


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b"[1, 2]", b"\xff\xfe\x00"], ids=["empty", "broken", "list", "binary"]
)
def test_broken_manifest(content: bytes, small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    (tmp_path / "idx" / "manifest.json").write_bytes(content)
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx")
    assert_index_error(excinfo, "manifest.json")


def test_manifest_cannot_point_outside(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    manifest = _manifest(tmp_path / "idx")
    manifest["files"]["../../etc/passwd"] = {"sha256": "0" * 64, "bytes": 1}
    _write_manifest(tmp_path / "idx", manifest)
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx")
    assert_index_error(excinfo, "manifest.json", "passwd")


def test_missing_manifest_and_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "empty")
    assert_index_error(excinfo, "manifest.json")
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "nowhere")
    assert_index_error(excinfo, "does not exist")


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_untrusted_never_touches_faiss_file(kind: str, small: np.ndarray, tmp_path: Path) -> None:
    original = _saved(small, tmp_path / "idx", kind=kind)
    queries = small[:30] + 0.05
    expected = original.search(queries, 8)
    (tmp_path / "idx" / "vectors.faiss").write_bytes(b"crafted" * 1000)  # corrupt, manifest not updated
    loaded = VectorIndex.load(tmp_path / "idx", untrusted=True)
    result = loaded.search(queries, 8)
    np.testing.assert_array_equal(result.ids, expected.ids)
    np.testing.assert_array_equal(result.keys, expected.keys)
    np.testing.assert_array_equal(result.labels, expected.labels)
    np.testing.assert_allclose(result.distances, expected.distances, rtol=1e-6)
    (tmp_path / "idx" / "vectors.faiss").unlink()
    again = VectorIndex.load(tmp_path / "idx", untrusted=True)
    assert again.next_id == 200 and again.model_fingerprint == "fp" and again.kind == kind
    np.testing.assert_array_equal(again.add(small[:1], keys=["new"]), [200])


def test_untrusted_cosine_flat_identical(small: np.ndarray, tmp_path: Path) -> None:
    index = VectorIndex.build(small, metric="cosine")
    index.save(tmp_path / "c")
    loaded = VectorIndex.load(tmp_path / "c", untrusted=True)
    a, b = index.search(small[:40], 10), loaded.search(small[:40], 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)


def test_untrusted_ivf(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "plain", kind="ivf")
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "plain", untrusted=True)
    assert_index_error(excinfo, "vectors.npy", "store_vectors=True")
    original = _saved(small, tmp_path / "full", kind="ivf", store_vectors=True)
    loaded = VectorIndex.load(tmp_path / "full", untrusted=True)
    np.testing.assert_array_equal(loaded.ids, original.ids)
    assert loaded.search(small[10:11], 1).ids[0, 0] == 10


def test_untrusted_rejects_pickled_npy(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    np.save(tmp_path / "idx" / "ids.npy", np.array([{"evil": 1}] * 198, dtype=object), allow_pickle=True)
    _rehash(tmp_path / "idx", "ids.npy")
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx", untrusted=True)
    assert_index_error(excinfo, "ids.npy")


def test_untrusted_rejects_wrong_shape(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    np.save(tmp_path / "idx" / "vectors.npy", np.zeros((198, 8), dtype=np.float32))
    _rehash(tmp_path / "idx", "vectors.npy")
    with pytest.raises(Exception) as excinfo:
        VectorIndex.load(tmp_path / "idx", untrusted=True)
    assert_index_error(excinfo, "vectors.npy", "(198, 16)")


def test_save_replaces_existing_index(small: np.ndarray, tmp_path: Path) -> None:
    _saved(small, tmp_path / "idx")
    replacement = VectorIndex.build(small[:7], metric="cosine", kind="hnsw")
    replacement.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert (len(loaded), loaded.metric, loaded.kind) == (7, "cosine", "hnsw")
    assert sorted(os.listdir(tmp_path)) == [".idx.lock", "idx"]  # the writer lock; no temporary or old directories
    loaded.save(tmp_path / "idx")  # saving onto the directory it was loaded from
    assert len(VectorIndex.load(tmp_path / "idx")) == 7


def test_save_refuses_foreign_directory(small: np.ndarray, tmp_path: Path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    index = VectorIndex.build(small[:5])
    with pytest.raises(Exception) as excinfo:
        index.save(precious)
    assert_index_error(excinfo, "is not a siamese index output (it holds 1 entry: thesis.txt)")
    assert (precious / "thesis.txt").read_text() == "do not delete"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(Exception) as excinfo:
        index.save(tmp_path / "afile")
    assert_index_error(excinfo, "is a file")


def test_save_rejects_unserialisable_info(small: np.ndarray, tmp_path: Path) -> None:
    index = VectorIndex.build(small[:5])
    index.info["when"] = object()
    with pytest.raises(Exception) as excinfo:
        index.save(tmp_path / "idx")
    assert_index_error(excinfo, "info")
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_every_kind_same_results(kind: str, small: np.ndarray, tmp_path: Path) -> None:
    index = VectorIndex.build(small, kind=kind, labels=[str(i % 3) for i in range(600)])
    index.save(tmp_path / kind)
    loaded = VectorIndex.load(tmp_path / kind)
    assert loaded.params == index.params
    a, b = index.search(small[:25], 5), loaded.search(small[:25], 5)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_empty_flat_round_trip(tmp_path: Path) -> None:
    VectorIndex.empty(4, metric="ip").save(tmp_path / "e")
    for untrusted in (False, True):
        loaded = VectorIndex.load(tmp_path / "e", untrusted=untrusted)
        assert len(loaded) == 0 and loaded.dim == 4 and loaded.metric == "ip"
        np.testing.assert_array_equal(loaded.add(np.ones((2, 4))), [0, 1])


def test_untrained_ivf_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(Exception) as excinfo:
        VectorIndex.empty(4, kind="ivf").save(tmp_path / "x")
    assert_index_error(excinfo, "train")
