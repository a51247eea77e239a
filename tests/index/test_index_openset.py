"""Open-set kNN: `unknown` exactly when the nearest labelled neighbour lies beyond max_distance."""

from __future__ import annotations

import numpy as np
import pytest

from index import KNNClassifier, VectorIndex, VectorIndexError

# labelled a at (0, 0) and b at (10, 0); an unlabelled item at (5, 5) must not count as a neighbour
VECTORS = np.array([[0, 0], [0, 1], [10, 0], [10, 1], [5, 5]], dtype=np.float32)
LABELS = ["a", "a", "b", "b", None]
QUERIES = np.array([[1, 0], [9, 0], [4, 4], [6, 0], [0, -3]], dtype=np.float32)
NEAREST = np.array([1.0, 1.0, 5.0, 4.0, 3.0])  # to the nearest *labelled* item (no ties)


@pytest.fixture(params=["flat", "hnsw"])
def index(request):
    return VectorIndex.build(VECTORS, labels=LABELS, kind=request.param)


@pytest.mark.parametrize("exact", [True, False])
def test_nearest_distance_ignores_unlabelled_items(index, exact):
    got = KNNClassifier(index, k=1, exact=exact).nearest_distance(QUERIES)
    np.testing.assert_allclose(got, NEAREST, rtol=1e-6)


@pytest.mark.parametrize("max_distance, expected", [
    (None, ["a", "b", "a", "b", "a"]),  # off by default: the closed-set vote
    (0.5, ["unknown"] * 5),
    (3.0, ["a", "b", "unknown", "unknown", "a"]),  # exactly at the threshold is still known
    (4.0, ["a", "b", "unknown", "b", "a"]),
    (6.0, ["a", "b", "a", "b", "a"]),
])
@pytest.mark.parametrize("exact", [True, False])
def test_unknown_exactly_beyond_max_distance(index, max_distance, expected, exact):
    classifier = KNNClassifier(index, k=1, exact=exact, max_distance=max_distance)
    assert classifier.predict(QUERIES).tolist() == expected
    assert classifier.predict_proba(QUERIES).shape == (5, 2)  # the vote itself is unchanged


def test_rule_uses_the_nearest_neighbour_not_the_vote(index):
    # k=3: the vote for (1, 0) is a, a, b; the nearest labelled item (distance 1) decides knownness
    classifier = KNNClassifier(index, k=3, max_distance=1.0, unknown="?")
    assert classifier.predict(QUERIES).tolist() == ["a", "b", "?", "?", "?"]


def test_cosine_distances():
    index = VectorIndex.build(np.array([[1, 0], [0, 1]], dtype=np.float32), labels=["x", "y"], metric="cosine")
    queries = np.array([[1, 0.1], [1, 1]], dtype=np.float32)  # 1 - cos: about 0.005 and 1 - 1/sqrt(2)
    classifier = KNNClassifier(index, k=1, max_distance=0.1)
    assert classifier.predict(queries).tolist() == ["x", "unknown"]


@pytest.mark.parametrize("kwargs, match", [
    ({"max_distance": float("nan")}, "max_distance"),
    ({"max_distance": "1"}, "max_distance"),
    ({"max_distance": True}, "max_distance"),
    ({"unknown": ""}, "unknown"),
    ({"unknown": 3}, "unknown"),
])
def test_bad_open_set_options(index, kwargs, match):
    with pytest.raises(VectorIndexError, match=match):
        KNNClassifier(index, **kwargs)


def test_unknown_label_must_not_be_a_class():
    index = VectorIndex.build(VECTORS[:2], labels=["unknown", "a"])
    with pytest.raises(VectorIndexError, match="unknown="):
        KNNClassifier(index, k=1, max_distance=1.0).predict(QUERIES)
    assert KNNClassifier(index, k=1, max_distance=1.0, unknown="other").predict(QUERIES[:1]).tolist() == ["unknown"]
