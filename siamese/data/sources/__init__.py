"""Which reader a source needs: classify() names the kind of source, open_reader() opens its Reader.

The readers live in one module per kind of input (images, arrays, datasets); this
module dispatches between them and re-exports their names. Readers return *raw* float32 values;
siamese.data.loading chooses the Normalization, applies it and wraps the result in ItemSets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import SiameseError, reason
from ..labels import label_str, labels_to_strings
from ..limits import MAX_PIXELS
from .arrays import ArrayReader, csv_reader, npy_reader, npz_reader
from .datasets import (
    DEFAULT_DATA_ROOT,
    TORCHVISION_DATASETS,
    digits_reader,
    mnist_idx_reader,
    read_idx,
    torchvision_reader,
)
from .image_decode import IMAGE_EXTENSIONS, to_channels
from .images import ImageFilesReader, image_files_reader, image_folder_reader
from .reader import Reader

__all__ = ["classify", "open_reader", "Reader", "ArrayReader", "ImageFilesReader", "reason", "label_str",
           "labels_to_strings", "to_channels", "IMAGE_EXTENSIONS", "DEFAULT_DATA_ROOT", "TORCHVISION_DATASETS",
           "image_folder_reader", "image_files_reader", "npy_reader", "npz_reader", "csv_reader", "read_idx",
           "mnist_idx_reader", "digits_reader", "torchvision_reader"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$")  # >= 2 chars, so C:\ paths are not schemes


def classify(source: Any) -> tuple[str, Any]:
    """(kind, detail) for a non-ItemSet source; raises SiameseError for what load_items cannot read."""
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return "array", source
    if isinstance(source, (list, tuple)):
        if source and all(isinstance(p, (str, Path)) for p in source):
            return "files", list(source)
        return "array", source
    if not isinstance(source, (str, Path)):
        raise SiameseError(f"unsupported source type {type(source).__name__}; pass a path, a list of image "
                           "paths, an array/tensor, an ItemSet, or mnist-idx:DIR / torchvision:NAME / sklearn:digits")
    text = str(source)
    match = _SCHEME.match(text) if isinstance(source, str) else None
    if match and not Path(text).exists():
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme in ("mnist-idx", "torchvision", "sklearn") and not rest:
            raise SiameseError(f"source {text!r} is missing its argument; "
                               "e.g. mnist-idx:DIR, torchvision:MNIST, sklearn:digits")
        if scheme == "sklearn" and rest.lower() != "digits":
            raise SiameseError(f"unknown scikit-learn dataset {rest!r}; only sklearn:digits is supported")
        if scheme in ("mnist-idx", "torchvision", "sklearn"):
            return scheme, rest
        raise SiameseError(f"unknown source scheme {match.group(1)!r} in {text!r}; use a path, mnist-idx:DIR, "
                           "torchvision:NAME or sklearn:digits")
    path = Path(text).expanduser()
    if not path.exists():
        raise SiameseError(f"source not found: {path}; check the path")
    if path.is_dir():
        return "folder", path
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz", ".csv"):
        return suffix[1:], path
    if suffix in IMAGE_EXTENSIONS:
        return "image", path
    raise SiameseError(f"unsupported file type {suffix or '(none)'!r} for {path}; use an image folder, an image, "
                       ".npy, .npz or .csv")


def open_reader(source: Any, root: str | Path | None, download: bool, split: str | None, *,
                max_pixels: int = MAX_PIXELS, limit: int | None = None) -> Reader:
    """The Reader for a non-ItemSet source; split applies to mnist-idx:DIR and torchvision:NAME only.
    max_pixels bounds each image; limit (the items that will be used) lets a compressed .npz too large to
    inflate whole be read up to it."""
    kind, detail = classify(source)
    if split is not None and kind not in ("mnist-idx", "torchvision"):
        raise SiameseError(f"split={split!r} only applies to mnist-idx:DIR and torchvision:NAME sources, not {kind}")
    if kind == "array":
        try:
            arr = detail.detach().cpu().numpy() if isinstance(detail, torch.Tensor) else np.asarray(detail)
        except ValueError as exc:
            raise SiameseError(f"mixed item shapes in the in-memory data ({reason(exc)}); "
                               "give every item the same shape") from exc
        return ArrayReader(arr, f"in-memory array of shape {arr.shape}")
    if kind in ("files", "image"):
        return image_files_reader(detail if kind == "files" else [detail], max_pixels)
    if kind == "mnist-idx":
        return mnist_idx_reader(Path(detail).expanduser(), split)
    if kind == "torchvision":
        return torchvision_reader(detail, root, download, split)
    if kind == "sklearn":
        return digits_reader()
    if kind == "folder":
        return image_folder_reader(detail, max_pixels)
    if kind == "npz":
        return npz_reader(detail, limit)
    return {"npy": npy_reader, "csv": csv_reader}[kind](detail)
