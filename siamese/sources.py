"""Per-source readers behind siamese.data: each turns one kind of input into keys, labels and raw values.

Readers are internal. They return *raw* float32 values (pixels 0..255, digits 0..16, vectors as stored);
siamese.data chooses the Normalization, applies it and wraps the result in ItemSets.
Image items are (C, H, W); vector items are (D,).
"""

from __future__ import annotations

import csv
import gzip
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from siamese.errors import SiameseError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_PIL_ONLY = (".bmp", ".tif", ".tiff")  # torchvision's decoder handles png/jpeg/gif/webp only
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$")  # >= 2 chars, so C:\ paths are not schemes
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
_CHUNK_BYTES = 64 << 20  # block size for scans over memory-mapped arrays


def reason(exc: BaseException) -> str:
    """First line of an exception message, so SiameseError messages stay one line."""
    text = str(exc).strip().splitlines()
    # torchvision prefixes C++ errors with "decode_image, /path/to/file.cpp:52, "
    return re.sub(r"^\w+, \S+\.cpp:\d+, ", "", text[0]) if text else type(exc).__name__


def labels_to_strings(values: Any, n: int, what: str) -> list[str | None]:
    """Per-item labels as strings; None/NaN/"" mean unlabelled. Integral floats become "3", not "3.0"."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise SiameseError(f"labels for {what} must be a sequence of {n} labels, got {type(values).__name__}")
    if len(values) != n:
        raise SiameseError(f"labels length mismatch for {what}: {len(values)} labels for {n} items; "
                           "pass exactly one label (or None) per item")
    arr = np.asarray(values) if isinstance(values, np.ndarray) else None
    if arr is not None and arr.ndim != 1:
        raise SiameseError(f"labels for {what} have shape {arr.shape}; expected one label per item, shape ({n},)")
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iub":
        return arr.astype(np.int64).astype(str).tolist()
    if arr is not None and arr.ndim == 1 and arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if np.all(arr[finite] == np.round(arr[finite])):
            text = np.where(finite, arr, 0).astype(np.int64).astype(str)
        else:
            text = arr.astype(str)
        return [t if ok else None for t, ok in zip(text.tolist(), finite.tolist())]
    return [label_str(v) for v in (arr.tolist() if arr is not None else values)]


def label_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return v.strip() or None
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else str(int(v)) if float(v).is_integer() else str(float(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


class Reader:
    """n items with keys and optional labels; read(start, stop) returns raw values and the positions kept."""

    description: str
    keys: list[str]
    labels: list[str | None] | None
    fixed_norm: tuple[float, float] | None = None  # (offset, scale) dictated by the source; None = infer
    skipped: list[tuple[str, str]]  # (key, reason) of unreadable items dropped with on_error="skip"

    def limit(self, n: int) -> None:
        self.keys = self.keys[:n]
        self.labels = None if self.labels is None else self.labels[:n]

    def prepare(self, channels: int | None, image_size: tuple[int, int] | None, on_error: str) -> None:
        """Validate and settle the item shape before any chunk is read."""

    @property
    def item_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def value_range(self) -> tuple[float, float]:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, np.ndarray]:
        raise NotImplementedError


class ArrayReader(Reader):
    """A numeric array (possibly memory-mapped) of shape (n, D), (n, H, W) or (n, C, H, W)."""

    def __init__(self, arr: np.ndarray, description: str, *, keys: list[str] | None = None,
                 labels: list[str | None] | None = None, fixed_norm: tuple[float, float] | None = None,
                 channels_last: bool = False) -> None:
        if arr.dtype.kind not in "biuf":
            raise SiameseError(f"{description} has dtype {arr.dtype}; expected a numeric array (ints or floats)")
        if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
            raise SiameseError(f"{description} is empty (shape {arr.shape}); expected (n, ...) with n >= 1 items")
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        elif arr.ndim == 3:  # (n, H, W) grayscale images
            arr = arr.reshape(arr.shape[0], 1, *arr.shape[1:])
        elif arr.ndim == 4 and not channels_last and arr.shape[1] not in (1, 2, 3, 4) and arr.shape[3] in (1, 3, 4):
            log.info("%s looks channels-last %s; reading it as (n, C, H, W)", description, arr.shape)
            channels_last = True
        elif arr.ndim > 4:
            raise SiameseError(f"{description} has shape {arr.shape}; expected (n, D) vectors or (n, C, H, W) images")
        self.arr, self.channels_last, self.description = arr, channels_last, description
        self.keys = keys if keys is not None else np.arange(arr.shape[0]).astype(str).tolist()
        self.labels, self.fixed_norm, self.skipped = labels, fixed_norm, []
        self._range: tuple[float, float] | None = None

    @property
    def item_shape(self) -> tuple[int, ...]:
        s = self.arr.shape[1:]
        return (s[2], s[0], s[1]) if self.channels_last else tuple(s)

    def _blocks(self) -> Iterator[np.ndarray]:
        n = len(self.keys)
        step = max(1, _CHUNK_BYTES // max(1, self.arr[0].nbytes))
        for start in range(0, n, step):
            yield np.asarray(self.arr[start:min(n, start + step)])

    def prepare(self, channels: int | None, image_size: tuple[int, int] | None, on_error: str) -> None:
        """One pass over the (limited) data: reject NaN/inf and record min/max for normalisation."""
        lo, hi, bad, bad_rows, first = np.inf, -np.inf, 0, 0, None
        offset = 0
        for block in self._blocks():
            if block.dtype.kind == "f":
                nonfinite = ~np.isfinite(block.reshape(len(block), -1))
                if nonfinite.any():
                    rows = nonfinite.any(axis=1)
                    bad, bad_rows = bad + int(nonfinite.sum()), bad_rows + int(rows.sum())
                    first = first if first is not None else offset + int(np.argmax(rows))
            if not bad:
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
            offset += len(block)
        if bad:
            raise SiameseError(f"{self.description} contains {bad} NaN/inf values in {bad_rows} items "
                               f"(first: item {self.keys[first]!r}); remove or impute them before loading")
        self._range = (lo, hi)

    def value_range(self) -> tuple[float, float]:
        assert self._range is not None, "prepare() first"
        return self._range

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, np.ndarray]:
        block = np.asarray(self.arr[start:stop], dtype=np.float32)
        block = np.ascontiguousarray(block.transpose(0, 3, 1, 2) if self.channels_last else block)
        if not block.flags.writeable:  # a read-only memory map: copy out of it
            block = block.copy()
        return torch.from_numpy(block), np.arange(start, stop)


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
def _quiet_torchvision() -> Iterator[None]:
    """torchvision 0.29 deprecates its image decoders with a warning per call; keep logs readable."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        yield


def _peek(path: Path) -> tuple[bool, tuple[int, int]]:
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


def _decode(path: Path, channels: int) -> torch.Tensor:
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


class ImageFilesReader(Reader):
    """Image files decoded with torchvision chunk by chunk; every item becomes (C, H, W)."""

    fixed_norm = (0.0, 255.0)

    def __init__(self, paths: list[Path], keys: list[str], labels: list[str | None] | None, description: str) -> None:
        self.paths, self.keys, self.labels, self.description = paths, keys, labels, description
        self.channels, self.size, self.on_error, self.skipped = 3, (0, 0), "raise", []

    def limit(self, n: int) -> None:
        super().limit(n)
        self.paths = self.paths[:n]

    def _bad(self, i: int, exc: BaseException) -> None:
        if self.on_error == "raise":
            raise SiameseError(f"cannot read image {self.paths[i]}: {reason(exc)}; fix or delete it, "
                               "or pass on_error='skip' to skip unreadable images") from exc
        log.debug("skipping unreadable image %s: %s", self.paths[i], reason(exc))
        self.skipped.append((self.keys[i], reason(exc)))

    def prepare(self, channels: int | None, image_size: tuple[int, int] | None, on_error: str) -> None:
        """Read headers only when channels or size must be inferred; drops unreadable files if on_error='skip'."""
        self.on_error = on_error
        if channels is None or image_size is None:
            grays, sizes, keep = [], {}, []
            for i, path in enumerate(self.paths):
                try:
                    gray, size = _peek(path)
                except Exception as exc:  # any decoder failure means an unusable file
                    self._bad(i, exc)
                    continue
                grays.append(gray)
                sizes.setdefault(size, self.keys[i])
                keep.append(i)
            if not keep:
                raise SiameseError(f"no readable images in {self.description} "
                                   f"({len(self.skipped)} unreadable files skipped)")
            if len(keep) < len(self.paths):
                self.paths = [self.paths[i] for i in keep]
                self.keys = [self.keys[i] for i in keep]
                self.labels = None if self.labels is None else [self.labels[i] for i in keep]
            if image_size is None and len(sizes) > 1:
                (s1, k1), (s2, k2) = list(sizes.items())[:2]
                raise SiameseError(f"mixed image sizes ({s1[0]}x{s1[1]} in {k1}, {s2[0]}x{s2[1]} in {k2}); "
                                   "pass image_size=... / --image-size")
            channels = channels or (1 if all(grays) else 3)
            image_size = image_size or next(iter(sizes))
        self.channels, self.size = channels, image_size

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.size)

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, np.ndarray]:
        out = torch.empty((stop - start, *self.item_shape), dtype=torch.float32)
        kept: list[int] = []
        with _quiet_torchvision():
            for i in range(start, stop):
                try:
                    img = _decode(self.paths[i], self.channels)
                except Exception as exc:  # corrupt/truncated/unsupported content
                    self._bad(i, exc)
                    continue
                if tuple(img.shape[-2:]) != self.size:
                    img = TF.resize(img, list(self.size), antialias=True)
                out[len(kept)] = img
                kept.append(i)
        return out[: len(kept)], np.asarray(kept, dtype=np.int64)


def image_folder_reader(root: Path) -> ImageFilesReader:
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
    return ImageFilesReader([p for _, p in keyed], keys, labels, f"image folder {root}")


def image_files_reader(paths: Sequence[str | Path]) -> ImageFilesReader:
    """Explicit image files (e.g. queries); key = the path as given, posix separators."""
    out = [Path(p) for p in paths]
    if not out:
        raise SiameseError("empty list of image files; pass at least one image path")
    for p in out:
        if not p.is_file():
            raise SiameseError(f"image file not found: {p}; check the path")
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            raise SiameseError(f"unsupported image type {p.suffix!r} for {p}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    what = f"image file {out[0]}" if len(out) == 1 else f"{len(out)} image files ({out[0]}, ...)"
    return ImageFilesReader(out, [p.as_posix() for p in out], None, what)


def npy_reader(path: Path) -> ArrayReader:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SiameseError(f"cannot read {path} as .npy: {reason(exc)}; save a numeric array with np.save") from exc
    return ArrayReader(arr, f"npy file {path}")


def npz_reader(path: Path) -> ArrayReader:
    """Arrays `x` (required), `y` (labels) and `keys` (optional)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files if name in ("x", "y", "keys")}
            names = z.files
    except (OSError, ValueError) as exc:
        raise SiameseError(f"cannot read {path} as .npz: {reason(exc)}; save numeric arrays with np.savez") from exc
    if "x" not in arrays:
        raise SiameseError(f"{path} has no array 'x' (found {names}); save the data as np.savez(path, x=..., y=...)")
    what = f"npz file {path}"
    x = arrays["x"]
    n = len(x) if x.ndim else 0
    labels = labels_to_strings(arrays["y"], n, what) if "y" in arrays and n else None
    keys = None
    if "keys" in arrays and n:
        k = arrays["keys"]
        if k.ndim != 1 or len(k) != n:
            raise SiameseError(f"{path}: 'keys' has shape {k.shape} but 'x' has {n} items; store one key per item")
        keys = k.astype(str).tolist()
    return ArrayReader(x, what, keys=keys, labels=labels)


def csv_reader(path: Path) -> ArrayReader:
    """Header row; numeric columns are features, optional `label` and `key` columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(i, row) for i, row in enumerate(csv.reader(f), start=1) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SiameseError(f"cannot read {path} as CSV: {reason(exc)}; use a UTF-8 CSV with a header row") from exc
    if len(rows) < 2:
        raise SiameseError(f"{path} has no data rows; expected a header row followed by one row per item")
    header = [h.strip() for h in rows[0][1]]
    lower = [h.lower() for h in header]
    if len(set(lower)) != len(lower):
        raise SiameseError(f"{path} has duplicate column names in its header {header}; make them unique")
    special = {name: lower.index(name) for name in ("key", "label") if name in lower}
    feats = [j for j in range(len(header)) if j not in special.values()]
    if not feats:
        raise SiameseError(f"{path} has no feature columns (header {header}); add numeric columns")
    lengths = np.fromiter((len(r) for _, r in rows[1:]), dtype=np.int64, count=len(rows) - 1)
    if np.any(lengths != len(header)):
        at = int(np.argmax(lengths != len(header))) + 1
        raise SiameseError(f"{path} line {rows[at][0]} has {len(rows[at][1])} cells but the header has "
                           f"{len(header)} columns; every row needs one cell per column")
    table = np.array([r for _, r in rows[1:]], dtype=str)
    try:
        x = table[:, feats].astype(np.float64)
    except ValueError:
        for r, row in enumerate(table[:, feats].tolist()):
            for j, cell in zip(feats, row):
                try:
                    float(cell)
                except ValueError:
                    raise SiameseError(f"{path} line {rows[r + 1][0]} (row {r}), column {header[j]!r}: "
                                       f"{cell!r} is not a number; fix the cell or drop the column") from None
        raise
    what = f"csv file {path}"
    labels = labels_to_strings(table[:, special["label"]].tolist(), len(x), what) if "label" in special else None
    keys = None
    if "key" in special:
        keys = np.char.strip(table[:, special["key"]]).tolist()
        if "" in keys:
            raise SiameseError(f"{path} line {rows[keys.index('') + 1][0]} has an empty key; give every row a key")
    return ArrayReader(x, what, keys=keys, labels=labels)


_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file (plain or .gz) as uint8: 2051 = images (n, rows, cols), 2049 = labels (n,)."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise SiameseError(f"cannot read {path}: {reason(exc)}; re-download or re-extract it") from exc
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if got != magic:
        raise SiameseError(f"{path} is not an IDX {'image' if ndim == 3 else 'label'} file: "
                           f"magic number {got}, expected {magic}; check the file")
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(np.int64) if len(raw) >= header else None
    expected = header if dims is None else header + int(np.prod(dims))
    if len(raw) != expected or dims is None:
        raise SiameseError(f"{path} is truncated or corrupt: expected {expected} bytes from its header, "
                           f"found {len(raw)}; re-download it")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(tuple(dims))


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
    """scikit-learn's embedded 8x8 digits: 1797 images with values 0..16."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return ArrayReader(d.images.reshape(-1, 1, 8, 8), "sklearn digits", labels=d.target.astype(str).tolist(),
                       fixed_norm=(0.0, 16.0))


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
