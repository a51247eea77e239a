"""Latent codes on disk: compression to float16 / int8 and a chunked, atomic writer.

File formats (plain numpy arrays, read back with ``allow_pickle=False``):

- ``Z.npy``: the codes alone, shape (n, d), float32 or float16.
- ``Z.npz``: ``z`` (n, d) codes in the chosen dtype; ``keys`` (n,) str; ``y`` (n,) str when
  the items carry labels ("" = unlabelled); for int8 also ``scale`` and ``offset`` (d,) float32.

int8 codes are quantised per dimension over the whole file: ``offset`` is the middle of the
dimension's range, ``scale`` = range / 254, ``q = round((z - offset) / scale)`` in [-127, 127],
and ``z ≈ scale * q + offset`` (error at most scale / 2). ``load_codes`` undoes it.

The writer spools float32 chunks to a temporary file beside the target, so memory stays bounded by
the chunk size, then writes the final file (quantised with the ranges of all items) through a temp
file and one rename: a crash leaves the old file or the new one, never a mix.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
from tqdm.auto import tqdm

from index.atomic import atomic_file

from ..errors import SiameseError
from ..models.model_input import CHUNK_ITEMS

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "int8")
SUFFIXES = (".npz", ".npy")
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_BLOCK_ROWS = 65536  # rows copied from the spool at a time when assembling the file


@dataclass(frozen=True)
class Quantization:
    """Per-dimension int8 parameters: z ≈ scale * q + offset; both float32 of shape (d,)."""

    scale: np.ndarray
    offset: np.ndarray

    @classmethod
    def from_range(cls, lo: np.ndarray, hi: np.ndarray) -> Quantization:
        """Parameters covering [lo, hi] per dimension; constant dimensions get scale 1 (q = 0)."""
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        scale = (hi - lo) / 254.0
        scale = np.where(scale > 0, scale, 1.0)
        return cls(scale.astype(np.float32), ((lo + hi) / 2).astype(np.float32))


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise SiameseError(f"unknown code dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return dtype


def quantize(z: np.ndarray, dtype: str, params: Quantization | None = None) -> tuple[np.ndarray, Quantization | None]:
    """float codes (n, d) -> (codes in `dtype`, int8 parameters or None).

    int8 uses `params` when given (e.g. the ranges of a whole file), else the ranges of z.
    """
    check_dtype(dtype)
    z = np.asarray(z, dtype=np.float32)
    if dtype == "float32":
        return np.ascontiguousarray(z), None
    if dtype == "float16":
        peak = float(np.abs(z).max(initial=0.0))
        if peak > _FLOAT16_MAX:
            raise SiameseError(f"codes reach {peak:.4g}, beyond float16's range ({_FLOAT16_MAX:.0f}); "
                               "use --dtype int8 or float32")
        return z.astype(np.float16), None
    if params is None:
        params = Quantization.from_range(z.min(axis=0), z.max(axis=0))
    q = np.rint((z - params.offset) / params.scale)
    return np.clip(q, -127, 127).astype(np.int8), params


def dequantize(codes: np.ndarray, params: Quantization | None = None) -> np.ndarray:
    """Stored codes -> float32 (n, d); int8 codes need their parameters."""
    codes = np.asarray(codes)
    if codes.dtype == np.int8:
        if params is None:
            raise SiameseError("int8 codes need their scale and offset to be read back; they are stored in .npz files")
        return (codes.astype(np.float32) * params.scale + params.offset).astype(np.float32)
    return np.ascontiguousarray(codes, dtype=np.float32)


@dataclass
class Codes:
    """Codes read back from a file: z float32 (n, d); keys and labels when the file has them."""

    z: np.ndarray
    keys: list[str] | None = None
    labels: list[str | None] | None = None
    dtype: str = "float32"  # how they were stored
    quantization: Quantization | None = None

    def __len__(self) -> int:
        return len(self.z)


def load_codes(path: str | os.PathLike) -> Codes:
    """Read a .npy or .npz written by `write_codes` / `siamese embed`, dequantising int8 codes."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise SiameseError(f"codes file {path} must end in .npz or .npy")
    if not path.is_file():
        raise SiameseError(f"codes file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise SiameseError(f"cannot read codes file {path}: {error}") from None
    if isinstance(data, np.ndarray):
        return _codes(path, data, None, None, None)
    with data:
        if "z" not in data.files:
            raise SiameseError(f"{path} holds no 'z' array (arrays: {', '.join(data.files)}); "
                               "write it with siamese embed")
        params = Quantization(data["scale"], data["offset"]) if "scale" in data.files else None
        keys = data["keys"].tolist() if "keys" in data.files else None
        labels = [v or None for v in data["y"].tolist()] if "y" in data.files else None
        return _codes(path, data["z"], keys, labels, params)


def _codes(path: Path, z: np.ndarray, keys, labels, params: Quantization | None) -> Codes:
    if z.ndim != 2 or z.dtype.name not in DTYPES:
        raise SiameseError(f"{path}: codes must be a 2-D float32/float16/int8 array, got {z.dtype} of shape {z.shape}")
    if z.dtype == np.int8 and (params is None or params.scale.shape != (z.shape[1],)
                               or params.offset.shape != (z.shape[1],)):
        raise SiameseError(f"{path}: int8 codes need 'scale' and 'offset' arrays of shape ({z.shape[1]},)")
    for name, values in (("keys", keys), ("y", labels)):
        if values is not None and len(values) != len(z):
            raise SiameseError(f"{path}: {len(values)} {name} for {len(z)} codes")
    return Codes(dequantize(z, params), keys, labels, z.dtype.name, params if z.dtype == np.int8 else None)


class CodeWriter:
    """Collects float32 chunks on disk and writes one codes file when finished.

    Usage: ``with CodeWriter(path, dtype) as w: w.add(z, keys, labels) ...`` then ``w.count``.
    Nothing appears at `path` unless the block completes.
    """

    def __init__(self, path: str | os.PathLike, dtype: str = "float32"):
        self.path = Path(path)
        self.dtype = check_dtype(dtype)
        if self.path.suffix not in SUFFIXES:
            raise SiameseError(f"codes file must end in .npz or .npy, got {self.path.name}")
        if self.path.suffix == ".npy" and dtype == "int8":
            raise SiameseError("int8 codes need their scale and offset stored beside them: write a .npz file")
        if self.path.is_dir():
            raise SiameseError(f"{self.path} is a directory; give a file name such as {self.path / 'codes.npz'}")
        self.count, self.dim = 0, None
        self.keys: list[str] = []
        self.labels: list[str | None] | None = None
        self._lo = self._hi = None
        self._spool: BinaryIO | None = None

    def __enter__(self) -> CodeWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._spool = tempfile.TemporaryFile(prefix=f".{self.path.name}.spool-", dir=self.path.parent)
        except OSError as error:
            raise SiameseError(f"cannot write {self.path}: {error.strerror or error}; choose a writable path") from None
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self._finish()
        finally:
            self._spool.close()

    def add(self, z: np.ndarray, keys: Sequence[str] | None = None, labels: Sequence[str | None] | None = None) -> None:
        """Append codes z (m, d); keys default to row numbers; labels one str/None per row."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or (self.dim is not None and z.shape[1] != self.dim):
            raise SiameseError(f"codes must have shape (m, {self.dim or 'd'}), got {z.shape}")
        if not np.isfinite(z).all():
            raise SiameseError("codes contain NaN/inf values; check the model and the items")
        keys = [str(self.count + i) for i in range(len(z))] if keys is None else [str(k) for k in keys]
        if len(keys) != len(z) or (labels is not None and len(labels) != len(z)):
            raise SiameseError(f"got {len(z)} codes but {len(keys)} keys / {len(labels or [])} labels")
        if self.count and (labels is None) != (self.labels is None):
            raise SiameseError("either every chunk carries labels or none does")
        self.dim = z.shape[1]
        lo, hi = z.min(axis=0, initial=np.inf), z.max(axis=0, initial=-np.inf)
        self._lo = lo if self._lo is None else np.minimum(self._lo, lo)
        self._hi = hi if self._hi is None else np.maximum(self._hi, hi)
        self._spool.write(z.tobytes())
        self.keys += keys
        if labels is not None:
            self.labels = (self.labels or []) + [None if v is None else str(v) for v in labels]
        self.count += len(z)

    def _finish(self) -> None:
        if not self.count:
            raise SiameseError(f"no items to write to {self.path}")
        params = Quantization.from_range(self._lo, self._hi) if self.dtype == "int8" else None
        if self.dtype == "float16":  # fail before writing anything
            quantize(np.stack([self._lo, self._hi]), "float16")
        try:
            with atomic_file(self.path, suffixes=SUFFIXES) as fh:
                if self.path.suffix == ".npy":
                    self._write_codes(fh, params)
                else:
                    self._write_npz(fh, params)
        except OSError as error:
            raise SiameseError(f"cannot write {self.path}: {error.strerror or error}; choose a writable path") from None
        logger.info("wrote %d x %d %s codes to %s", self.count, self.dim, self.dtype, self.path)

    def _write_npz(self, fh: BinaryIO, params: Quantization | None) -> None:
        arrays = {"keys": np.array(self.keys, dtype=str)}
        if self.labels is not None:
            arrays["y"] = np.array(["" if v is None else v for v in self.labels], dtype=str)
        if params is not None:
            arrays.update(scale=params.scale, offset=params.offset)
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("z.npy", "w", force_zip64=True) as member:
                self._write_codes(member, params)
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    def _write_codes(self, fh: BinaryIO, params: Quantization | None) -> None:
        """The (n, d) codes as a .npy stream, quantised block by block from the spool."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype)), "fortran_order": False,
                  "shape": (self.count, self.dim)}
        np.lib.format.write_array_header_1_0(fh, header)
        self._spool.seek(0)
        row_bytes = 4 * self.dim
        while block := self._spool.read(_BLOCK_ROWS * row_bytes):
            z = np.frombuffer(block, dtype=np.float32).reshape(-1, self.dim)
            fh.write(quantize(z, self.dtype, params)[0].tobytes())


def save_codes(path: str | os.PathLike, z: np.ndarray, keys: Sequence[str] | None = None,
               labels: Sequence[str | None] | None = None, *, dtype: str = "float32") -> Path:
    """Write codes already in memory (n, d) in the same format as `write_codes`."""
    with CodeWriter(path, dtype) as writer:
        writer.add(z, keys, labels)
    return writer.path


def write_codes(model, items, path: str | os.PathLike, *, dtype: str = "float32", chunk: int = CHUNK_ITEMS,
                batch_size: int = 1024, progress: bool = False, **data_options) -> CodeWriter:
    """Embed items (an ItemSet or any DATA source) chunk by chunk into a codes file.

    A source is read `chunk` items at a time, so memory stays bounded by the chunk size;
    data_options go to `siamese.load_items` (image_size, channels, limit, skip, ...).
    Returns the finished writer (count, dim, keys, labels, path, dtype).
    """
    from ..models.model_input import model_chunks
    from .embed import embed

    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise SiameseError(f"chunk must be a positive number of items, got {chunk!r}")
    with CodeWriter(path, dtype) as writer:
        bar = tqdm(desc="embed", unit="item", disable=None if progress else True, leave=False)
        for part in model_chunks(model, items, int(chunk), data_options):
            writer.add(embed(model, part, batch_size=batch_size), part.keys, part.labels)
            bar.update(len(part))
        bar.close()
    return writer


def bytes_per_item(dim: int, dtype: str) -> int:
    """Storage of one code (the int8 parameters are shared by the whole file)."""
    return dim * np.dtype(check_dtype(dtype)).itemsize
