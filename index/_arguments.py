"""Checks of `VectorIndex` arguments (items, k, radius, seed, fingerprint, info), raising
`VectorIndexError` with the messages the index's public methods promise."""

from __future__ import annotations

import logging
import numbers
from typing import Any, Sequence

import numpy as np

from ._checks import as_attrs, as_keys, as_labels, check_positive_int, to_json
from .errors import VectorIndexError

logger = logging.getLogger("index.vector_index")  # the warning reads as the index's own


def check_optional_int(value: Any, name: str) -> int | None:
    return None if value is None else check_positive_int(value, name)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise VectorIndexError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def check_fingerprint(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise VectorIndexError(
            f"model_fingerprint must be a str or None, got {type(value).__name__}; "
            f"pass e.g. a hex digest of the model weights"
        )
    return value


def check_info(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VectorIndexError(f"info must be a dict or None, got {type(value).__name__}")
    to_json(value, "info")
    return dict(value)


def check_items(
    keys: Sequence[str | int] | None,
    labels: Sequence[str | int | None] | None,
    attrs: Sequence[dict[str, Any] | None] | None,
    n: int,
) -> tuple[list[str] | None, list[str | None] | None, list[str | None] | None]:
    """Per-vector keys, labels and attrs for n vectors, each None when not given."""
    return (
        as_keys(keys, n) if keys is not None else None,
        as_labels(labels, n) if labels is not None else None,
        as_attrs(attrs, n) if attrs is not None else None,
    )


def check_k(k: Any, available: int, what: str = "the index") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise VectorIndexError(f"k must be an integer, got {k!r} ({type(k).__name__})")
    if k < 1:
        raise VectorIndexError(f"k={k} must be >= 1; use 1 <= k <= {available}")
    if k > available:
        raise VectorIndexError(f"k={k} is larger than {what} ({available} items); use k <= {available}")
    return int(k)


def check_radius(radius: Any) -> None:
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not np.isfinite(radius):
        raise VectorIndexError(f"radius must be a finite number, got {radius!r}")


def model_mismatch(recorded_fingerprint: str | None, recorded_dim: int, fingerprint: str | None,
                   dim: int | None) -> str | None:
    """Why queries from a model with `fingerprint` (and `dim`) do not fit an index, or None."""
    problems = []
    if fingerprint != recorded_fingerprint:
        recorded = "no fingerprint" if recorded_fingerprint is None else f"fingerprint {recorded_fingerprint!r}"
        problems.append(f"the index was built with {recorded} but the model has {fingerprint!r}")
    if dim is not None and dim != recorded_dim:
        problems.append(f"the index has dimension {recorded_dim} but the model embeds to {dim}")
    return "; ".join(problems) or None


def check_model_match(recorded_fingerprint: str | None, recorded_dim: int, fingerprint: str | None,
                      dim: int | None, force: bool) -> None:
    """`VectorIndex.check_model`: raise on a mismatch, or with `force` only log it."""
    message = model_mismatch(recorded_fingerprint, recorded_dim, fingerprint, dim)
    if message and force:
        logger.warning("model mismatch ignored (force=True): %s", message)
    elif message:
        raise VectorIndexError(f"model mismatch: {message}; rebuild the index with this model (siamese index "
                               "rebuild INDEX MODEL DATA) or accept it anyway (--force; force=True in Python)")
