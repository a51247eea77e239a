"""Boundary checks shared by the public functions of the package.

Every helper turns user input into one canonical form (float32 C-contiguous matrices, int64 id
arrays, lists of str keys) or raises `VectorIndexError` with a one-line message that names the
argument, says what was expected and what was given, and what to do. Nothing here uses `assert`,
so the checks survive `python -O`.
"""

from __future__ import annotations

import json
import numbers
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import VectorIndexError

MAX_LISTED = 5  # how many offending items an error message names


def preview(items: Sequence[Any] | np.ndarray, limit: int = MAX_LISTED) -> str:
    """`[a, b, c, ...] (12 in total)`: a short listing for error messages."""
    items = list(items[: limit + 1]) if not isinstance(items, np.ndarray) else items[: limit + 1].tolist()
    shown = ", ".join(repr(x) for x in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def describe(x: Any) -> str:
    """`float64 array of shape (3, 4)` or the type name: what the user actually passed."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{dtype} array of shape {tuple(shape)}"
    return type(x).__name__


def as_array_like(x: Any, name: str) -> Any:
    """Return `x` itself when it already behaves like an array (ndarray, np.memmap, any object with
    shape/dtype/slicing), so a file-backed matrix is never copied whole; else `np.asarray(x)`."""
    if hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__"):
        return x
    if x is None:
        raise VectorIndexError(f"{name} is None; pass an array of shape (n, d)")
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise VectorIndexError(
            f"{name} cannot be converted to a numeric array ({exc}); pass a rectangular array of shape (n, d)"
        ) from None


def _check_numeric(dtype: np.dtype, name: str, x: Any) -> None:
    dtype = np.dtype(dtype)
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise VectorIndexError(
            f"{name} must have a real numeric dtype (float or int), got {describe(x)}; "
            f"convert it with np.asarray(x, dtype=np.float32)"
        )


def check_matrix(x: Any, name: str, dim: int | None = None) -> tuple[Any, int, int]:
    """Validate shape and dtype of an (n, d) matrix without converting it.

    Returns (array_like, n, d). Values (NaN/inf) are checked later, chunk by chunk, by `to_float32`.
    """
    arr = as_array_like(x, name)
    _check_numeric(arr.dtype, name, arr)
    shape = tuple(arr.shape)
    if len(shape) != 2:
        raise VectorIndexError(f"{name} must be 2-D of shape (n, d), got {describe(arr)}; reshape it to (n, d)")
    n, d = shape
    if n == 0 or d == 0:
        raise VectorIndexError(
            f"{name} is empty ({describe(arr)}); "
            f"pass at least one vector with at least one dimension"
        )
    if dim is not None and d != dim:
        raise VectorIndexError(
            f"{name} has dimension {d} but the index has dimension {dim}; embed with the model the index was built with"
        )
    return arr, int(n), int(d)


def check_queries(x: Any, dim: int, name: str = "queries") -> np.ndarray:
    """Queries as float32 (n_queries, dim); a single vector of shape (dim,) counts as one query."""
    arr = as_array_like(x, name)
    _check_numeric(arr.dtype, name, arr)
    if arr.ndim == 1:
        if arr.shape[0] != dim:
            raise VectorIndexError(
                f"{name} is a single vector of dimension {arr.shape[0]} but the index has dimension {dim}; "
                f"pass shape ({dim},) or (n, {dim})"
            )
        arr = np.asarray(arr).reshape(1, dim)
    arr, _, _ = check_matrix(arr, name, dim)
    return to_float32(arr, name)


def to_float32(block: Any, name: str, row_offset: int = 0) -> np.ndarray:
    """One chunk as a C-contiguous float32 ndarray; NaN/inf (also float64 overflow) are refused."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below as non-finite
        out = np.ascontiguousarray(block, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        rows = preview((bad + row_offset).tolist())
        raise VectorIndexError(
            f"{name} contains NaN or infinite values (or values too large for float32) in rows {rows}; "
            f"clean or drop those rows"
        )
    return out


def iter_row_chunks(arr: Any, n: int, chunk_size: int) -> Iterator[tuple[int, Any]]:
    """(start, rows[start:start+chunk_size]) without touching the rest of `arr` (works on memmaps)."""
    for start in range(0, n, chunk_size):
        yield start, arr[start : min(n, start + chunk_size)]


def check_positive_int(value: Any, name: str, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise VectorIndexError(f"{name} must be an integer, got {value!r} ({type(value).__name__}){hint}")
    if value < 1:
        raise VectorIndexError(f"{name} must be >= 1, got {value}{hint}")
    return int(value)


def check_choice(value: Any, name: str, valid: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise VectorIndexError(f"unknown {name} {value!r}; use one of {', '.join(repr(v) for v in valid)}")
    return value


def as_ids(ids: Any, name: str = "ids", allow_empty: bool = False) -> np.ndarray:
    """Integer ids as a 1-D int64 array (a scalar becomes one id). Floats with a fractional part
    and bools are refused; so is an empty list unless `allow_empty` (lookups of nothing)."""
    if isinstance(ids, (str, bytes)):
        raise VectorIndexError(f"{name} must be integers, got the string {ids!r}; to address items by key use keys=")
    try:
        arr = np.asarray(ids)
    except (ValueError, TypeError):
        raise VectorIndexError(f"{name} must be a 1-D sequence of integers, got {describe(ids)}") from None
    if arr.size == 0:
        if allow_empty and arr.ndim == 1:
            return np.empty(0, dtype=np.int64)
        raise VectorIndexError(f"{name} is empty; pass at least one id")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if arr.size and np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise VectorIndexError(f"{name} must be integers, got {describe(arr)}; pass int64 ids as returned by add()")
    arr = np.atleast_1d(arr)
    if arr.ndim != 1:
        raise VectorIndexError(f"{name} must be 1-D, got {describe(arr)}; flatten it with np.ravel")
    if arr.size == 0:
        raise VectorIndexError(f"{name} is empty; pass at least one id")
    return arr.astype(np.int64, copy=False)


def _key(k: Any, name: str, i: int) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, numbers.Integral) and not isinstance(k, (bool, np.bool_)):
        return str(int(k))
    raise VectorIndexError(f"{name}[{i}] is {k!r} ({type(k).__name__}); keys must be str or int")


def _as_list(values: Any, name: str, what: str) -> list:
    if isinstance(values, (str, bytes)) or isinstance(values, dict):
        raise VectorIndexError(
            f"{name} must be a sequence of {what}, got a single {type(values).__name__}; "
            f"wrap it in a list"
        )
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise VectorIndexError(f"{name} must be 1-D, got {describe(values)}")
        return values.tolist()
    try:
        return list(values)
    except TypeError:
        raise VectorIndexError(f"{name} must be a sequence of {what}, got {type(values).__name__}") from None


def _per_vector(values: Any, n: int, name: str, what: str, one: str) -> list[Any]:
    """`values` as a list with exactly one entry (`one`) per vector."""
    out = _as_list(values, name, what)
    if len(out) != n:
        raise VectorIndexError(f"{name} has {len(out)} entries but there are {n} vectors; pass {one} per vector")
    return out


def as_keys(keys: Any, n: int | None = None, name: str = "keys", allow_empty: bool = False) -> list[str]:
    """Keys as a list of str (ints converted with str); length must be n when given."""
    out = _as_list(keys, name, "str keys") if n is None else _per_vector(keys, n, name, "str keys", "one key")
    if n is None and not out and not allow_empty:
        raise VectorIndexError(f"{name} is empty; pass at least one key")
    return [_key(k, name, i) for i, k in enumerate(out)]


def as_labels(labels: Any, n: int, name: str = "labels") -> list[str | None]:
    """Labels as a list of str or None (unlabeled); ints are stored as their str()."""
    out = _per_vector(labels, n, name, "labels (str, int or None)", "one label (or None)")
    result: list[str | None] = []
    for i, v in enumerate(out):
        if v is None or isinstance(v, str):
            result.append(v)
        elif isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
            result.append(str(int(v)))
        else:
            raise VectorIndexError(
                f"{name}[{i}] is {v!r} ({type(v).__name__}); labels must be str, int or None (None = unlabeled)"
            )
    return result


def as_attrs(attrs: Any, n: int, name: str = "attrs") -> list[str | None]:
    """Attributes as JSON text (or None), one JSON object per vector."""
    out = _per_vector(attrs, n, name, "dicts", "one dict (or None)")
    result: list[str | None] = []
    for i, v in enumerate(out):
        if v is None:
            result.append(None)
            continue
        if not isinstance(v, dict):
            raise VectorIndexError(f"{name}[{i}] is a {type(v).__name__}; each entry must be a dict or None")
        result.append(to_json(v, f"{name}[{i}]"))
    return result


def to_json(value: Any, name: str) -> str:
    """Strict JSON text (no NaN); explains which argument could not be serialised."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise VectorIndexError(
            f"{name} is not JSON-serialisable ({exc}); use only str, int, float, bool, None, lists and dicts"
        ) from None


def duplicates(values: Sequence[str]) -> list[str]:
    """Values that occur more than once, in first-seen order."""
    seen: set[str] = set()
    dup: dict[str, None] = {}
    for v in values:
        if v in seen:
            dup[v] = None
        else:
            seen.add(v)
    return list(dup)
