"""Reconstruct or denoise items into a folder of images, with each item's error beside it.

The folder holds one PNG per item, ``reconstructions.npy`` (float32, (n, *item shape), in the
items' original value range: the model's normalisation inverted) and ``errors.csv`` with the
columns ``file, key, reconstruction_error`` and, when the input was corrupted first,
``psnr_noisy, psnr_denoised``.

- reconstruction_error: binary cross-entropy of the reconstruction against the clean item,
  summed over its values (the model's training loss). Without noise it is exactly
  `siamese.inference.anomaly.reconstruction_scores`.
- PSNR, in dB, in the model's normalised [0, 1] space (peak 1): 10 log10(1 / MSE) of the noisy
  input and of the reconstruction against the clean item; a denoising autoencoder raises it.
- PNGs are 8-bit: 255 x the normalised value, which is the original pixel value for 8-bit images.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from index.atomic import atomic_directory
from index.outputs import check_output_directory

from ..data.augment import corrupt, parse_noise
from ..errors import SiameseError
from ..models.model_input import as_model_input, model_normalization

logger = logging.getLogger(__name__)

ERRORS_CSV = "errors.csv"
ARRAY = "reconstructions.npy"
MAX_PSNR = 100.0  # dB reported for an exact copy (MSE 0)


@dataclass
class ReconstructionReport:
    """Per-item results aligned with `keys`; PSNR arrays are None without noise."""

    out_dir: Path
    keys: list[str]
    files: list[str]
    errors: np.ndarray
    noise: str | None = None
    psnr_noisy: np.ndarray | None = None
    psnr_denoised: np.ndarray | None = None

    @property
    def mean_error(self) -> float:
        return float(self.errors.mean())

    @property
    def psnr_gain(self) -> float | None:
        """Mean PSNR of the reconstructions minus that of the noisy inputs, dB."""
        if self.psnr_noisy is None:
            return None
        return float(self.psnr_denoised.mean() - self.psnr_noisy.mean())


def psnr(x: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Per-item peak signal-to-noise ratio in dB, shape (n,); items in [0, peak]."""
    x, reference = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(reference, dtype=torch.float64)
    mse = (x - reference).pow(2).flatten(1).mean(1)
    values = 10 * torch.log10(peak**2 / mse.clamp_min(peak**2 * 10 ** (-MAX_PSNR / 10)))
    return values.numpy()


def reconstruct_items(model, items, *, noise: str | None = None, seed: int = 0, batch_size: int = 256,
                      progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, noisy, reconstruction logits), each of shape (n, *input_shape), in the model's space.

    The corruption is drawn for all items at once from `seed`, so it does not depend on batch_size;
    without noise, noisy is clean. torch.sigmoid(logits) is the reconstruction in [0, 1].
    """
    if batch_size <= 0:
        raise SiameseError(f"batch_size must be positive, got {batch_size}")
    clean = as_model_input(model, items)
    noisy = corrupt(clean, noise, torch.Generator().manual_seed(seed)) if noise else clean
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(clean), batch_size), desc="reconstruct", leave=False,
                              disable=None if progress else True):
                outputs.append(model.decode(model.encode(noisy[start:start + batch_size])).float())
    finally:
        model.train(was_training)
    return clean, noisy, torch.cat(outputs)


def reconstruct_to_dir(model, items, out_dir: str | os.PathLike, *, noise: str | None = None, seed: int = 0,
                       batch_size: int = 256, progress: bool = False, overwrite: bool = False) -> ReconstructionReport:
    """Write every item's reconstruction (of a copy corrupted with `noise` when given) to out_dir.

    items: an ItemSet (keys name the files) or an array/tensor (keys are row numbers).
    noise: "gaussian:STD" or "mask:P" (see siamese.data.augment.parse_noise); seed fixes the corruption.
    out_dir is replaced as a whole, atomically; an existing folder that is not a reconstruction
    output is refused rather than overwritten (unless `overwrite`).
    """
    if noise is not None:
        kind, _ = parse_noise(noise)
        noise = None if kind == "none" else noise
    target = check_output_directory(out_dir, "reconstructions", overwrite=overwrite)
    clean, noisy, logits = reconstruct_items(model, items, noise=noise, seed=seed, batch_size=batch_size,
                                             progress=progress)
    errors = F.binary_cross_entropy_with_logits(logits, clean, reduction="none").flatten(1).sum(1).numpy()
    recon = torch.sigmoid(logits)
    keys = [str(k) for k in getattr(items, "keys", range(len(clean)))]
    report = ReconstructionReport(target, keys, _file_names(keys), errors.astype(np.float64), noise)
    if noise:
        report.psnr_noisy, report.psnr_denoised = psnr(noisy, clean), psnr(recon, clean)
    try:
        with atomic_directory(target, "reconstructions", overwrite=overwrite) as tmp:
            _write(tmp, report, recon, model, progress)
    except OSError as error:
        raise SiameseError(f"cannot write {target}: {error.strerror or error}; choose a writable folder") from None
    logger.info("wrote %d reconstructions to %s (mean error %.4g)", len(keys), target, report.mean_error)
    return report


MAX_STEM = 100  # characters of a key kept in its PNG's name (file systems allow 255 bytes)


def _file_names(keys: list[str]) -> list[str]:
    """Readable, unique PNG names from item keys ("0/3.png" -> "0_3.png"); row numbers prefix them on clashes.
    Long keys are cut to MAX_STEM characters plus a hash of the whole key, so names stay valid and distinct."""
    stems = []
    for key in keys:
        stem = key.rsplit(".", 1)[0] if re.search(r"\.[A-Za-z]\w{0,4}$", key) else key
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "item"
        if len(stem) > MAX_STEM:
            stem = f"{stem[:MAX_STEM]}-{hashlib.sha1(key.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"
        stems.append(stem)
    if len(set(stems)) < len(stems):
        width = len(str(len(stems) - 1))
        stems = [f"{i:0{width}d}-{stem}" for i, stem in enumerate(stems)]
    return [f"{stem}.png" for stem in stems]


def _as_image(item: torch.Tensor) -> torch.Tensor:
    """One item in [0, 1] -> uint8 (C, H, W): images as they are, vectors as a square or a 1 x D strip."""
    if item.ndim == 1:
        side = int(np.sqrt(item.numel()))
        item = item.reshape(1, side, side) if side * side == item.numel() else item.reshape(1, 1, -1)
    elif item.ndim == 3 and item.shape[0] not in (1, 3):
        item = item[:1]
    return (item.clamp(0, 1) * 255).round().to(torch.uint8)


def _write(folder: Path, report: ReconstructionReport, recon: torch.Tensor, model, progress: bool) -> None:
    from torchvision.io import write_png

    for name, item in tqdm(list(zip(report.files, recon)), desc="write images", leave=False,
                           disable=None if progress else True):
        write_png(_as_image(item), str(folder / name))
    raw = model_normalization(model).invert(recon)
    np.save(folder / ARRAY, np.ascontiguousarray(raw.numpy(), dtype=np.float32), allow_pickle=False)
    with open(folder / ERRORS_CSV, "w", newline="") as fh:
        writer = csv.writer(fh)
        psnr_columns = ["psnr_noisy", "psnr_denoised"] if report.noise else []
        writer.writerow(["file", "key", "reconstruction_error"] + psnr_columns)
        for i, (name, key) in enumerate(zip(report.files, report.keys)):
            row = [name, key, f"{report.errors[i]:.9g}"]
            if report.noise:
                row += [f"{report.psnr_noisy[i]:.4f}", f"{report.psnr_denoised[i]:.4f}"]
            writer.writerow(row)
