"""Encoders, decoders and the six autoencoder variants on tiny synthetic data."""

import pytest
import torch

from siamese import SiameseError
from siamese.models.autoencoder import (
    VARIANTS,
    Autoencoder,
    AutoencoderConfig,
    contractive_penalty,
    keep_top_k,
    kl_to_standard_normal,
    view_agreement,
)
from siamese.data.augment import corrupt, parse_noise, random_affine
from siamese.models.networks import NetworkConfig
from siamese.training.loop import TrainConfig, fit, shuffled_batches, steps_for

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (20,)]


def make_model(variant="plain", shape=(1, 8, 8), arch="auto", **kwargs) -> Autoencoder:
    config = AutoencoderConfig(variant=variant, arch=arch, latent_dim=kwargs.pop("latent_dim", 6), **kwargs)
    torch.manual_seed(0)
    return Autoencoder(config, config.network(shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_encoder_decoder_shapes(shape, arch):
    if arch == "conv" and len(shape) != 3:
        pytest.skip("conv needs images")
    model = make_model("plain", shape, arch, widths=(8, 16) if arch == "conv" else (32,))
    x = torch.rand(5, *shape)
    z = model.encode(x)
    assert z.shape == (5, 6)
    assert model.decode(z).shape == x.shape


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_each_variant_loss_goes_down(variant, arch):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, 8, 8, generator=g) > 0.5).float()
    model = make_model(variant, (1, 8, 8), arch, widths=(8, 16) if arch == "conv" else (32,), k=3)
    model.eval()
    with torch.no_grad():
        before = model.loss(x, torch.Generator().manual_seed(1))[0].item()
    config = TrainConfig(epochs=15, batch_size=32, lr=1e-2, val_fraction=0, seed=0)
    fit(model, lambda m, idx, gen: m.loss(x[idx], gen), shuffled_batches(64, 32), steps_for(64, 32), config,
        progress=False)
    model.eval()
    with torch.no_grad():
        after = model.loss(x, torch.Generator().manual_seed(1))[0].item()
    assert after < before


def test_view_term_pulls_two_views_of_an_item_together():
    """The NT-Xent view term is trained down and then ranks an item's second view first among the batch."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, 8, 8, generator=g) > 0.5).float()
    model = make_model("denoising", (1, 8, 8), "mlp", widths=(32,), view_weight=20.0, noise="mask:0.2")
    loss, parts = model.loss(x, torch.Generator().manual_seed(1))
    assert set(parts) == {"recon", "views"} and loss.item() == pytest.approx(parts["recon"] + 20 * parts["views"],
                                                                                rel=1e-5)
    config = TrainConfig(epochs=30, batch_size=32, lr=1e-2, val_fraction=0, seed=0)
    fit(model, lambda m, idx, gen: m.loss(x[idx], gen), shuffled_batches(64, 32), steps_for(64, 32), config,
        progress=False)
    model.eval()
    with torch.no_grad():
        after = model.loss(x, torch.Generator().manual_seed(1))[1]["views"]
        a = torch.nn.functional.normalize(model.encode(corrupt(x, "mask:0.2", torch.Generator().manual_seed(2))))
        b = torch.nn.functional.normalize(model.encode(corrupt(x, "mask:0.2", torch.Generator().manual_seed(3))))
    assert after < parts["views"]
    assert (torch.argmax(a @ b.T, 1) == torch.arange(64)).float().mean() > 0.5


def test_view_agreement_is_pytorch_metric_learnings_nt_xent():
    from pytorch_metric_learning.losses import NTXentLoss

    z1, z2 = torch.randn(12, 5, generator=torch.Generator().manual_seed(0)), torch.randn(12, 5)
    expected = NTXentLoss(temperature=0.3)(torch.cat([z1, z2]), torch.arange(12).repeat(2))
    assert view_agreement(z1, z2, 0.3).item() == pytest.approx(expected.item(), rel=1e-5)


def test_view_weight_zero_is_the_plain_denoising_loss():
    """Off (the default), the denoising loss and its random draws are exactly what they were."""
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    model = make_model("denoising", (1, 8, 8), "mlp", widths=(32,))
    loss, parts = model.loss(x, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    noisy = corrupt(random_affine(x, g), model.config.noise, g)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(model.decode(model.encode(noisy)), x,
                                                                     reduction="none").flatten(1).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and parts == {}


def test_ksparse_code_has_exactly_k_nonzeros():
    model = make_model("ksparse", (20,), latent_dim=10, k=3)
    z = model.encode(torch.rand(7, 20))
    assert ((z != 0).sum(1) == 3).all()
    z = torch.tensor([[0.1, -5.0, 2.0, 0.0]])
    assert torch.equal(keep_top_k(z, 2), torch.tensor([[0.0, -5.0, 2.0, 0.0]]))


def test_contractive_penalty_matches_finite_differences():
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    x = torch.randn(2, 5, dtype=torch.float64)
    eps = 1e-6
    norms = []
    for item in x:
        jac = torch.stack([(encoder(item + eps * e) - encoder(item - eps * e)) / (2 * eps)
                           for e in torch.eye(5, dtype=torch.float64)], dim=1)
        norms.append(jac.pow(2).sum())
    expected = torch.stack(norms).mean()
    exact = contractive_penalty(encoder, x, exact=True)
    assert torch.allclose(exact, expected, rtol=1e-5)
    estimates = torch.stack([contractive_penalty(encoder, x, exact=False, generator=torch.Generator().manual_seed(s))
                             for s in range(3000)])
    assert abs(estimates.mean().item() - expected.item()) / expected.item() < 0.05  # unbiased estimate


def test_vae_kl_is_zero_for_standard_normal_posterior():
    zeros = torch.zeros(4, 3)
    assert kl_to_standard_normal(zeros, zeros).item() == 0.0
    assert kl_to_standard_normal(torch.ones(4, 3), zeros).item() > 0


def test_vae_embedding_is_posterior_mean():
    model = make_model("vae", (20,)).eval()
    x = torch.rand(3, 20)
    mean, _ = model.posterior(x)
    assert torch.equal(model.encode(x), mean)
    assert torch.equal(model.encode(x), model.encode(x))  # deterministic


def test_noise_and_augmentation_are_seeded():
    x = torch.rand(4, 1, 8, 8)
    a = random_affine(x, torch.Generator().manual_seed(3))
    b = random_affine(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    masked = corrupt(torch.ones(1000), "mask:0.3", torch.Generator().manual_seed(0))
    assert 0.25 < (masked == 0).float().mean() < 0.35
    noisy = corrupt(torch.full((1000,), 0.5), "gaussian:0.1", torch.Generator().manual_seed(0))
    assert 0.05 < noisy.std() < 0.15
    assert parse_noise("none") == ("none", 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latent_dim": 0}, "--latent-dim"),
        ({"latent_dim": -3}, "--latent-dim"),
        ({"variant": "ksparse", "latent_dim": 4, "k": 5}, "--k must be"),
        ({"variant": "ksparse", "k": 0}, "k must be"),
        ({"variant": "magic"}, "unknown variant"),
        ({"arch": "transformer"}, "unknown arch"),
        ({"noise": "salt:0.2"}, "bad noise"),
        ({"noise": "mask:1.5"}, "bad noise"),
        ({"beta": -1.0}, "beta"),
        ({"view_weight": -1.0}, "--view-weight"),
        ({"variant": "plain", "view_weight": 5.0}, "--view-weight applies to the denoising variant"),
        ({"view_temperature": 0.0}, "--view-temperature"),
    ],
)
def test_bad_configs_raise_clear_errors(kwargs, match):
    with pytest.raises(SiameseError, match=match):
        AutoencoderConfig(**kwargs)


def test_conv_on_vectors_and_input_shape_mismatch_are_refused():
    with pytest.raises(SiameseError, match="conv"):
        AutoencoderConfig(arch="conv").network((20,))
    with pytest.raises(SiameseError, match="--latent-dim"):
        NetworkConfig(input_shape=(4,), latent_dim=0, arch="mlp")
    from siamese import embed

    with pytest.raises(SiameseError, match="expects"):
        embed(make_model("plain", (1, 8, 8)), torch.rand(3, 1, 9, 9))
