"""Decoding one image file to a (C, H, W) float32 tensor in 0..255, header peeks, and gray/RGB conversion.

torchvision decodes png/jpeg/gif/webp; PIL handles the rest and reads headers without decoding pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from siamese.errors import SiameseError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_PIL_ONLY = (".bmp", ".tif", ".tiff")  # torchvision's decoder handles png/jpeg/gif/webp only
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def to_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """(..., C, H, W) -> (..., channels, H, W): drops alpha, RGB->luminance, gray->RGB."""
    c = x.shape[-3]
    if channels is None or c == channels:
        return x
    if c in (2, 4):
        x, c = x[..., : c - 1, :, :], c - 1
    if c == channels:
        return x
    if channels == 1 and c == 3:
        return TF.rgb_to_grayscale(x)
    if channels == 3 and c == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    raise SiameseError(f"cannot convert images with {c} channels to {channels}; "
                       "pass channels=None or use 1/3-channel images")


@contextmanager
def quiet_torchvision() -> Iterator[None]:
    """torchvision 0.29 deprecates its image decoders with a warning per call; keep logs readable."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        yield


def peek_image(path: Path) -> tuple[bool, tuple[int, int]]:
    """(is_grayscale, (H, W)) from the file header only (PIL opens lazily; pixels are not decoded)."""
    from PIL import Image

    with Image.open(path) as im:
        gray = im.mode in _GRAY_MODES
        if im.mode in ("P", "PA") and im.palette is not None:  # palette images: gray iff every entry is gray
            k = len(im.palette.mode)
            pal = np.frombuffer(bytes(im.palette.palette), np.uint8)
            pal = pal[: len(pal) // k * k].reshape(-1, k)
            gray = bool(np.all(pal[:, 0] == pal[:, 1]) and np.all(pal[:, 1] == pal[:, 2]))
        return gray, (im.height, im.width)


def decode_image_file(path: Path, channels: int) -> torch.Tensor:
    """Decode one image file to (channels, H, W) float32 in 0..255."""
    if path.suffix.lower() in _PIL_ONLY:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.array(im.convert("L" if channels == 1 else "RGB"))
        img = torch.from_numpy(arr)[None] if arr.ndim == 2 else torch.from_numpy(arr).permute(2, 0, 1)
    else:
        img = decode_image(str(path), mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
        if img.ndim == 4:  # animated GIF: first frame
            img = img[0]
    scale = 1 / 257 if img.dtype == torch.uint16 else 1.0  # 16-bit PNG -> 0..255 like 8-bit images
    return to_channels(img.to(torch.float32) * scale, channels)  # GIF decoding ignores the mode
