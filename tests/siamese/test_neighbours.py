"""The neighbour term of pretraining: its kernel, its neighbour search and its default."""

import json

import numpy as np
import pytest
import torch

from siamese import AutoencoderConfig, SiameseError, TrainConfig, embed, load_items, pretrain
from siamese.training.neighbours import (
    LOW_DIM_WEIGHT,
    LogCauchyDistance,
    input_neighbours,
    neighbour_agreement,
)


def test_log_cauchy_distance_and_the_infonce_it_gives():
    g = torch.Generator().manual_seed(0)
    z, w = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    distance = LogCauchyDistance()
    assert torch.allclose(distance(z, w), torch.log1p(torch.cdist(z, w).pow(2)), atol=1e-5)
    assert torch.allclose(distance.pairwise_distance(z, w), torch.log1p((z - w).pow(2).sum(1)), atol=1e-6)
    # InfoNCE by hand: logits are log Cauchy similarities, each row's positive is its partner
    both = torch.cat([z, w])
    logits = -torch.log1p(torch.cdist(both, both).pow(2))
    logits.fill_diagonal_(-float("inf"))
    partner = torch.arange(12).roll(6)
    expected = torch.nn.functional.cross_entropy(logits, partner)
    assert neighbour_agreement(z, w).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("dims", [5, 100])  # 100 > PCA_DIMS: searched after the projection
def test_input_neighbours_are_the_nearest_other_items(dims):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, dims)) * 10
    x = torch.tensor(np.repeat(centres, 40, axis=0) + rng.normal(size=(160, dims)), dtype=torch.float32)
    found = input_neighbours(x, 5)
    assert found.shape == (160, 5) and not (found == np.arange(160)[:, None]).any()
    assert (found // 40 == np.arange(160)[:, None] // 40).all()  # all from the item's own cluster
    if dims == 5:
        distances = torch.cdist(x, x).fill_diagonal_(float("inf"))
        exact = distances.topk(5, largest=False).indices.numpy()
        assert (np.sort(found, 1) == np.sort(exact, 1)).mean() > 0.95


def test_a_two_dimensional_model_gets_the_neighbour_term_by_default(tmp_path):
    rng = np.random.default_rng(0)
    items = load_items(rng.normal(size=(120, 12)).astype(np.float32))
    train = TrainConfig(epochs=2, batch_size=32, val_fraction=0)
    small = dict(widths=(16,), hidden=16)
    on = pretrain(items, AutoencoderConfig(latent_dim=2, **small), train, out=tmp_path / "d2", progress=False)
    off = pretrain(items, AutoencoderConfig(latent_dim=4, **small), train, out=tmp_path / "d4", progress=False)
    assert on.config.neighbour_weight == LOW_DIM_WEIGHT and off.config.neighbour_weight == 0.0
    recorded = json.loads((tmp_path / "d2" / "config.json").read_text())["autoencoder"]
    assert recorded["neighbour_weight"] == LOW_DIM_WEIGHT
    assert "neighbours" in (tmp_path / "d2" / "history.csv").read_text().splitlines()[0]
    assert "neighbours" not in (tmp_path / "d4" / "history.csv").read_text().splitlines()[0]
    again = pretrain(items, AutoencoderConfig(latent_dim=2, **small), train, progress=False)
    assert np.array_equal(embed(on, items), embed(again, items))  # seeded: the neighbour draws repeat


def test_the_neighbour_term_keeps_input_neighbours_close():
    """On points along a curve in 20-D, the 2-D map keeps more of each point's input neighbours with the term."""
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 4 * np.pi, 300))
    basis = rng.normal(size=(4, 20))
    x = (np.stack([np.cos(t), np.sin(t), np.cos(2 * t), np.sin(2 * t)], 1) @ basis).astype(np.float32)
    noisy = x + 0.05 * rng.normal(size=x.shape).astype(np.float32)
    items, truth = load_items(noisy), input_neighbours(torch.tensor(noisy), 5)

    def kept(weight: float, seed: int) -> float:
        model = pretrain(items, AutoencoderConfig(variant="plain", latent_dim=2, widths=(32,), hidden=32,
                                                  neighbour_weight=weight),
                         TrainConfig(epochs=30, batch_size=50, val_fraction=0, seed=seed), progress=False)
        z = torch.tensor(embed(model, items))
        mapped = torch.cdist(z, z).fill_diagonal_(float("inf")).topk(5, largest=False).indices.numpy()
        return np.mean([len(set(a) & set(b)) / 5 for a, b in zip(mapped, truth)])

    # measured: 0.89 / 0.87 with the term, 0.74 / 0.82 without (seeds 0 / 1)
    assert np.mean([kept(LOW_DIM_WEIGHT, s) - kept(0.0, s) for s in (0, 1)]) > 0.05


@pytest.mark.parametrize("kwargs, flag", [({"neighbour_weight": -1.0}, "--neighbour-weight"),
                                          ({"neighbour_weight": float("inf")}, "--neighbour-weight"),
                                          ({"neighbour_weight": float("nan")}, "--neighbour-weight"),
                                          ({"neighbour_k": 0}, "--neighbour-k"),
                                          ({"neighbour_k": 10**6}, "--neighbour-k"),
                                          ({"neighbour_k": 2.5}, "--neighbour-k")])
def test_bad_neighbour_settings_name_their_flag(kwargs, flag):
    with pytest.raises(SiameseError, match=flag):
        AutoencoderConfig(**kwargs)
