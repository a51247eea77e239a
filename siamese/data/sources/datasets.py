"""Named dataset sources: MNIST IDX files (mnist-idx:DIR), torchvision:NAME and scikit-learn's digits (sklearn:digits).

Each converts the whole dataset to one array at once (no per-item iteration) with the labels it ships with
and the fixed value range of its pixels.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ...errors import SiameseError, reason
from ..limits import MAX_INFLATED_BYTES
from .arrays import ArrayReader

DEFAULT_DATA_ROOT = Path("~/.cache/siamese/datasets")
TORCHVISION_DATASETS = {  # name: (how the split is chosen, layout of .data, attribute holding labels)
    "MNIST": ("train", "NHW", "targets"),
    "FashionMNIST": ("train", "NHW", "targets"),
    "KMNIST": ("train", "NHW", "targets"),
    "QMNIST": ("train", "NHW", "targets"),
    "USPS": ("train", "NHW", "targets"),
    "CIFAR10": ("train", "NHWC", "targets"),
    "CIFAR100": ("train", "NHWC", "targets"),
    "SVHN": ("split", "NCHW", "labels"),
}
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file (plain or .gz) as uint8: 2051 = images (n, rows, cols), 2049 = labels (n,).
    The header's dimensions are checked against the file size (a .gz: against MAX_INFLATED_BYTES, counted
    as float32) before the data is allocated."""
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    gz = path.suffix == ".gz"
    try:
        with gzip.open(path) if gz else open(path, "rb") as f:
            head = f.read(header)
            got = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
            if got != magic:
                raise SiameseError(f"{path} is not an IDX {'image' if ndim == 3 else 'label'} file: "
                                   f"magic number {got}, expected {magic}; check the file")
            dims = struct.unpack(f">{ndim}I", head[4:]) if len(head) == header else None
            expected = header if dims is None else header + math.prod(dims)
            if gz and (expected - header) * 4 > MAX_INFLATED_BYTES:
                raise SiameseError(f"{path} claims {expected - header:,} values once decompressed, more than the "
                                   f"{MAX_INFLATED_BYTES >> 20} MiB (as float32) read from a .gz; decompress it "
                                   "(gunzip): plain IDX files are read as they are")
            size = None if gz else os.fstat(f.fileno()).st_size
            if dims is None or (size is not None and size != expected):
                raise SiameseError(f"{path} is truncated or corrupt: expected {expected:,} bytes from its header, "
                                   f"found {size if size is not None else len(head):,}; re-download it")
            out = np.empty(expected - header, np.uint8)
            view, filled = memoryview(out), 0
            while filled < len(out) and (n := f.readinto(view[filled:filled + (16 << 20)])):
                filled += n
            if filled != len(out) or (gz and f.read(1)):
                raise SiameseError(f"{path} is truncated or corrupt: expected {expected:,} bytes from its header, "
                                   f"found {'more' if filled == len(out) else f'{header + filled:,}'}; re-download it")
    except (OSError, EOFError, zlib.error) as exc:
        raise SiameseError(f"cannot read {path}: {reason(exc)}; re-download or re-extract it") from exc
    return out.reshape(dims)


def mnist_idx_reader(folder: Path, split: str | None) -> ArrayReader:
    if not folder.is_dir():
        raise SiameseError(f"mnist-idx folder not found: {folder}; pass mnist-idx:DIR with the idx files")
    wanted = [split] if split else ["train", "test"]
    parts: list[tuple[str, np.ndarray, np.ndarray]] = []
    for s in wanted:
        found = []
        for name in _IDX_FILES[s]:
            found.append(next((folder / c for c in (name, name + ".gz") if (folder / c).is_file()), None))
        if found[0] is None and found[1] is None:
            continue
        if None in found:
            missing = _IDX_FILES[s][found.index(None)]
            raise SiameseError(f"{folder} has {s} {'labels' if found[1] else 'images'} but no {missing}[.gz]; add it")
        images, labels = read_idx(found[0], 2051), read_idx(found[1], 2049)
        if len(images) != len(labels):
            raise SiameseError(f"{found[0]} has {len(images)} images but {found[1]} has {len(labels)} labels; "
                               "use matching files")
        parts.append((s, images, labels))
    if not parts:
        names = ", ".join(f"{a}[.gz] + {b}[.gz]" for s in wanted for a, b in [_IDX_FILES[s]])
        raise SiameseError(f"no MNIST idx files in {folder} (expected {names}); check the folder")
    images = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    labels = np.concatenate([p[2] for p in parts]) if len(parts) > 1 else parts[0][2]
    keys = np.arange(len(images)).astype(str).tolist() if len(parts) == 1 else \
        [f"{s}-{i}" for s, im, _ in parts for i in range(len(im))]
    return ArrayReader(images, f"MNIST idx files in {folder}", keys=keys,
                       labels=labels.astype(str).tolist(), fixed_norm=(0.0, 255.0))


def digits_reader() -> ArrayReader:
    """scikit-learn's embedded 8x8 digits: 1797 images, their 0..16 values brought to the 0..255 of 8-bit
    image files, so a model trained on them takes a PNG of a digit (an upload, a query file) as it is."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = d.images.reshape(-1, 1, 8, 8) * (255.0 / 16.0)
    return ArrayReader(pixels, "sklearn digits", labels=d.target.astype(str).tolist(), fixed_norm=(0.0, 255.0))


def torchvision_reader(name: str, root: str | Path | None, download: bool, split: str | None) -> ArrayReader:
    """torchvision.datasets.<name>: convert `.data` in one go (no per-item iteration)."""
    import torchvision.datasets

    canonical = {k.lower(): k for k in TORCHVISION_DATASETS}.get(name.lower())
    if canonical is None:
        raise SiameseError(f"unknown torchvision dataset {name!r}; supported: {', '.join(TORCHVISION_DATASETS)}")
    how, layout, label_attr = TORCHVISION_DATASETS[canonical]
    where = Path(root if root is not None else DEFAULT_DATA_ROOT).expanduser()
    parts = []
    for s in [split] if split else ["train", "test"]:
        kwargs = {"train": s == "train"} if how == "train" else {"split": s}
        try:
            ds = getattr(torchvision.datasets, canonical)(str(where), download=download, **kwargs)
        except (RuntimeError, OSError, ValueError) as exc:
            if download:
                raise SiameseError(f"could not download torchvision:{canonical} into {where}: {reason(exc)}; "
                                   "check the network or place the files there yourself") from exc
            raise SiameseError(f"torchvision:{canonical} ({s}) not found under {where}; pass download=True "
                               "(--download) to fetch it, or root=DIR (--root) where it is stored") from exc
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        y = getattr(ds, label_attr)
        y = (y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).astype(np.int64)
        parts.append((s, data, y[:, 0] if y.ndim == 2 else y))  # QMNIST: column 0 is the class
    data = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    y = np.concatenate([p[2] for p in parts]) if len(parts) > 1 else parts[0][2]
    keys = np.arange(len(data)).astype(str).tolist() if len(parts) == 1 else \
        [f"{s}-{i}" for s, d, _ in parts for i in range(len(d))]
    what = f"torchvision {canonical} at {where}" + (f" ({split})" if split else "")
    return ArrayReader(data, what, keys=keys, labels=y.astype(str).tolist(), fixed_norm=(0.0, 255.0),
                       channels_last=layout == "NHWC")
