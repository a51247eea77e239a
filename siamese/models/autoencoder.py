"""The autoencoder variants users know, each one loss on top of the shared encoder/decoder.

plain        reconstruct x
denoising    reconstruct x from a corrupted (and, for images, randomly shifted/rotated) copy;
             optionally + NT-Xent agreement between the embeddings of two such copies (view_weight)
sparse       + L1 penalty on z
ksparse      keep only the k largest-magnitude entries of z (also when embedding)
contractive  + squared Frobenius norm of the encoder Jacobian dz/dx
vae          reparameterised Gaussian posterior, + beta * KL; the embedding is the posterior mean

Any variant may add the neighbour term (neighbour_weight), which `pretrain` computes beside this
loss because it needs each item's neighbours in the whole training set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import corrupt, parse_noise, random_affine
from ..data.normalization import Normalization
from ..data.preprocessing import Preprocessing
from ..errors import SiameseError
from .networks import NetworkConfig, build_decoder, build_encoder

VARIANTS = ("plain", "denoising", "sparse", "ksparse", "contractive", "vae")


@dataclass(frozen=True)
class AutoencoderConfig:
    """What to pretrain. Fields that do not apply to the chosen variant are ignored."""

    variant: str = "denoising"  # one of VARIANTS
    arch: str = "auto"  # "mlp" | "conv" | "auto" (conv for images, mlp for vectors)
    latent_dim: int = 32
    widths: tuple[int, ...] = ()  # see NetworkConfig; () = defaults
    hidden: int = 256
    noise: str = "mask:0.1"  # denoising corruption: "gaussian:STD" | "mask:P" | "none"
    augment: bool | None = None  # random affine of images before corruption; None = on for denoising
    augment_strength: float = 1.0  # scales the affine's ranges (1: ±12°, ±1/14 of the size, ±10% scale)
    sparsity_weight: float = 1e-3  # sparse: weight of mean |z|_1
    k: int = 8  # ksparse: non-zeros kept in z
    contractive_weight: float = 1e-3  # contractive: weight of |dz/dx|_F^2
    beta: float = 1.0  # vae: weight of the KL term
    # denoising: weight of the NT-Xent term that pulls the embeddings of two corrupted views of an item
    # together and pushes other items' apart (SimCLR's objective beside the reconstruction); 0 = off
    view_weight: float = 0.0
    view_temperature: float = 0.2  # denoising: NT-Xent temperature of the view term
    # weight of the neighbour term (siamese.training.neighbours): items near in input space stay near
    # in latent space; None = on for 2-D latent spaces only, filled in by `pretrain`; 0 = off
    neighbour_weight: float | None = None
    neighbour_k: int = 10  # input-space neighbours each item is paired with

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        if self.variant not in VARIANTS:
            raise SiameseError(f"unknown variant {self.variant!r} (--variant); choose one of {', '.join(VARIANTS)}")
        if self.arch not in ("auto", "mlp", "conv"):
            raise SiameseError(f"unknown arch {self.arch!r} (--arch); choose one of auto, mlp, conv")
        if self.latent_dim <= 0:
            raise SiameseError(f"--latent-dim must be a positive integer, got {self.latent_dim}")
        if self.variant == "ksparse" and not 0 < self.k <= self.latent_dim:
            raise SiameseError(f"--k must be in 1..--latent-dim ({self.latent_dim}) for the ksparse variant, "
                               f"got {self.k}")
        if self.view_weight and self.variant != "denoising":
            raise SiameseError(f"--view-weight applies to the denoising variant (it compares two corrupted views), "
                               f"not {self.variant}; drop it or use --variant denoising")
        if not 0 < self.augment_strength <= 4:
            raise SiameseError(f"--augment-strength must be in (0, 4], got {self.augment_strength}")
        if not self.view_temperature > 0:
            raise SiameseError(f"--view-temperature must be > 0, got {self.view_temperature}")
        k_is_int = isinstance(self.neighbour_k, int) and not isinstance(self.neighbour_k, bool)
        if not k_is_int or not 1 <= self.neighbour_k <= 1000:  # the search holds items x k ids: no typo's gigabytes
            raise SiameseError(f"--neighbour-k must be an integer in 1..1000, got {self.neighbour_k!r}")
        for name in ("sparsity_weight", "contractive_weight", "beta", "view_weight", "neighbour_weight"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < math.inf:
                raise SiameseError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        parse_noise(self.noise)

    def network(self, input_shape: tuple[int, ...]) -> NetworkConfig:
        arch = self.arch if self.arch != "auto" else ("conv" if len(input_shape) == 3 else "mlp")
        return NetworkConfig(
            input_shape=tuple(input_shape),
            latent_dim=self.latent_dim,
            arch=arch,
            widths=self.widths,
            hidden=self.hidden,
            encoder_outputs=2 if self.variant == "vae" else 1,
        )

    def uses_augmentation(self, input_shape: tuple[int, ...]) -> bool:
        wanted = self.variant == "denoising" if self.augment is None else self.augment
        return bool(wanted) and len(input_shape) == 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AutoencoderConfig:
        return cls(**{**data, "widths": tuple(data.get("widths", ()))})


class Autoencoder(nn.Module):
    """Encoder + decoder + the variant's loss. `encode` is the embedding used everywhere."""

    def __init__(self, config: AutoencoderConfig, network: NetworkConfig):
        super().__init__()
        self.config = config
        self.network = network
        self.encoder = build_encoder(network)
        self.decoder = build_decoder(network)
        self.info: dict = {}  # normalisation, metric, fine-tuning record... (saved in config.json)

    @property
    def latent_dim(self) -> int:
        return self.network.latent_dim

    @property
    def preprocessing(self) -> Preprocessing:
        """The input pipeline (size, resize policy, channels, normalisation) of the training data,
        which every later input goes through: `load_items(src, preprocessing=model.preprocessing)`."""
        normalization = Normalization.from_dict(self.info["normalization"]) if "normalization" in self.info \
            else Normalization()
        recorded = self.info.get("preprocessing")
        if recorded is None:  # models saved before 0.3 resized by stretching
            return Preprocessing.for_input(self.network.input_shape, normalization)
        pipeline = Preprocessing.from_dict(recorded)
        if pipeline != Preprocessing.for_input(self.network.input_shape, normalization, pipeline.resize):
            raise SiameseError(f"the model's preprocessing record ({pipeline.describe()}) does not match its input "
                               f"shape {self.network.input_shape} and normalisation; the model is damaged")
        return pipeline

    @property
    def metric(self) -> str:
        """Distance the embedding is meant for ('l2' or 'cosine'); indexes follow it."""
        return self.info.get("metric", "l2")

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(code, log-variance or None) before any sparsification."""
        h = self.encoder(x)
        if self.config.variant == "vae":
            mean, logvar = h.chunk(2, dim=1)
            return mean, logvar.clamp(-20.0, 10.0)
        return h, None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x of shape (n, *input_shape) -> z of shape (n, latent_dim)."""
        z, _ = self.posterior(x)
        return keep_top_k(z, self.config.k) if self.config.variant == "ksparse" else z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z of shape (n, latent_dim) -> reconstruction logits of shape (n, *input_shape)."""
        return self.decoder(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructed items in the normalised [0, 1] space."""
        return torch.sigmoid(self.decode(self.encode(x)))

    def fingerprint(self) -> str:
        """sha256 of the weights; indexes record it to refuse vectors from another model."""
        from .fingerprint import fingerprint

        return fingerprint(self)

    def save(self, directory, *, overwrite: bool = False) -> None:
        """Write a model directory (config.json + model.safetensors), atomically."""
        from .saving import save_model

        save_model(self, directory, overwrite=overwrite)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Training loss of this variant on a batch of clean items; returns (loss, parts for logging)."""
        return LOSSES[self.config.variant](self, x, generator)


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over an item's values, averaged over items (targets in [0, 1])."""
    per_value = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return per_value.flatten(1).sum(1).mean()


def reconstruction_error(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """Per-item reconstruction loss of clean items, shape (n,): the anomaly score."""
    logits = model.decode(model.encode(x))
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def keep_top_k(z: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the k largest-magnitude entries of each row (k-sparse autoencoder)."""
    idx = z.abs().topk(k, dim=1).indices
    return torch.zeros_like(z).scatter(1, idx, z.gather(1, idx))


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over dims, averaged over items."""
    return (-0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)).mean()


def contractive_penalty(encoder: nn.Module, x: torch.Tensor, exact: bool, generator=None) -> torch.Tensor:
    """Mean over items of |dz/dx|_F^2.

    exact: one vector-Jacobian product per latent unit (batched), the true Frobenius norm.
    Otherwise an unbiased one-probe estimate E_u |u^T J|^2 with u ~ N(0, I), cheap for convnets.
    """
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        z = encoder(x)
        n, d = z.shape
        if exact:
            eye = torch.eye(d, dtype=z.dtype, device=z.device).unsqueeze(1).expand(d, n, d)
            (rows,) = torch.autograd.grad(z, x, grad_outputs=eye, is_grads_batched=True, create_graph=create_graph)
            return rows.pow(2).flatten(2).sum((0, 2)).mean()
        u = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        (vjp,) = torch.autograd.grad(z, x, grad_outputs=u, create_graph=create_graph)
        return vjp.pow(2).flatten(1).sum(1).mean()


def _plain(model: Autoencoder, x, generator):
    logits = model.decode(model.encode(x))
    return reconstruction_loss(logits, x), {}


def _denoising(model: Autoencoder, x, generator):
    def view() -> torch.Tensor:
        source = (random_affine(x, generator, strength=model.config.augment_strength)
                  if model.config.uses_augmentation(tuple(x.shape[1:])) else x)
        return corrupt(source, model.config.noise, generator)

    z = model.encode(view())
    recon = reconstruction_loss(model.decode(z), x)
    if not model.config.view_weight:
        return recon, {}
    agreement = view_agreement(z, model.encode(view()), model.config.view_temperature)
    return recon + model.config.view_weight * agreement, {"recon": recon.item(), "views": agreement.item()}


def view_agreement(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR) over 2n embeddings: row i of z1 and of z2, two views of one item, are the
    positive pair, every other item in the batch a negative. Computed as pytorch-metric-learning's
    SupConLoss with one label per item, which equals its NTXentLoss here but works on the 2n x 2n
    similarity matrix (NTXentLoss expands every positive against every negative pair: 150x slower
    at 256 embeddings)."""
    from pytorch_metric_learning.losses import SupConLoss

    labels = torch.arange(z1.shape[0], device=z1.device).repeat(2)
    return SupConLoss(temperature=temperature)(torch.cat([z1, z2]), labels)


def _sparse(model: Autoencoder, x, generator):
    z = model.encode(x)
    recon = reconstruction_loss(model.decode(z), x)
    l1 = z.abs().sum(1).mean()
    return recon + model.config.sparsity_weight * l1, {"recon": recon.item(), "l1": l1.item()}


def _contractive(model: Autoencoder, x, generator):
    recon = reconstruction_loss(model.decode(model.encode(x)), x)
    penalty = contractive_penalty(model.encoder, x, exact=model.network.arch == "mlp", generator=generator)
    return recon + model.config.contractive_weight * penalty, {"recon": recon.item(), "jacobian": penalty.item()}


def _vae(model: Autoencoder, x, generator):
    mean, logvar = model.posterior(x)
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    z = mean + (0.5 * logvar).exp() * eps
    recon = reconstruction_loss(model.decode(z), x)
    kl = kl_to_standard_normal(mean, logvar)
    return recon + model.config.beta * kl, {"recon": recon.item(), "kl": kl.item()}


LOSSES: dict[str, Callable] = {
    "plain": _plain,
    "ksparse": _plain,  # sparsity lives in `encode`
    "denoising": _denoising,
    "sparse": _sparse,
    "contractive": _contractive,
    "vae": _vae,
}
