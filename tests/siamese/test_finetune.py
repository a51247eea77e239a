"""Siamese fine-tuning on tiny synthetic data."""

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss

from siamese import AutoencoderConfig, SiameseError, TrainConfig, embed, load_items, load_model, pretrain
from siamese.training.finetune import LOSSES, FinetuneConfig, adaptive_metric_weight, finetune
from siamese.data.pairs import pairs_from_labels, write_pairs_csv


@pytest.fixture(scope="module")
def two_clusters():
    """Two overlapping Gaussian clusters in 20-D; labels "a"/"b"."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (2, 20))
    y = np.repeat([0, 1], 60)
    x = (centers[y] * 0.6 + rng.normal(0, 1, (120, 20))).astype(np.float32)
    return load_items(x, labels=["a" if v == 0 else "b" for v in y])


@pytest.fixture(scope="module")
def pretrained(two_clusters):
    config = AutoencoderConfig(variant="plain", latent_dim=4, widths=(32,))
    return pretrain(two_clusters, config, TrainConfig(epochs=5, batch_size=32), progress=False)


FAST = TrainConfig(epochs=4, batch_size=32, lr=3e-3)


def pair_gap(model, items) -> float:
    """Mean distance of different-label pairs minus mean distance of same-label pairs (normalised z)."""
    z = torch.nn.functional.normalize(torch.from_numpy(embed(model, items)), dim=1)
    d = torch.cdist(z, z)
    codes = torch.as_tensor(items.label_codes()[0])
    same = codes[:, None] == codes[None, :]
    off_diagonal = ~torch.eye(len(z), dtype=torch.bool)
    return (d[~same].mean() - d[same & off_diagonal].mean()).item()


def test_finetuning_widens_the_gap_between_pair_kinds(two_clusters, pretrained):
    tuned = finetune(pretrained, two_clusters, labels=True, train=FAST, progress=False)
    assert pair_gap(tuned, two_clusters) > pair_gap(pretrained, two_clusters) + 0.05
    assert tuned.metric == "cosine"
    assert tuned.info["finetune"]["parent_fingerprint"] == pretrained.fingerprint()
    assert pretrained.fingerprint() != tuned.fingerprint()  # the original is left untouched


def test_few_labels_per_class(two_clusters, pretrained):
    tuned = finetune(pretrained, two_clusters, labels=True, labels_per_class=5, train=FAST, progress=False)
    assert tuned.info["finetune"]["n_labelled"] == 10


@pytest.mark.parametrize("share, weight", [(0.0, 10.0), (0.0125, 10.0), (0.125, 23.3), (1.0, 50.0), (2.0, 50.0)])
def test_adaptive_metric_weight_follows_the_labelled_share(share, weight):
    assert adaptive_metric_weight(share) == pytest.approx(weight, abs=0.05)


@pytest.mark.parametrize("per_class, weight", [(None, 50.0), (6, adaptive_metric_weight(12 / 120))])
def test_default_metric_weight_is_resolved_and_recorded(two_clusters, pretrained, per_class, weight):
    tuned = finetune(pretrained, two_clusters, labels=True, labels_per_class=per_class,
                     train=TrainConfig(epochs=1, batch_size=32), progress=False)
    assert tuned.info["finetune"]["config"]["metric_weight"] == pytest.approx(weight, abs=0.01)
    explicit = finetune(pretrained, two_clusters, labels=True, config=FinetuneConfig(metric_weight=3.0),
                        train=TrainConfig(epochs=1, batch_size=32), progress=False)
    assert explicit.info["finetune"]["config"]["metric_weight"] == 3.0


@pytest.mark.parametrize("latent_dim, distance, metric", [(2, "euclidean", "l2"), (4, "cosine", "cosine")])
def test_default_distance_follows_the_latent_size(two_clusters, latent_dim, distance, metric):
    config = AutoencoderConfig(variant="plain", latent_dim=latent_dim, widths=(32,))
    model = pretrain(two_clusters, config, TrainConfig(epochs=1, batch_size=32), progress=False)
    tuned = finetune(model, two_clusters, labels=True, train=TrainConfig(epochs=1, batch_size=32), progress=False)
    assert tuned.info["finetune"]["config"]["distance"] == distance and tuned.metric == metric


class RecordingLoss(ContrastiveLoss):
    def __init__(self):
        super().__init__()
        self.seen: set[tuple[int, int, int]] = set()
        self.items: list[np.ndarray] = []

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        self.batch = indices_tuple
        return super().forward(embeddings, labels, indices_tuple)


def test_explicit_pair_file_is_honoured_exactly(two_clusters, pretrained, tmp_path, monkeypatch):
    codes = two_clusters.label_codes()[0]
    pairs = pairs_from_labels(codes, n_pairs=12, seed=3)
    path = tmp_path / "pairs.csv"
    write_pairs_csv(path, pairs, two_clusters.keys)
    expected = {(min(a, b), max(a, b), int(y)) for a, b, y in zip(pairs.a, pairs.b, pairs.label)}

    import sys

    module = sys.modules["siamese.training.finetune"]  # the package re-exports a function of the same name

    seen = set()
    original = module.sample_pair_batch

    def spy(p, size, generator):
        items, (a1, pos, a2, neg) = original(p, size, generator)
        for i, j, label in [(a1, pos, 1), (a2, neg, 0)]:
            for u, v in zip(items[i.numpy()], items[j.numpy()]):
                seen.add((min(u, v), max(u, v), label))
        return items, (a1, pos, a2, neg)

    monkeypatch.setattr(module, "sample_pair_batch", spy)
    loss = RecordingLoss()
    finetune(pretrained, two_clusters, pairs=str(path), loss=loss, train=FAST, progress=False)
    assert seen == expected  # every pair used, nothing else
    assert loss.batch is not None and len(loss.batch) == 4


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_option_trains(two_clusters, pretrained, loss):
    tuned = finetune(pretrained, two_clusters, labels=True, config=FinetuneConfig(loss=loss, miner="hard"),
                     train=TrainConfig(epochs=1, batch_size=32), progress=False)
    assert np.isfinite(embed(tuned, two_clusters)).all()


def test_finetuned_model_round_trips(two_clusters, pretrained, tmp_path):
    tuned = finetune(pretrained, two_clusters, labels=True, train=FAST, out=tmp_path / "ft", progress=False)
    loaded = load_model(tmp_path / "ft")
    assert loaded.metric == "cosine" and loaded.info["finetune"]["config"]["loss"] == "contrastive"
    assert np.array_equal(embed(loaded, two_clusters), embed(tuned, two_clusters))


def test_labels_csv_mapping(two_clusters, pretrained, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("key,label\n" + "".join(f"{k},{l}\n" for k, l in zip(two_clusters.keys[::6], two_clusters.labels[::6])))
    tuned = finetune(pretrained, two_clusters, labels=str(path), train=TrainConfig(epochs=1), progress=False)
    assert tuned.info["finetune"]["n_labelled"] == 20


@pytest.mark.parametrize("weights", [{"metric_weight": -1.0}, {"metric_weight": float("inf")},
                                     {"recon_weight": float("nan")}])
def test_loss_weights_must_be_finite_and_non_negative(weights):
    with pytest.raises(SiameseError, match="--metric-weight and --recon-weight"):
        FinetuneConfig(**weights)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one"),
    ({"pairs": "x.csv", "labels": True}, "exactly one"),
    ({"labels": {"0": "a"}}, "two classes"),
    ({"pairs": "missing.csv"}, "does not exist"),
    ({"labels": True, "labels_per_class": 0}, "positive"),
    ({"labels": True, "config": "not a config"}, None),
])
def test_bad_finetune_inputs(two_clusters, pretrained, kwargs, match):
    if "config" in kwargs:
        with pytest.raises(SiameseError):
            FinetuneConfig(loss="hinge")
        return
    with pytest.raises(SiameseError, match=match):
        finetune(pretrained, two_clusters, progress=False, **kwargs)
