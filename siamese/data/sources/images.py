"""Image sources: a folder of images (ImageFolder-style labels) or explicit image files, decoded chunk by chunk."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...errors import SiameseError, reason
from ..limits import MAX_PIXELS
from ..preprocessing import DEFAULT_RESIZE, default_image_size, resize_images
from .image_decode import (
    IMAGE_EXTENSIONS,
    decode_image_file,
    peek_image,
    quiet_torchvision,
)
from .reader import Reader

log = logging.getLogger(__name__)


class ImageFilesReader(Reader):
    """Image files decoded with torchvision chunk by chunk; every item becomes (C, H, W).
    max_pixels bounds each image, checked against its header before it is decoded."""

    fixed_norm = (0.0, 255.0)

    def __init__(self, paths: list[Path], keys: list[str], labels: list[str | None] | None, description: str,
                 max_pixels: int = MAX_PIXELS) -> None:
        self.paths, self.keys, self.labels, self.description = paths, keys, labels, description
        self.max_pixels = max_pixels
        self.channels, self.size, self.on_error, self.skipped = 3, (0, 0), "raise", []
        self.resize = DEFAULT_RESIZE

    def limit(self, n: int) -> None:
        super().limit(n)
        self.paths = self.paths[:n]

    def _bad(self, i: int, exc: BaseException) -> None:
        if self.on_error == "raise":
            if isinstance(exc, SiameseError):  # our own refusal names the file and what to do
                raise exc
            raise SiameseError(f"cannot read image {self.paths[i]}: {reason(exc)}; fix or delete it, "
                               "or pass --on-error skip to skip unreadable images") from exc
        log.debug("skipping unreadable image %s: %s", self.paths[i], reason(exc))
        self.skipped.append((self.keys[i], reason(exc)))

    def prepare(self, channels: int | None, image_size: tuple[int, int] | None, on_error: str,
                resize: str = DEFAULT_RESIZE) -> None:
        """Read headers only when channels or size must be inferred; drops unreadable files with
        --on-error skip. A folder of mixed sizes gets a default size (default_image_size), said in one line."""
        self.on_error, self.resize = on_error, resize
        if channels is None or image_size is None:
            grays, sizes, keep = [], [], []
            for i, path in enumerate(self.paths):
                try:
                    gray, size = peek_image(path, self.max_pixels)
                except Exception as exc:  # any decoder failure means an unusable file
                    self._bad(i, exc)
                    continue
                grays.append(gray)
                sizes.append(size)
                keep.append(i)
            if not keep:
                raise SiameseError(f"no readable images in {self.description} "
                                   f"({len(self.skipped)} unreadable files skipped)")
            if len(keep) < len(self.paths):
                self.paths = [self.paths[i] for i in keep]
                self.keys = [self.keys[i] for i in keep]
                self.labels = None if self.labels is None else [self.labels[i] for i in keep]
            channels = channels or (1 if all(grays) else 3)
            if image_size is None:
                image_size = sizes[0]
                if len(set(sizes)) > 1:
                    image_size = default_image_size(sizes)
                    smallest, largest = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
                    log.warning("%s holds images of mixed sizes (%dx%d to %dx%d): resizing all to %dx%d (%s); "
                                "choose with --image-size", self.description, *smallest, *largest, *image_size,
                                resize)
        self.channels, self.size = channels, image_size

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.size)

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, np.ndarray]:
        out = torch.empty((stop - start, *self.item_shape), dtype=torch.float32)
        kept: list[int] = []
        with quiet_torchvision():
            for i in range(start, stop):
                try:
                    img = decode_image_file(self.paths[i], self.channels, self.max_pixels)
                except Exception as exc:  # corrupt/truncated/unsupported content
                    self._bad(i, exc)
                    continue
                out[len(kept)] = resize_images(img, self.size, self.resize)
                kept.append(i)
        return out[: len(kept)], np.asarray(kept, dtype=np.int64)


def image_folder_reader(root: Path, max_pixels: int = MAX_PIXELS) -> ImageFilesReader:
    """Recursive, sorted; key = posix path relative to root; first-level folder names are labels (ImageFolder style)."""
    found = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(root).parts) and p.is_file()]
    if not found:
        raise SiameseError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {root}; "
                           "point to a folder that contains images")
    keyed = sorted((p.relative_to(root).as_posix(), p) for p in found)
    keys = [k for k, _ in keyed]
    tops = [k.split("/", 1) for k in keys]
    labels = None
    if all(len(t) == 2 for t in tops) and len({t[0] for t in tops}) >= 2:
        labels = [t[0] for t in tops]
    return ImageFilesReader([p for _, p in keyed], keys, labels, f"image folder {root}", max_pixels)


def image_files_reader(paths: Sequence[str | Path], max_pixels: int = MAX_PIXELS) -> ImageFilesReader:
    """Explicit image files (e.g. queries); key = the path as given, posix separators."""
    out = [Path(p) for p in paths]
    if not out:
        raise SiameseError("empty list of image files; pass at least one image path")
    for p in out:
        if p.is_dir():
            raise SiameseError(f"{p} is a folder, not an image file; pass the images in it (e.g. {p / '*.png'})")
        if not p.is_file():
            raise SiameseError(f"image file not found: {p}; check the path")
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            raise SiameseError(f"unsupported image type {p.suffix!r} for {p}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    what = f"image file {out[0]}" if len(out) == 1 else f"{len(out)} image files ({out[0]}, ...)"
    return ImageFilesReader(out, [p.as_posix() for p in out], None, what, max_pixels)
