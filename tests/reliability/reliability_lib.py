"""Shared pieces of the reliability tests: versioned tiny models and indexes whose every saved
version can be recomputed exactly, so a reader can tell "old", "new" and "a mix" apart."""

from __future__ import annotations

import numpy as np

DIM = 8  # vector dimension of the test indexes
BASE = 3000  # vectors in version 0 of an index
STEP = 40  # vectors added per version
_ROWS = 120_000


def vectors(count: int) -> np.ndarray:
    """The first `count` rows of one fixed seeded float32 (N, DIM) table."""
    if count > _ROWS:
        raise ValueError(f"at most {_ROWS} test vectors")
    return np.random.default_rng(2024).standard_normal((_ROWS, DIM)).astype(np.float32)[:count]


def index_version(version: int):
    """Index holding vectors(BASE + STEP * version) with keys k<id> and labels id % 3."""
    from index import VectorIndex

    n = BASE + STEP * version
    return VectorIndex.build(vectors(n), keys=[f"k{i}" for i in range(n)], labels=[i % 3 for i in range(n)],
                             info={"version": version})


def check_index(index, version: int | None = None) -> int:
    """Assert that `index` is exactly one whole version (vectors, keys, labels, counts); return it."""
    n = len(index)
    version = (n - BASE) // STEP if version is None else version
    assert n == BASE + STEP * version, f"{n} items is not a whole version"
    assert index.info.get("version") == version, f"manifest says version {index.info.get('version')}, data {version}"
    assert index.stored_count == n == index.count_metadata_rows(), "vectors and metadata rows disagree"
    ids = index.ids
    assert np.array_equal(ids, np.arange(n))
    stored = np.concatenate([chunk for _, chunk in index.iter_vectors()])
    assert np.array_equal(stored, vectors(n)), "stored vectors differ from the version's vectors"
    assert index.keys_for_ids(ids[-3:]).tolist() == [f"k{i}" for i in range(n - 3, n)]
    assert index.labels_for_ids(ids[-3:]).tolist() == [str(i % 3) for i in range(n - 3, n)]
    return version


def model_version(version: int, latent_dim: int = 3, input_dim: int = 6, widths: tuple[int, ...] = (16, 8)):
    """A tiny MLP autoencoder (input_dim -> latent_dim) whose weights are drawn from seed `version`."""
    import torch

    from siamese import Autoencoder, AutoencoderConfig

    config = AutoencoderConfig(variant="plain", latent_dim=latent_dim, widths=widths)
    torch.manual_seed(version)
    model = Autoencoder(config, config.network((input_dim,)))
    model.info = {"normalization": {"offset": 0.0, "scale": 1.0}, "metric": "l2", "version": version}
    return model.eval()


def append_version(target, version: int) -> None:
    """Load the index at `target` (version - 1), add STEP vectors and save it as `version`."""
    from index import VectorIndex

    index = VectorIndex.load(target)
    n = len(index)
    assert n == BASE + STEP * (version - 1), "appending to an unexpected version"
    index.add(vectors(n + STEP)[n:], keys=[f"k{i}" for i in range(n, n + STEP)],
              labels=[i % 3 for i in range(n, n + STEP)])
    index.info = {**index.info, "version": version}
    index.save(target)
