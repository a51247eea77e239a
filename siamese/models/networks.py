"""Encoders f: x -> z and matching decoders g: z -> x, built from one config.

The encoder is the product: it is pretrained as an autoencoder, fine-tuned as a Siamese
network and used to fill the index. Decoders return logits (sigmoid gives pixels in [0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import SiameseError

ARCHS = ("mlp", "conv")


@dataclass(frozen=True)
class NetworkConfig:
    """Shapes and widths of an encoder/decoder pair."""

    input_shape: tuple[int, ...]  # (C, H, W) for images, (D,) for vectors
    latent_dim: int = 32  # d, the embedding size
    arch: str = "conv"  # "mlp" | "conv" (conv needs (C, H, W) inputs)
    widths: tuple[int, ...] = ()  # mlp: hidden sizes (default 512, 256); conv: channels per stage (16, 32, 64)
    hidden: int = 256  # conv: width of the fully connected layer before z
    encoder_outputs: int = 1  # 2 for a VAE (mean and log-variance)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths) or self.default_widths())
        if self.latent_dim <= 0:
            raise SiameseError(f"--latent-dim must be a positive integer, got {self.latent_dim}")
        if self.arch not in ARCHS:
            raise SiameseError(f"unknown arch {self.arch!r} (--arch); choose one of {', '.join(ARCHS)}")
        if self.arch == "conv" and len(self.input_shape) != 3:
            raise SiameseError(
                f"arch 'conv' needs image items of shape (C, H, W), got item shape {self.input_shape}; "
                "use arch='mlp' for vectors"
            )
        if any(s <= 0 for s in self.input_shape) or any(w <= 0 for w in self.widths):
            raise SiameseError(f"item shape and --widths must be positive, got {self.input_shape}, {self.widths}")

    def default_widths(self) -> tuple[int, ...]:
        return (16, 32, 64) if self.arch == "conv" else (512, 256)

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        return cls(**{**data, "input_shape": tuple(data["input_shape"]), "widths": tuple(data["widths"])})


def _mlp(sizes: list[int], final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers += [nn.BatchNorm1d(n_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _conv_block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _spatial_sizes(size: int, stages: int) -> list[int]:
    """Height (or width) after each stage; every stage but the first halves it (k=3, p=1)."""
    sizes = [size]
    for _ in range(stages - 1):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes


class MLPEncoder(nn.Module):
    """Flatten -> Linear/BN/ReLU stack -> z."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        out = config.latent_dim * config.encoder_outputs
        self.net = nn.Sequential(nn.Flatten(), _mlp([config.input_size, *config.widths, out], final_activation=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """z -> mirrored Linear/BN/ReLU stack -> logits of shape (n, *input_shape)."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.input_shape = config.input_shape
        self.net = _mlp([config.latent_dim, *reversed(config.widths), config.input_size], final_activation=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.input_shape)


class ConvEncoder(nn.Module):
    """Two 3x3 conv/BN/ReLU per stage (stride 2 from the second stage), then FC -> z."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        channels, height, width = config.input_shape
        layers: list[nn.Module] = []
        c_in = channels
        for stage, c_out in enumerate(config.widths):
            layers += _conv_block(c_in, c_out, stride=1 if stage == 0 else 2) + _conv_block(c_out, c_out, 1)
            c_in = c_out
        h = _spatial_sizes(height, len(config.widths))[-1]
        w = _spatial_sizes(width, len(config.widths))[-1]
        out = config.latent_dim * config.encoder_outputs
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = _mlp([c_in * h * w, config.hidden, out], final_activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """FC -> feature map, then the encoder's stages mirrored with transposed convs -> logits."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        channels, height, width = config.input_shape
        widths = list(config.widths)
        hs = _spatial_sizes(height, len(widths))
        ws = _spatial_sizes(width, len(widths))
        self.map_shape = (widths[-1], hs[-1], ws[-1])
        self.head = _mlp([config.latent_dim, config.hidden, math.prod(self.map_shape)], final_activation=True)
        layers: list[nn.Module] = []
        for stage in range(len(widths) - 1, 0, -1):
            c_in, c_out = widths[stage], widths[stage - 1]
            pad_h = hs[stage - 1] - (2 * hs[stage] - 1)
            pad_w = ws[stage - 1] - (2 * ws[stage] - 1)
            layers += _conv_block(c_in, c_in, 1)
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=(pad_h, pad_w), bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += _conv_block(widths[0], widths[0], 1) + [nn.Conv2d(widths[0], channels, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.head(z).view(-1, *self.map_shape))


def build_encoder(config: NetworkConfig) -> nn.Module:
    return ConvEncoder(config) if config.arch == "conv" else MLPEncoder(config)


def build_decoder(config: NetworkConfig) -> nn.Module:
    return ConvDecoder(config) if config.arch == "conv" else MLPDecoder(config)

