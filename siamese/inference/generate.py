"""New items from a variational autoencoder: decode draws from the prior, or a grid over its plane.

Both return items in the model's normalised [0, 1] space, shape (n, *input_shape), ready for
`siamese.plots.plot_image_grid`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SiameseError


def _check_vae(model, what: str) -> None:
    variant = model.config.variant
    if variant != "vae":
        raise SiameseError(f"{what} needs a variational autoencoder; this model is a {variant} autoencoder "
                           "(pretrain with --variant vae)")


def _decode(model, z: torch.Tensor) -> np.ndarray:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return torch.sigmoid(model.decode(z)).float().numpy()
    finally:
        model.train(was_training)


def sample(model, n: int, *, seed: int = 0) -> np.ndarray:
    """Decode n draws z ~ N(0, I) from the prior; returns (n, *input_shape) in [0, 1]."""
    _check_vae(model, "sampling")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SiameseError(f"n must be a positive number of samples, got {n!r}")
    z = torch.randn(int(n), model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return _decode(model, z)


def latent_manifold(model, side: int = 20, *, quantile: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The decoded latent plane of a 2-D VAE: a side x side grid of z at evenly spaced Gaussian
    quantiles (quantile .. 1 - quantile along each axis), so every cell covers equal prior mass.

    Returns (images (side*side, *input_shape) row by row, top row = largest z[1]; z (side*side, 2)).
    """
    _check_vae(model, "the latent manifold")
    if model.latent_dim != 2:
        raise SiameseError(f"the latent manifold is drawn for 2-D latent spaces; this model has d={model.latent_dim}")
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 2:
        raise SiameseError(f"side must be an integer >= 2, got {side!r}")
    if not 0 < quantile < 0.5:
        raise SiameseError(f"quantile must be in (0, 0.5), got {quantile}")
    values = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(quantile, 1 - quantile, int(side)))
    z1, z0 = torch.meshgrid(values.flip(0), values, indexing="ij")
    z = torch.stack([z0.reshape(-1), z1.reshape(-1)], dim=1)
    return _decode(model, z), z.numpy()
