"""The siamese side of open-set classification: the reconstruction-error rule beside the distance rule."""

import numpy as np
import pytest

from index import KNNClassifier, VectorIndex
from siamese import SiameseError, embed
from siamese.inference.anomaly import reconstruction_scores
from siamese.retrieval.openset import index_distance_quantile, predict_open_set, reconstruction_threshold


@pytest.fixture(scope="module")
def setup():
    import torch

    from siamese import AutoencoderConfig, TrainConfig, load_items, pretrain

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (60, 6)).astype(np.float32)
    items = load_items(x, labels=["a" if v < 0.5 else "b" for v in x[:, 0]])
    torch.manual_seed(0)
    model = pretrain(items, AutoencoderConfig(variant="plain", latent_dim=3, widths=(8,)),
                     TrainConfig(epochs=1, batch_size=30), progress=False)
    index = VectorIndex.build(embed(model, items), keys=items.keys, labels=items.labels, metric=model.metric)
    return model, items, index


@pytest.mark.parametrize("quantile", [0.5, 0.9])
def test_unknown_exactly_when_a_rule_fires(setup, quantile):
    model, items, index = setup
    queries = items.subset(np.arange(40, 60))
    threshold = reconstruction_threshold(model, items, quantile)
    errors = reconstruction_scores(model, queries)
    classifier = KNNClassifier(index, k=1)
    nearest_other = classifier.nearest_distance(embed(model, queries))
    assert np.allclose(nearest_other, 0, atol=1e-5)  # the queries are indexed: distance rule off at 0.0
    distance_rule = KNNClassifier(index, k=1, max_distance=0.0)
    result = predict_open_set(distance_rule, model, queries, recon_threshold=threshold)
    assert result.unknown_by_reconstruction.tolist() == (errors > threshold).tolist()
    assert not result.unknown_by_distance.any()
    assert result.labels.tolist() == ["unknown" if e > threshold else label
                                      for e, label in zip(errors, queries.labels)]
    assert threshold == pytest.approx(np.quantile(reconstruction_scores(model, items), quantile))


def test_rules_off_by_default_and_distance_rule(setup):
    model, items, index = setup
    far = items.x[:3] * 0 + 5.0  # far outside the data: large reconstruction error
    result = predict_open_set(KNNClassifier(index, k=3), model, far)
    assert not result.unknown.any() and result.reconstruction_error is None
    result = predict_open_set(KNNClassifier(index, k=3, max_distance=-1.0), model, far)
    assert result.unknown_by_distance.all() and set(result.labels) == {"unknown"}


def test_index_distance_quantile(setup):
    _, _, index = setup
    z = np.stack([index.reconstruct(i) for i in index.ids])
    d = np.linalg.norm(z[:, None] - z[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert index_distance_quantile(index, 0.8) == pytest.approx(np.quantile(d.min(axis=1), 0.8), rel=1e-5)
    with pytest.raises(SiameseError, match="quantile"):
        index_distance_quantile(index, 1.5)
