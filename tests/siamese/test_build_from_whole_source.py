"""build_index decides `auto` and trains IVF from the whole source, not its first chunk: a source
sorted by class, read in chunks of one class each, still gets a quantizer that covers every class,
and a source too big for the budget as a whole gets a kind chosen for its full size."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index import VectorIndexError
from siamese.cli import main
from siamese.models.checkpoint import load_model
from siamese.retrieval.indexing import build_index, embed_sample

CLASSES, PER_CLASS, DIM = 10, 200, 16


@pytest.fixture(scope="module")
def sorted_source(tmp_path_factory):
    """vectors.npz: 10 well-separated clusters, stored class by class (x, y), and a model over them."""
    root = tmp_path_factory.mktemp("sorted-source")
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(CLASSES, DIM))
    x = np.concatenate([c + rng.normal(size=(PER_CLASS, DIM)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(CLASSES), PER_CLASS)
    np.savez(root / "vectors.npz", x=x, y=y)
    assert main(["pretrain", str(root / "vectors.npz"), "--out", str(root / "model"), "--latent-dim", "8",
                 "--epochs", "2", "--batch-size", "64", "-q"]) == 0
    return root / "vectors.npz", load_model(root / "model"), y


def _centroids(index) -> np.ndarray:
    ivf = faiss.extract_index_ivf(index.faiss_index)
    return np.asarray(ivf.quantizer.reconstruct_n(0, ivf.nlist))  # a tensor once faiss.contrib.torch_utils is loaded


def test_ivf_is_trained_on_every_class_of_a_sorted_source(sorted_source):
    source, model, y = sorted_source
    index = build_index(model, source, kind="ivf", chunk_size=PER_CLASS)  # each chunk holds one class
    z = index.reconstruct(index.ids)
    centroids = _centroids(index)
    means = np.stack([z[y == c].mean(0) for c in range(CLASSES)])
    between = min(np.linalg.norm(means[i] - means[j]) for i in range(CLASSES) for j in range(i + 1, CLASSES))
    nearest = np.sqrt(((z[:, None, :] - centroids[None]) ** 2).sum(-1)).min(1)
    worst_class = max(nearest[y == c].mean() for c in range(CLASSES))
    assert worst_class < 0.5 * between, (worst_class, between)  # first-chunk training: ~`between` for 9 classes


def test_the_training_sample_is_drawn_across_the_whole_source(sorted_source):
    source, model, y = sorted_source
    sample = embed_sample(model, source, 100, chunk_size=PER_CLASS, seed=3)
    everything = embed_sample(model, source, len(y), chunk_size=PER_CLASS)
    assert sample.shape == (100, model.latent_dim) and everything.shape == (len(y), model.latent_dim)
    rows = [int(np.flatnonzero(np.all(np.isclose(everything, v, atol=1e-5), axis=1))[0]) for v in sample]
    assert len(set(y[rows])) == CLASSES  # not one class, as the first chunk would give
    assert np.array_equal(sample, embed_sample(model, source, 100, chunk_size=PER_CLASS, seed=3))  # seeded


def test_auto_is_chosen_for_the_whole_source_not_the_first_chunk(sorted_source):
    source, model, y = sorted_source
    n, d = len(y), model.latent_dim
    budget = n * (4 * d + 8) - 1  # no kind of index fits every item; one of the first chunk (a tenth) would
    with pytest.raises(VectorIndexError, match=f"too small for {n} vectors"):
        build_index(model, source, kind="auto", chunk_size=PER_CLASS, memory_budget_bytes=budget)
    index = build_index(model, source, kind="auto", chunk_size=PER_CLASS, memory_budget_bytes=budget + 1)
    assert index.kind == "flat" and len(index) == n
