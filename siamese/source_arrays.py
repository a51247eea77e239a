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
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from siamese.errors import SiameseError
from siamese.labels import labels_to_strings
from siamese.source_reader import Reader, reason

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

def npy_reader(path: Path) -> ArrayReader:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SiameseError(f"cannot read {path} as .npy: {reason(exc)}; save a numeric array with np.save") from exc
    file = (path, int(arr.offset)) if isinstance(arr, np.memmap) else None
    return ArrayReader(arr, f"npy file {path}", file=file)


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

