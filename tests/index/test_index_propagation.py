"""Label propagation over the kNN graph."""

import numpy as np
import pytest

from index import VectorIndex, VectorIndexError
from index.propagation import propagate_labels, propagated_index


@pytest.fixture()
def two_blobs():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.3, (40, 3)) + [5, 0, 0]
    b = rng.normal(0, 0.3, (40, 3)) - [5, 0, 0]
    labels = [None] * 80
    labels[0], labels[40] = "a", "b"
    return VectorIndex.build(np.vstack([a, b]).astype(np.float32), labels=labels)


def test_one_label_per_blob_reaches_every_item(two_blobs):
    result = propagate_labels(two_blobs, k=5)
    assert list(result.labels[:40]) == ["a"] * 40 and list(result.labels[40:]) == ["b"] * 40
    assert result.given.sum() == 2 and (result.confidence > 0.99).all()


def test_propagated_index_keeps_ids_keys_vectors(two_blobs):
    copy = propagated_index(two_blobs, k=5)
    assert np.array_equal(copy.ids, two_blobs.ids)
    assert list(copy.keys_for_ids(copy.ids)) == list(two_blobs.keys_for_ids(two_blobs.ids))
    assert np.allclose(copy.reconstruct(copy.ids), two_blobs.reconstruct(two_blobs.ids))
    assert copy.attrs_for_ids([0])[0]["label_source"] == "given"
    assert copy.attrs_for_ids([1])[0]["label_source"] == "propagated"


def test_unreachable_items_stay_unlabelled():
    vectors = np.array([[0, 0], [0.1, 0], [10, 10], [10.1, 10]], dtype=np.float32)
    index = VectorIndex.build(vectors, labels=["x", None, None, None])
    result = propagate_labels(index, k=1)
    assert list(result.labels) == ["x", "x", None, None]


@pytest.mark.parametrize("kwargs", [{"alpha": 1.5}, {"alpha": 0}])
def test_bad_options(two_blobs, kwargs):
    with pytest.raises(VectorIndexError):
        propagate_labels(two_blobs, **kwargs)


def test_no_labels_is_an_error():
    with pytest.raises(VectorIndexError, match="no labels"):
        propagate_labels(VectorIndex.build(np.eye(3, dtype=np.float32)))
