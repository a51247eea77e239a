"""What every figure shares: input checks that name the argument, and one atomic PNG writer.

Figures are drawn with matplotlib's object API (`Figure` + `FigureCanvasAgg`), never pyplot or the
global backend, so they are safe on headless machines and inside notebooks that chose another backend.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from index.atomic import atomic_file

from ..errors import SiameseError

logger = logging.getLogger(__name__)

DPI = 110

# ---------------------------------------------------------------- saving


def _check_path(path: str | os.PathLike) -> Path:
    """Fail early (before any expensive projection) if `path` can never be written."""
    target = Path(path)
    if target.is_dir():
        raise SiameseError(f"path {target} is a directory; give a file name such as {target / 'plot.png'}")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SiameseError(f"cannot write {target}: {parent} is a file, not a folder; choose another path")
            break
    return target


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Render `fig` to a PNG at `path` via a temp file + rename, creating folders; frees the figure."""
    target = _check_path(path)
    if target.suffix.lower() != ".png":
        logger.warning("writing PNG data to %s (name does not end in .png)", target)
    try:
        FigureCanvasAgg(fig)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, "wb", suffixes=(".png",)) as fh:
            fig.savefig(fh, format="png", dpi=DPI)
    except OSError as error:
        raise SiameseError(f"cannot write {target}: {error.strerror or error}; choose a writable path") from None
    finally:
        fig.clear()
    logger.info("wrote %s", target)
    return target


# ---------------------------------------------------------------- input checks


def _array(values, name: str, *, dtype=float) -> np.ndarray:
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as error:
        raise SiameseError(f"{name} must be a numeric numpy array (convert tensors with "
                           f".detach().cpu().numpy()); could not convert it: {error}") from None


def _finite(a: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        raise SiameseError(f"{name} contains {int(bad.sum())} NaN/inf values out of {a.size}; "
                           "drop or fix those entries before plotting")


def _items(values, name: str, batch_dims: int) -> np.ndarray:
    """Check a batch of items: shape (*batch, C, H, W) with C in {1, 3} or (*batch, D)."""
    a = _array(values, name)
    batch = "q, k" if batch_dims == 2 else "n"
    expected = f"({batch}, C, H, W) images or ({batch}, D) vectors"
    if a.ndim - batch_dims not in (1, 3):
        raise SiameseError(f"{name} must have shape {expected}; got shape {a.shape}")
    if a.size == 0:
        raise SiameseError(f"{name} is empty (shape {a.shape}); pass at least one item")
    if a.ndim - batch_dims == 3 and a.shape[batch_dims] not in (1, 3):
        raise SiameseError(f"{name} has {a.shape[batch_dims]} channels (shape {a.shape}); "
                           "expected 1 (gray) or 3 (RGB) in (C, H, W) order")
    _finite(a, name)
    return a


def _bool_array(values, name: str, n: int, n_name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or len(a) != n:
        raise SiameseError(f"{name} must be a 1-D array with one entry per {n_name} ({n}); got shape {a.shape}")
    if a.dtype.kind not in "biu":
        raise SiameseError(f"{name} must hold booleans (or 0/1); got dtype {a.dtype}")
    return a.astype(bool)


def _scores(values, name: str) -> np.ndarray:
    a = _array(values, name)
    if a.ndim != 1:
        raise SiameseError(f"{name} must be a 1-D array (n,); got shape {a.shape}")
    if a.size == 0:
        raise SiameseError(f"{name} is empty; pass at least one score")
    _finite(a, name)
    return a


def _optional_number(value, name: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SiameseError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise SiameseError(f"{name} must be finite; got {number}")
    return number


def _labels(labels, n: int, name: str = "labels") -> list[str | None] | None:
    """Sequence of str/None (None or NaN = unlabelled) -> list of str/None, one per item."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)):
        raise SiameseError(f"{name} must be a sequence with one label per item, not a single string")
    out = []
    for label in labels:
        if label is None or (isinstance(label, float) and math.isnan(label)):
            out.append(None)
        else:
            out.append(str(label))
    if len(out) != n:
        raise SiameseError(f"got {n} items but {len(out)} {name}; pass one label (or None) per item")
    return out


def _sorted_labels(labels: Sequence[str]) -> list[str]:
    """Unique labels in numeric-aware order: "2" before "10", "class2" before "class10"."""
    unique = set(labels)
    try:
        return sorted(unique, key=lambda s: (float(s), s))
    except ValueError:
        pass

    def natural(s: str):
        parts = re.split(r"(\d+)", s)
        return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in parts if part]

    return sorted(unique, key=lambda s: (natural(s), s))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"
