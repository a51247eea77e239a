"""Pairs from files, labels and a few labels per class; batch sampling for the loss."""

import numpy as np
import pytest
import torch

from siamese import SiameseError
from siamese.data.pairs import (
    make_pairs,
    pairs_from_labels,
    read_pairs_csv,
    sample_pair_batch,
    select_per_class,
    write_pairs_csv,
)

KEYS = [f"item{i}" for i in range(6)]


def write(tmp_path, text):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    return path


def test_pairs_file_round_trip(tmp_path):
    path = write(tmp_path, "a,b,label\nitem0,item1,1\nitem2,item0,0\nitem3,item4,1\n")
    pairs = read_pairs_csv(path, KEYS)
    assert sorted(zip(pairs.a, pairs.b, pairs.label)) == [(0, 1, 1), (0, 2, 0), (3, 4, 1)]
    out = tmp_path / "again.csv"
    write_pairs_csv(out, pairs, KEYS)
    again = read_pairs_csv(out, KEYS)
    assert np.array_equal(again.a, pairs.a) and np.array_equal(again.label, pairs.label)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a,b,label\nitem0,nobody,1\n", "not among the items"),
        ("a,b,label\nitem0,item0,1\n", "itself"),
        ("a,b,label\nitem0,item1,1\nitem1,item0,0\n", "both 1 and 0"),
        ("a,b\nitem0,item1\n", "missing column"),
        ("a,b,label\nitem0,item1,yes\n", "0 or 1"),
        ("a,b,label\nitem0,item1,2\n", "0 or 1"),
        ("a,b,label\n", "no pairs"),
    ],
)
def test_bad_pair_files(tmp_path, text, match):
    with pytest.raises(SiameseError, match=match):
        read_pairs_csv(write(tmp_path, text), KEYS)


def test_missing_pair_file_and_one_kind_warning(tmp_path, caplog):
    with pytest.raises(SiameseError, match="does not exist"):
        read_pairs_csv(tmp_path / "none.csv", KEYS)
    pairs = read_pairs_csv(write(tmp_path, "a,b,label\nitem0,item1,1\nitem0,item1,1\n"), KEYS)
    assert len(pairs) == 1  # duplicate dropped
    assert "all 1 pairs are positive" in caplog.text


def test_pairs_from_labels_are_balanced_and_use_only_labelled_items():
    codes = np.array([0, 0, 1, 1, -1, 2, 2, -1, 0, 1])
    pairs = pairs_from_labels(codes, seed=0)
    assert pairs.n_positive == pairs.n_negative > 0
    assert not np.isin(pairs.items(), np.flatnonzero(codes < 0)).any()
    assert np.array_equal(pairs.label, (codes[pairs.a] == codes[pairs.b]).astype(int))
    limited = pairs_from_labels(codes, n_pairs=4, seed=0)
    assert limited.n_positive == limited.n_negative == 2


def test_select_per_class_is_seeded_and_exact():
    codes = np.repeat(np.arange(4), 10)
    mask = select_per_class(codes, 3, seed=5)
    assert mask.sum() == 12 and all(mask[codes == c].sum() == 3 for c in range(4))
    assert np.array_equal(mask, select_per_class(codes, 3, seed=5))
    with pytest.raises(SiameseError):
        select_per_class(codes, 0)


def test_pair_batch_indices_point_at_the_right_items():
    pairs = make_pairs([0, 2, 4, 1], [1, 3, 5, 5], [1, 1, 0, 0])
    items, (a1, p, a2, n) = sample_pair_batch(pairs, 4, torch.Generator().manual_seed(0))
    got_pos = {tuple(sorted((items[i], items[j]))) for i, j in zip(a1.tolist(), p.tolist())}
    got_neg = {tuple(sorted((items[i], items[j]))) for i, j in zip(a2.tolist(), n.tolist())}
    assert got_pos == {(0, 1), (2, 3)} and got_neg == {(4, 5), (1, 5)}
