"""A .npy source is read with plain file reads (its pages are not mapped into the process) and
its default keys are made per chunk; the values and keys are the memory map's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamese.data.loading import iter_item_chunks, load_items
from siamese.errors import SiameseError
from siamese.data.sources.arrays import RowKeys, npy_reader

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("layout", ["C", "fortran", "big-endian", "images"])
def test_npy_chunks_equal_the_array(layout, tmp_path: Path) -> None:
    x = RNG.normal(size=(23, 2, 3, 3) if layout == "images" else (23, 5)).astype(np.float32)
    stored = np.asfortranarray(x) if layout == "fortran" else x.astype(">f4") if layout == "big-endian" else x
    np.save(tmp_path / "x.npy", stored)
    whole = load_items(tmp_path / "x.npy", normalization={"offset": 0.0, "scale": 1.0})
    chunks = list(iter_item_chunks(tmp_path / "x.npy", 5, normalization={"offset": 0.0, "scale": 1.0}))
    assert np.array_equal(whole.x.numpy(), x)
    assert np.array_equal(np.concatenate([c.x.numpy() for c in chunks]), x)
    assert [k for c in chunks for k in c.keys] == whole.keys == [str(i) for i in range(23)]


def test_truncated_npy_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", RNG.normal(size=(50, 4)).astype(np.float32))
    reader = npy_reader(tmp_path / "x.npy")
    with open(tmp_path / "x.npy", "r+b") as f:
        f.truncate(f.seek(0, 2) - 16)
    with pytest.raises(SiameseError, match="truncated"):
        reader.read(40, 50)


def test_row_keys_behave_like_the_list() -> None:
    keys, plain = RowKeys(12), [str(i) for i in range(12)]
    assert list(keys) == plain and len(keys) == 12 and keys[-1] == "11" and "7" in keys
    assert list(keys[3:9]) == plain[3:9] and keys[::4] == plain[::4] and list(keys[:20]) == plain
    assert keys[2:8].take(np.array([0, 5])) == ["2", "7"]
    with pytest.raises(IndexError):
        keys[12]
