"""The input pipeline a model was trained with (image size, resize policy, channels, normalisation).

Like torchvision weights carry `transforms()`, every model records its Preprocessing, and every later
input (index build, query, classify, embed...) goes through it: a model trained on 64x64 photos needs
no `--image-size 64` again, and query images of any size are resized the same way.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF

from ..errors import SiameseError
from .limits import MAX_IMAGE_SIDE
from .normalization import Normalization

log = logging.getLogger(__name__)

RESIZE_MODES = ("stretch", "crop")  # stretch: to H x W as is; crop: keep the aspect ratio, centre-crop the rest
DEFAULT_RESIZE = "stretch"
MAX_DEFAULT_SIDE = 64  # mixed-size folders are brought to at most 64 x 64: CPU training stays minutes, not hours


@dataclass(frozen=True)
class Preprocessing:
    """image_size (H, W) and channels (1 or 3) for images, both None for vectors; resize in RESIZE_MODES;
    normalization maps raw values (pixels 0..255) to the model's input space."""

    image_size: tuple[int, int] | None = None
    channels: int | None = None
    resize: str = DEFAULT_RESIZE
    normalization: Normalization = field(default_factory=Normalization)

    def __post_init__(self) -> None:
        check_resize(self.resize)
        if (self.image_size is None) != (self.channels is None):
            raise SiameseError("preprocessing needs both image_size and channels (images) or neither (vectors)")
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_IMAGE_SIDE
                                         for s in size):
                raise SiameseError(f"invalid preprocessing image_size {self.image_size!r}; expected [H, W] of "
                                   f"ints in 1..{MAX_IMAGE_SIDE}")
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
            if self.channels not in (1, 3):
                raise SiameseError(f"invalid preprocessing channels {self.channels!r}; expected 1 or 3")

    @classmethod
    def for_input(cls, input_shape: tuple[int, ...], normalization: Normalization,
                  resize: str = DEFAULT_RESIZE) -> Preprocessing:
        """The pipeline that feeds items of `input_shape` ((C, H, W) images or (D,) vectors)."""
        if len(input_shape) == 3:
            return cls((int(input_shape[1]), int(input_shape[2])), int(input_shape[0]), resize, normalization)
        return cls(None, None, resize, normalization)

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments of load_items / iter_item_chunks that apply this pipeline."""
        return {"image_size": self.image_size, "channels": self.channels, "resize": self.resize,
                "normalization": self.normalization}

    def describe(self) -> str:
        if self.image_size is None:
            return "vectors"
        h, w = self.image_size
        return f"{h}x{w} {'grey' if self.channels == 1 else 'RGB'} ({self.resize})"

    def to_dict(self) -> dict[str, Any]:
        return {"image_size": None if self.image_size is None else list(self.image_size), "channels": self.channels,
                "resize": self.resize, "normalization": self.normalization.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> Preprocessing:
        """Checked field by field: a model's config.json may be hostile."""
        keys = {"image_size", "channels", "resize", "normalization"}
        if not isinstance(data, Mapping) or set(data) != keys:
            raise SiameseError(f"invalid preprocessing record; expected exactly the keys {', '.join(sorted(keys))}")
        size = data["image_size"]
        if size is not None and not isinstance(size, list):
            raise SiameseError("invalid preprocessing image_size; expected [H, W] or null")
        if not isinstance(data["resize"], str):
            raise SiameseError("invalid preprocessing resize; expected a string")
        return cls(None if size is None else tuple(size), data["channels"], data["resize"],
                   Normalization.from_dict(data["normalization"]))


def check_resize(resize: Any) -> str:
    if resize not in RESIZE_MODES:
        raise SiameseError(f"--resize {resize!r}: expected one of {', '.join(RESIZE_MODES)}")
    return resize


def resize_images(x: torch.Tensor, size: tuple[int, int], resize: str = DEFAULT_RESIZE) -> torch.Tensor:
    """(..., C, h, w) -> (..., C, H, W). stretch: scale each side; crop: scale the shorter side to fit,
    then cut the centre, so shapes are not distorted."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if (h, w) == tuple(size):
        return x
    if resize == "crop":
        scale = max(size[0] / h, size[1] / w)
        scaled = [max(size[0], math.ceil(h * scale - 1e-6)), max(size[1], math.ceil(w * scale - 1e-6))]
        return TF.center_crop(TF.resize(x, scaled, antialias=True), list(size))
    return TF.resize(x, list(size), antialias=True)


def default_image_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """A square size for a folder of mixed image sizes: the median shorter side, at most MAX_DEFAULT_SIDE
    (the conv networks take any size)."""
    side = min(MAX_DEFAULT_SIDE, int(statistics.median(min(h, w) for h, w in sizes)))
    return side, side
