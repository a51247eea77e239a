"""Labels as strings everywhere: per-item label conversion and LABELS.csv (`key,label`) files.

None, NaN and "" all mean unlabelled, so every source (arrays, CSV, datasets, label files) agrees.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SiameseError, reason
from .limits import MAX_FIELD_CHARS


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


def check_known_keys(mapping: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """Every key of a key -> label mapping must be an item key (a typo would silently leave items unlabelled)."""
    unknown = set(mapping).difference(keys)
    if unknown:
        example = sorted(unknown)[0]
        raise SiameseError(f"{len(unknown)} label keys are not items of {where} (e.g. {example!r}; item keys look like "
                           f"{keys[0]!r}); fix the keys in the labels file")


def check_field(path: Path, line: int, cells: Sequence[str | None]) -> None:
    """Refuse a cell longer than MAX_FIELD_CHARS: keys and labels name items, so one long field is a mistake
    (or a hostile file), and its length would otherwise decide what a table or message costs."""
    widest = max((len(c) for c in cells if c is not None), default=0)
    if widest > MAX_FIELD_CHARS:
        raise SiameseError(f"{path} line {line} has a field of {widest:,} characters, more than the limit of "
                           f"{MAX_FIELD_CHARS}; shorten it (keys and labels name items)")


def read_labels_csv(path: str | Path) -> dict[str, str]:
    """LABELS.csv with header `key,label` -> {key: label}; rows with an empty label are left out (unlabelled).
    Read row by row: memory follows the labels kept, not the file's lines."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SiameseError(f"labels file not found: {path}; pass a CSV with header key,label")
    out: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            first = next(rows, [])
            check_field(path, 1, first)
            header = [h.strip().lower() for h in first]
            if "key" not in header or "label" not in header:
                raise SiameseError(f"labels file {path} has header {first[:4]}; expected `key,label`")
            ki, li = header.index("key"), header.index("label")
            for line, row in enumerate(rows, start=2):
                if not any(c.strip() for c in row):
                    continue
                check_field(path, line, row)
                if len(row) != len(header):
                    raise SiameseError(f"labels file {path} line {line} has {len(row)} cells, expected {len(header)}")
                key, label = row[ki].strip(), row[li].strip()
                if not key:
                    raise SiameseError(f"labels file {path} line {line} has an empty key; give every row a key")
                if key in out:
                    raise SiameseError(f"labels file {path} line {line} repeats key {key!r}; keep one row per key")
                if label:
                    out[key] = label
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SiameseError(f"cannot read labels file {path}: {reason(exc)}; use a UTF-8 CSV") from exc
    return out
