"""--chunk-size is a memory budget (256MB, 1GiB), turned into items per chunk from the model's input
size; a bare number (it counted items before) is refused with the reason."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from index import VectorIndex
from siamese.cli import main
from siamese.cli.options import parse_size
from siamese.models.checkpoint import load_model
from siamese.models.model_input import chunk_items

import tiny_workspace


@pytest.mark.parametrize("text, expected", [("256MB", 256 * 10**6), ("256MiB", 256 * 2**20), ("1.5 GB", 1_500_000_000),
                                            ("2gib", 2 * 2**30), ("64KiB", 65536)])
def test_sizes_with_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text, words", [("1000", "has no unit"), ("lots", "is not a size"),
                                         ("5 parsecs", "not a size"), ("0MB", "not a size"), ("-1MB", "not a size")])
def test_sizes_without_a_unit_or_a_number_are_refused(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=words):
        parse_size(text)


def test_a_budget_becomes_items_of_the_models_input(tmp_path_factory):
    model = load_model(tiny_workspace.shared(tmp_path_factory) / "tuned")  # 1x8x8 inputs, 4-d embeddings
    per_item = 4 * (64 + 4)
    assert chunk_items(model, 10 * per_item) == 10 and chunk_items(model, 10 * per_item - 1) == 9
    assert chunk_items(model, 1) == 1  # never zero


def test_a_small_budget_builds_the_same_index_in_many_chunks(tmp_path_factory, tmp_path, capsys):
    root = tiny_workspace.shared(tmp_path_factory)
    for name, size in (("small", "1KB"), ("default", "256MiB")):
        assert main(["index", "build", str(root / "tuned"), str(root / "images"), "--out", str(tmp_path / name),
                     "--chunk-size", size, "-q"]) == 0
    small, default = (VectorIndex.load(tmp_path / name) for name in ("small", "default"))
    assert np.array_equal(small.ids, default.ids) and small.keys_for_ids(small.ids).tolist() == \
        default.keys_for_ids(default.ids).tolist()
    np.testing.assert_allclose(small.reconstruct(small.ids), default.reconstruct(default.ids), atol=1e-6)
    with pytest.raises(SystemExit):  # argparse: one line naming the flag
        main(["index", "build", str(root / "tuned"), str(root / "images"), "--out", str(tmp_path / "x"),
              "--chunk-size", "65536"])
    assert "--chunk-size: '65536' has no unit" in capsys.readouterr().err
