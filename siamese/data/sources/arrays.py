"""Numeric-array sources: in-memory arrays, .npy (read by range), .npz (x, y, keys) and .csv (features, label, key).

Every one becomes an ArrayReader of shape (n, D) vectors or (n, C, H, W) images, scanned once in blocks for
NaN/inf and the min/max that an inferred Normalization needs. A .npy file is opened as a memory map only to
learn its shape and dtype; its rows are read with plain file reads, so the pages read are not mapped into the
process and a file larger than RAM costs one block of memory, not its size. Row keys ("0", "1", ...) are
made per chunk (RowKeys), not a million strings up front.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ...errors import SiameseError, reason
from ..labels import labels_to_strings
from ..limits import MAX_FIELD_CHARS, MAX_INFLATED_BYTES
from ..preprocessing import DEFAULT_RESIZE
from .reader import Reader

log = logging.getLogger(__name__)

_CHUNK_BYTES = 16 << 20  # block size of the NaN/min/max scan (a .npy block is read into memory)


class RowKeys(Sequence):
    """The default keys str(i) of rows start..stop-1, made on access (unique by construction)."""

    def __init__(self, stop: int, start: int = 0) -> None:
        self.start, self.stop = start, max(start, stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i):
        if isinstance(i, slice):
            lo, hi, step = i.indices(len(self))
            if step != 1:
                return [str(self.start + j) for j in range(lo, hi, step)]
            return RowKeys(self.start + hi, self.start + lo)
        j = i + len(self) if i < 0 else i
        if not 0 <= j < len(self):
            raise IndexError(f"row key {i} out of range for {len(self)} rows")
        return str(self.start + j)

    def take(self, positions: np.ndarray) -> list[str]:
        """Keys at positions (vectorised)."""
        return (np.asarray(positions, dtype=np.int64) + self.start).astype(str).tolist()


class ArrayReader(Reader):
    """A numeric array (possibly memory-mapped) of shape (n, D), (n, H, W) or (n, C, H, W)."""

    def __init__(self, arr: np.ndarray, description: str, *, keys: Sequence[str] | None = None,
                 labels: list[str | None] | None = None, fixed_norm: tuple[float, float] | None = None,
                 channels_last: bool = False, file: tuple[Path, int] | None = None) -> None:
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
        # (path, data offset) of a C-ordered .npy: rows are read from the file instead of the map
        self._file = file if file is not None and arr.flags.c_contiguous else None
        self.keys = keys if keys is not None else RowKeys(arr.shape[0])
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
            yield self._rows(start, min(n, start + step))

    def _rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 as an array of their own (a file read for .npy, a view otherwise)."""
        if self._file is None:
            return np.asarray(self.arr[start:stop])
        path, offset = self._file
        out = np.empty((stop - start, *self.arr.shape[1:]), dtype=self.arr.dtype)
        with open(path, "rb") as f:
            f.seek(offset + start * out[:1].nbytes)
            got = f.readinto(memoryview(out).cast("B"))
        if got != out.nbytes:
            raise SiameseError(f"{self.description} is shorter than its header says (rows {start}..{stop - 1} "
                               "missing); the file is truncated, save it again with np.save")
        return out

    def prepare(self, channels: int | None, image_size: tuple[int, int] | None, on_error: str,
                resize: str = DEFAULT_RESIZE) -> None:
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
            del block  # release it before the next block is read
        if bad:
            raise SiameseError(f"{self.description} contains {bad} NaN/inf values in {bad_rows} items "
                               f"(first: item {self.keys[first]!r}); remove or impute them before loading")
        self._range = (lo, hi)

    def value_range(self) -> tuple[float, float]:
        assert self._range is not None, "prepare() first"
        return self._range

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, np.ndarray]:
        block = np.asarray(self._rows(start, stop), dtype=np.float32)
        block = np.ascontiguousarray(block.transpose(0, 3, 1, 2) if self.channels_last else block)
        if not block.flags.writeable:  # a read-only memory map: copy out of it
            block = block.copy()
        return torch.from_numpy(block), np.arange(start, stop)

def _npy_header(f: BinaryIO, what: str, available: int) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, shape and Fortran order from the .npy header at f's position, before anything is allocated:
    refuses object arrays and a header that claims more bytes than the `available` ones after it."""
    try:
        version = np.lib.format.read_magic(f)
        parse = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if parse is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran, dtype = parse(f)
    except (OSError, ValueError, EOFError) as exc:
        raise SiameseError(f"cannot read {what}: {reason(exc)}; save a numeric array with np.save") from exc
    if dtype.hasobject:
        raise SiameseError(f"{what} holds Python objects ({dtype}); save a numeric array (objects are never unpickled)")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > available - f.tell():
        raise SiameseError(f"{what} claims shape {shape} of {dtype} ({claimed:,} bytes) but holds "
                           f"{max(0, available - f.tell()):,} after its header; the file is truncated or damaged, "
                           "save it again")
    return dtype, tuple(shape), fortran


def _mapped(path: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    """A read-only map of an array stored at offset (nothing is read until rows are asked for)."""
    if math.prod(shape) == 0 or not shape:
        return np.zeros(shape, dtype)  # nothing to map (ArrayReader refuses empty data)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def npy_reader(path: Path) -> ArrayReader:
    """A .npy whose header is checked against the file size, then mapped and read by byte range."""
    what = f"npy file {path}"
    with open(path, "rb") as f:
        dtype, shape, fortran = _npy_header(f, what, os.fstat(f.fileno()).st_size)
        offset = f.tell()
    arr = _mapped(path, offset, dtype, shape, fortran)
    return ArrayReader(arr, what, file=(path, offset) if isinstance(arr, np.memmap) else None)


def _read_exactly(f: BinaryIO, out: np.ndarray, what: str) -> np.ndarray:
    """Fill out from the stream f in pieces (a compressed stream has no length to trust)."""
    view, got = memoryview(out).cast("B"), 0
    while got < len(view):
        n = f.readinto(view[got:got + _CHUNK_BYTES])
        if not n:
            raise SiameseError(f"{what} ends early; the file is truncated or damaged, save it again")
        got += n
    return out


def _inflated_cost(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Bytes reading a member costs: items become float32, keys and labels Python strings (counted as stored)."""
    return math.prod(shape) * (max(4, dtype.itemsize) if name == "x" else dtype.itemsize)


def npz_reader(path: Path, limit: int | None = None) -> ArrayReader:
    """Arrays `x` (required), `y` (labels) and `keys` (optional). Members stored uncompressed (np.savez) are
    mapped like a .npy; compressed ones (np.savez_compressed) are read whole only up to MAX_INFLATED_BYTES
    (a zip bomb states its inflated size honestly), else only the first `limit` rows if a limit is given."""
    what = f"npz file {path}"
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise SiameseError(f"cannot read {path} as .npz: {reason(exc)}; save numeric arrays with np.savez") from exc
    with archive:
        members = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
        if "x" not in members:
            raise SiameseError(f"{path} has no array 'x' (found {sorted(members)}); save the data as "
                               "np.savez(path, x=..., y=...)")
        layout = {}
        for name in ("x", "y", "keys"):
            if name in members:
                with archive.open(members[name]) as f:
                    dtype, shape, fortran = _npy_header(f, f"{what} (member {name})", members[name].file_size)
                    layout[name] = (dtype, shape, fortran, f.tell())
        rows = None  # read whole; else only the first `rows` rows of every member
        for name, (dtype, shape, fortran, _) in layout.items():
            info = members[name]
            cost = _inflated_cost(name, dtype, shape)
            if info.compress_type == zipfile.ZIP_STORED or cost <= MAX_INFLATED_BYTES:
                continue
            prefix = None if limit is None or fortran or not shape else min(limit, shape[0])
            if prefix is None or _inflated_cost(name, dtype, (prefix, *shape[1:])) > MAX_INFLATED_BYTES:
                raise SiameseError(f"{what}: member {name} inflates to {cost:,} bytes from {info.compress_size:,}, "
                                   f"more than the {MAX_INFLATED_BYTES >> 20} MiB read whole from a compressed "
                                   ".npz; convert it to .npy (np.save), which is read by byte range")
            rows = prefix if rows is None else min(rows, prefix)
        arrays = {name: _npz_member(path, archive, members[name], *layout[name], rows, what)
                  for name in layout}
    for name in ("y", "keys"):
        if name in arrays:
            _check_text(arrays[name], f"{path}: '{name}'")
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


def _check_text(arr: np.ndarray, what: str) -> None:
    """Keys and labels longer than MAX_FIELD_CHARS are refused, as in CSV files."""
    if arr.dtype.kind in "US" and arr.dtype.itemsize // (4 if arr.dtype.kind == "U" else 1) > MAX_FIELD_CHARS:
        longest = int(np.char.str_len(arr).max()) if arr.size else 0
        if longest > MAX_FIELD_CHARS:
            raise SiameseError(f"{what} has an entry of {longest:,} characters, more than the limit of "
                               f"{MAX_FIELD_CHARS}; shorten the keys and labels")


def _npz_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype,
                shape: tuple[int, ...], fortran: bool, header: int, rows: int | None, what: str) -> np.ndarray:
    """One member: mapped when stored uncompressed (its bytes are in the file), else inflated (rows only)."""
    if rows is not None and shape:
        shape = (min(rows, shape[0]), *shape[1:])
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
        with open(path, "rb") as raw:  # the data follows the member's local header
            raw.seek(info.header_offset)
            local = raw.read(30)
            start = info.header_offset + 30 + sum(struct.unpack("<HH", local[26:30])) + header
            size = os.fstat(raw.fileno()).st_size
        if len(local) < 30 or start + math.prod(shape) * dtype.itemsize > size:
            raise SiameseError(f"{what}: member {info.filename} runs past the end of the file; the file is "
                               "truncated or damaged, save it again")
        arr = _mapped(path, start, dtype, shape, fortran)
        return arr if info.filename == "x.npy" else np.array(arr)
    try:
        with archive.open(info) as f:
            f.seek(header)
            out = _read_exactly(f, np.empty(shape, dtype, order="F" if fortran else "C"), what)
    except (OSError, zipfile.BadZipFile, zlib.error, RuntimeError) as exc:
        raise SiameseError(f"cannot read {path} as .npz: {reason(exc)}; save numeric arrays with np.savez") from exc
    return out


def csv_reader(path: Path) -> ArrayReader:
    """Header row; numeric columns are features, optional `label` and `key` columns. Cells are kept as Python
    strings, never in a fixed-width array sized by the longest one, and longer than MAX_FIELD_CHARS is refused."""
    rows: list[tuple[int, list[str]]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for i, row in enumerate(csv.reader(f), start=1):
                if not any(c.strip() for c in row):
                    continue
                widest = max(map(len, row))
                if widest > MAX_FIELD_CHARS:
                    raise SiameseError(f"{path} line {i} has a cell of {widest:,} characters, more than the limit "
                                       f"of {MAX_FIELD_CHARS}; shorten it (keys and labels name items)")
                rows.append((i, row))
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
    body = [r for _, r in rows[1:]]
    try:
        x = np.array([[r[j] for j in feats] for r in body], dtype=np.float64)
    except ValueError:
        for r, row in enumerate(body):
            for j in feats:
                try:
                    float(row[j])
                except ValueError:
                    raise SiameseError(f"{path} line {rows[r + 1][0]} (row {r}), column {header[j]!r}: "
                                       f"{row[j]!r} is not a number; fix the cell or drop the column") from None
        raise
    what = f"csv file {path}"
    labels = labels_to_strings([r[special["label"]] for r in body], len(x), what) if "label" in special else None
    keys = None
    if "key" in special:
        keys = [r[special["key"]].strip() for r in body]
        if "" in keys:
            raise SiameseError(f"{path} line {rows[keys.index('') + 1][0]} has an empty key; give every row a key")
    return ArrayReader(x, what, keys=keys, labels=labels)
