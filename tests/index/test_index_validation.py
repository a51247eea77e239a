"""Every bad input at the public boundary raises VectorIndexError with a one-line message."""

from __future__ import annotations

import numpy as np
import pytest

from index import KNNClassifier, VectorIndex, VectorIndexError, kmeans
from index_testlib import assert_index_error

GOOD = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)


def _with(value_at: tuple[int, int], value: float) -> np.ndarray:
    x = GOOD.astype(np.float64)
    x[value_at] = value
    return x


BAD_VECTORS = [
    (GOOD[0], "2-D"),
    (GOOD[None], "2-D"),
    (np.empty((0, 4), dtype=np.float32), "empty"),
    (np.empty((5, 0), dtype=np.float32), "empty"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric dtype"),
    (np.array([[1.0, None], [2.0, 3.0]], dtype=object), "numeric dtype"),
    (np.ones((3, 4), dtype=bool), "numeric dtype"),
    (np.ones((3, 4), dtype=np.complex64), "numeric dtype"),
    (_with((3, 1), np.nan), "NaN"),
    (_with((5, 2), np.inf), "[5]"),
    (_with((7, 0), 1e39), "too large for float32"),
    ([[1.0, 2.0], [3.0]], "rectangular"),
    (None, "None"),
]


@pytest.mark.parametrize(("vectors", "fragment"), BAD_VECTORS)
def test_build_rejects_bad_vectors(vectors, fragment: str) -> None:
    with pytest.raises(VectorIndexError) as excinfo:
        VectorIndex.build(vectors)
    assert_index_error(excinfo, "vectors", fragment)


@pytest.mark.parametrize(("vectors", "fragment"), BAD_VECTORS[:-2])
def test_add_rejects_bad_vectors(vectors, fragment: str) -> None:
    index = VectorIndex.build(GOOD)
    with pytest.raises(VectorIndexError) as excinfo:
        index.add(vectors)
    assert_index_error(excinfo, "vectors", fragment)
    assert len(index) == 30


@pytest.mark.parametrize(
    ("queries", "fragment"),
    [
        (np.ones(5, dtype=np.float32), "dimension 5"),
        (np.ones((2, 5), dtype=np.float32), "dimension 5 but the index has dimension 4"),
        (np.ones((2, 2, 4), dtype=np.float32), "2-D"),
        (np.empty((0, 4), dtype=np.float32), "empty"),
        (np.array([[np.nan, 0, 0, 0]]), "NaN"),
        (np.array(["abcd"]), "numeric"),
    ],
)
def test_search_rejects_bad_queries(queries, fragment: str) -> None:
    index = VectorIndex.build(GOOD)
    with pytest.raises(VectorIndexError) as excinfo:
        index.search(queries, 3)
    assert_index_error(excinfo, "queries", fragment)
    with pytest.raises(VectorIndexError):
        index.range_search(queries, 1.0)


def test_add_wrong_dimension() -> None:
    index = VectorIndex.build(GOOD)
    with pytest.raises(VectorIndexError) as excinfo:
        index.add(np.ones((2, 5)))
    assert_index_error(excinfo, "vectors", "dimension 5", "dimension 4")


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"keys": ["a"] * 3}, ("keys", "3 entries", "30 vectors")),
        ({"labels": ["a"] * 29}, ("labels", "29 entries")),
        ({"attrs": [{}] * 31}, ("attrs", "31 entries")),
        ({"keys": "abc"}, ("keys", "single str")),
        ({"keys": [1.5] * 30}, ("keys[0]", "str or int")),
        ({"keys": [None] * 30}, ("keys[0]", "None")),
        ({"labels": [1.5] * 30}, ("labels[0]", "str, int or None")),
        ({"labels": [True] * 30}, ("labels[0]", "bool")),
        ({"attrs": [[1]] * 30}, ("attrs[0]", "dict")),
        ({"attrs": [{"s": {1}}] * 30}, ("attrs[0]", "JSON")),
        ({"attrs": [{"x": float("nan")}] * 30}, ("attrs[0]", "JSON")),
        ({"metric": "euclid"}, ("metric", "'euclid'", "'l2', 'cosine', 'ip'")),
        ({"kind": "annoy"}, ("kind", "'annoy'", "'flat', 'hnsw', 'ivf', 'ivfpq', 'auto'")),
        ({"chunk_size": 0}, ("chunk_size",)),
        ({"seed": -1}, ("seed",)),
        ({"memory_budget_bytes": 0}, ("memory_budget_bytes",)),
        ({"model_fingerprint": 123}, ("model_fingerprint",)),
        ({"info": "x"}, ("info",)),
        ({"info": {"f": object()}}, ("info", "JSON")),
        ({"kind": "ivfpq", "pq_m": 3}, ("pq_m=3", "[1, 2, 4]")),
        ({"kind": "ivfpq"}, ("ivfpq", "256")),
    ],
)
def test_build_rejects_bad_arguments(kwargs: dict, fragments: tuple[str, ...]) -> None:
    with pytest.raises(VectorIndexError) as excinfo:
        VectorIndex.build(GOOD, **kwargs)
    assert_index_error(excinfo, *fragments)


def test_cosine_zero_vector() -> None:
    x = GOOD.copy()
    x[4] = 0
    with pytest.raises(VectorIndexError) as excinfo:
        VectorIndex.build(x, metric="cosine")
    assert_index_error(excinfo, "zero-norm", "[4]")
    index = VectorIndex.build(GOOD, metric="cosine")
    with pytest.raises(VectorIndexError) as excinfo:
        index.search(np.zeros(4), 1)
    assert_index_error(excinfo, "queries", "zero-norm")


def test_empty_index_search_and_dim() -> None:
    index = VectorIndex.empty(4)
    with pytest.raises(VectorIndexError) as excinfo:
        index.search(GOOD[0], 1)
    assert_index_error(excinfo, "empty")
    with pytest.raises(VectorIndexError) as excinfo:
        VectorIndex.empty(0)
    assert_index_error(excinfo, "dim")


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda ix: ix.keys_for_ids([0, 99]), ("ids", "[99]")),
        (lambda ix: ix.labels_for_ids([-5]), ("ids", "[-5]")),
        (lambda ix: ix.attrs_for_ids([1000]), ("ids", "1000")),
        (lambda ix: ix.keys_for_ids([0.5]), ("ids", "integers")),
        (lambda ix: ix.remove(ids=[]), ("ids", "empty")),
        (lambda ix: ix.keys_for_ids("3"), ("ids", "string")),
        (lambda ix: ix.ids_for_keys(["0", "zzz"]), ("keys", "'zzz'")),
        (lambda ix: ix.ids_for_keys("0"), ("keys", "single str")),
        (lambda ix: ix.get("zzz"), ("'zzz'",)),
        (lambda ix: ix.reconstruct(77), ("ids", "77")),
        (lambda ix: ix.remove(ids=[[1, 2]]), ("ids", "1-D")),
        (lambda ix: ix.remove(ids=[True]), ("ids", "integers")),
    ],
)
def test_lookup_errors(call, fragments: tuple[str, ...]) -> None:
    index = VectorIndex.build(GOOD)
    with pytest.raises(VectorIndexError) as excinfo:
        call(index)
    assert_index_error(excinfo, *fragments)


def test_kmeans_errors() -> None:
    for kwargs, fragments in [
        ({"n_clusters": 31}, ("n_clusters=31", "30")),
        ({"n_clusters": 0}, ("n_clusters",)),
        ({"n_clusters": 2, "metric": "ip"}, ("metric", "'l2', 'cosine'")),
        ({"n_clusters": 2, "n_iter": 0}, ("n_iter",)),
        ({"n_clusters": 2, "seed": -3}, ("seed",)),
    ]:
        with pytest.raises(VectorIndexError) as excinfo:
            kmeans(GOOD, **kwargs)
        assert_index_error(excinfo, *fragments)
    with pytest.raises(VectorIndexError) as excinfo:
        kmeans(_with((2, 2), np.nan), 2)
    assert_index_error(excinfo, "NaN")


def test_knn_argument_errors() -> None:
    labelled = VectorIndex.build(GOOD, labels=["a", "b", "c"] * 10)
    for kwargs, fragments in [
        ({"k": 0}, ("k",)),
        ({"k": 2.0}, ("k", "integer")),
        ({"weights": "gaussian"}, ("weights", "'uniform', 'distance'")),
        ({"exact": "yes"}, ("exact",)),
    ]:
        with pytest.raises(VectorIndexError) as excinfo:
            KNNClassifier(labelled, **kwargs)
        assert_index_error(excinfo, *fragments)
    with pytest.raises(VectorIndexError) as excinfo:
        KNNClassifier("not an index")
    assert_index_error(excinfo, "VectorIndex")
    with pytest.raises(VectorIndexError) as excinfo:
        KNNClassifier(labelled, k=31).predict(GOOD[:2])
    assert_index_error(excinfo, "k=31", "labelled items (30 items)")
    with pytest.raises(VectorIndexError) as excinfo:
        KNNClassifier(labelled).predict(np.ones((1, 3)))
    assert_index_error(excinfo, "queries", "dimension 3")


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        VectorIndex.build(GOOD, metric="nope")
