"""KNNClassifier: brute-force equivalence, unlabeled items ignored, sklearn agreement."""

from __future__ import annotations

import numpy as np
import pytest

from index import KNNClassifier, VectorIndex, VectorIndexError
from index_testlib import assert_index_error, brute_force, recall_at, top_k


def _labelled_set(seed: int = 0, n: int = 500, d: int = 8, n_classes: int = 4, unlabeled: float = 0.3):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    classes = np.array([f"c{i}" for i in range(n_classes)], dtype=object)
    labels = classes[rng.integers(0, n_classes, n)].astype(object)
    labels[rng.random(n) < unlabeled] = None
    return vectors, labels


def _numpy_vote(queries, vectors, labels, k, weights, metric="l2"):
    """Reference: brute force over labelled rows, votes per sorted class, argmax (smallest wins)."""
    mask = np.array([lab is not None for lab in labels])
    lv, ll = vectors[mask], labels[mask].astype(str)
    classes = np.unique(ll)
    dist = brute_force(queries, lv, metric)
    nearest = top_k(dist, k)
    nd = np.take_along_axis(dist, nearest, 1)
    votes = np.zeros((len(queries), classes.size))
    for q in range(len(queries)):
        if weights == "uniform":
            w = np.ones(k)
        elif np.any(nd[q] == 0):
            w = (nd[q] == 0).astype(float)
        else:
            w = 1.0 / nd[q]
        for j, idx in enumerate(nearest[q]):
            votes[q, np.searchsorted(classes, ll[idx])] += w[j]
    return classes, votes, classes[np.argmax(votes, axis=1)]


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("k", [1, 4, 7])
def test_matches_numpy_vote(weights: str, metric: str, k: int) -> None:
    vectors, labels = _labelled_set()
    queries = np.random.default_rng(9).standard_normal((120, 8)).astype(np.float32)
    index = VectorIndex.build(vectors, labels=labels.tolist(), metric=metric)
    clf = KNNClassifier(index, k=k, weights=weights)
    classes, votes, predicted = _numpy_vote(queries, vectors, labels, k, weights, metric)
    np.testing.assert_array_equal(clf.classes_, classes.astype(object))
    rtol = 1e-9 if metric == "l2" else 1e-5  # cosine: stored vectors were normalised in float32
    np.testing.assert_allclose(clf.votes(queries), votes, rtol=rtol)
    np.testing.assert_allclose(clf.predict_proba(queries), votes / votes.sum(1, keepdims=True), rtol=rtol)
    prediction = clf.predict(queries)
    assert prediction.shape == (120,) and prediction.dtype == object
    np.testing.assert_array_equal(prediction, predicted.astype(object))


def test_uniform_ties_go_to_first_class() -> None:
    vectors = np.array([[0.0], [1.0], [-1.0], [2.0]], dtype=np.float32)
    index = VectorIndex.build(vectors, labels=["b", "a", "b", "a"])
    clf = KNNClassifier(index, k=2)
    assert clf.predict(np.array([[0.4]])).tolist() == ["a"]  # neighbours 0 (b) and 1 (a): tie -> "a"
    np.testing.assert_array_equal(clf.votes(np.array([[0.4]])), [[1.0, 1.0]])


def test_unlabeled_neighbours_do_not_vote() -> None:
    rng = np.random.default_rng(3)
    labelled = rng.standard_normal((50, 4)).astype(np.float32) + 10.0
    queries = rng.standard_normal((20, 4)).astype(np.float32)
    crowd = queries + 0.01  # unlabeled items right on top of every query
    index = VectorIndex.build(
        np.concatenate([labelled, crowd]), labels=["far"] * 25 + ["farther"] * 25 + [None] * 20
    )
    result = KNNClassifier(index, k=5).kneighbors(queries)
    assert result.ids.max() < 50 and np.all(result.labels != None)  # noqa: E711
    assert set(KNNClassifier(index, k=5).predict(queries).tolist()) <= {"far", "farther"}


def test_zero_distance_rule_for_distance_weights() -> None:
    vectors = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]], dtype=np.float32)
    index = VectorIndex.build(vectors, labels=["exact", "near", "near", "near"])
    clf = KNNClassifier(index, k=4, weights="distance")
    assert clf.predict(vectors[:1]).tolist() == ["exact"]
    np.testing.assert_array_equal(clf.predict_proba(vectors[:1]), [[1.0, 0.0]])


def test_errors_without_labels(small: np.ndarray) -> None:
    with pytest.raises(VectorIndexError) as excinfo:
        KNNClassifier(VectorIndex.build(small[:10]))
    assert_index_error(excinfo, "no labelled items")
    with pytest.raises(VectorIndexError) as excinfo:
        KNNClassifier(VectorIndex.build(small[:10], labels=["a"] * 10, metric="ip"), weights="distance")
    assert_index_error(excinfo, "'ip'", "weights='distance'")


def test_follows_index_changes(small: np.ndarray) -> None:
    index = VectorIndex.build(small[:20], labels=["a"] * 20)
    clf = KNNClassifier(index, k=1)
    assert clf.classes_.tolist() == ["a"]
    new = index.add(small[20:21] * 100, labels=["z"])
    assert clf.classes_.tolist() == ["a", "z"]
    assert clf.predict(small[20] * 100).tolist() == ["z"]
    index.remove(ids=new)
    assert clf.classes_.tolist() == ["a"]
    index.remove(ids=index.ids)
    with pytest.raises(VectorIndexError):
        clf.predict(small[:1])


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("k", [4, 5])
@pytest.mark.parametrize("with_unlabeled", [False, True])
def test_identical_to_sklearn(weights: str, k: int, with_unlabeled: bool) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(k)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    labels = np.array([f"class{i}" for i in rng.integers(0, 7, 3000)], dtype=object)
    queries = rng.standard_normal((800, 16)).astype(np.float32)
    stored = labels.copy()
    if with_unlabeled:
        stored[rng.random(3000) < 0.2] = None
    mask = np.array([lab is not None for lab in stored])
    sk = KNeighborsClassifier(n_neighbors=k, weights=weights, algorithm="brute").fit(vectors[mask], labels[mask].astype(str))
    ours = KNNClassifier(VectorIndex.build(vectors, labels=stored.tolist()), k=k, weights=weights)
    np.testing.assert_array_equal(ours.classes_.astype(str), sk.classes_)
    np.testing.assert_array_equal(ours.predict(queries).astype(str), sk.predict(queries))
    np.testing.assert_allclose(ours.predict_proba(queries), sk.predict_proba(queries), atol=1e-9)


def test_identical_to_sklearn_cosine() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((2000, 12)).astype(np.float32)
    labels = np.array([str(i) for i in rng.integers(0, 5, 2000)])
    queries = rng.standard_normal((500, 12)).astype(np.float32)
    sk = KNeighborsClassifier(n_neighbors=5, algorithm="brute", metric="cosine").fit(vectors, labels)
    ours = KNNClassifier(VectorIndex.build(vectors, labels=labels.tolist(), metric="cosine", kind="hnsw"), k=5)
    np.testing.assert_array_equal(ours.predict(queries).astype(str), sk.predict(queries))


def test_approximate_mode_on_hnsw(clustered) -> None:
    labels = [None if i % 5 == 0 else f"c{i % 3}" for i in range(len(clustered.vectors))]
    index = VectorIndex.build(clustered.vectors, labels=labels, kind="hnsw")
    exact = KNNClassifier(index, k=10)
    approx = KNNClassifier(index, k=10, exact=False)
    ref, got = exact.kneighbors(clustered.queries), approx.kneighbors(clustered.queries)
    assert np.all(got.labels != None)  # noqa: E711  (the IDSelector keeps unlabeled items out)
    assert recall_at(got.ids, ref.ids) >= 0.95
    assert np.mean(exact.predict(clustered.queries) == approx.predict(clustered.queries)) >= 0.95


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_approximate_mode_with_selector_matches_exact(kind: str) -> None:
    vectors, labels = _labelled_set(n=600)
    queries = np.random.default_rng(5).standard_normal((50, 8)).astype(np.float32)
    index = VectorIndex.build(vectors, labels=labels.tolist(), kind=kind)
    if kind == "ivf":
        index.set_search_params(nprobe=index.params["nlist"])  # probing every list is exact
    exact, approx = KNNClassifier(index, k=5), KNNClassifier(index, k=5, exact=False)
    np.testing.assert_array_equal(approx.kneighbors(queries).ids, exact.kneighbors(queries).ids)
    np.testing.assert_array_equal(approx.predict(queries), exact.predict(queries))
