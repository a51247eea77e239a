"""Batched corruptions and augmentations, driven by an explicit torch.Generator (reproducible).

Per-item random affine transforms are done with one `affine_grid`/`grid_sample` call for the
whole batch: torchvision's transforms draw one set of parameters per call, not per item.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import SiameseError

NOISE_KINDS = ("gaussian", "mask", "none")


def parse_noise(spec: str) -> tuple[str, float]:
    """'gaussian:0.3' -> ('gaussian', 0.3); 'mask:0.4' -> ('mask', 0.4); 'none' -> ('none', 0)."""
    kind, _, value = str(spec).partition(":")
    if kind == "none" and not value:
        return "none", 0.0
    try:
        amount = float(value)
    except ValueError:
        amount = float("nan")
    if kind not in NOISE_KINDS or not math.isfinite(amount) or amount < 0 or (kind == "mask" and amount >= 1):
        raise SiameseError(
            f"bad noise spec {spec!r}; use 'gaussian:STD' (e.g. gaussian:0.3), 'mask:P' with 0 <= P < 1 "
            "(e.g. mask:0.4) or 'none'"
        )
    return kind, amount


def corrupt(x: torch.Tensor, spec: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive Gaussian noise (clipped to [0, 1]) or masking noise (random values set to 0)."""
    kind, amount = parse_noise(spec)
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (x + amount * noise).clamp(0.0, 1.0)
    if kind == "mask":
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= amount
        return x * keep
    return x


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    degrees: float = 12.0,
    translate: float = 1 / 14,
    scale: float = 0.1,
    strength: float = 1.0,
) -> torch.Tensor:
    """Rotate by U(-degrees, degrees), shift by U(-t, t) of the image size (2 px on 28x28) and scale
    by U(1-s, 1+s), independently per item; `strength` multiplies all three ranges.

    x: float tensor of shape (n, C, H, W); returns the same shape (zero padding outside).
    """
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
    degrees, translate, scale = degrees * strength, translate * strength, scale * strength
    angle = u[:, 0] * math.radians(degrees)
    factor = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack(
        [
            torch.stack([cos, -sin, u[:, 2] * 2 * translate], 1),
            torch.stack([sin, cos, u[:, 3] * 2 * translate], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
