"""Helpers shared by the index tests (a uniquely named module, so it cannot clash with other
test directories' conftest modules)."""

from __future__ import annotations

import numpy as np
import pytest

from index import VectorIndexError

KINDS = ("flat", "hnsw", "ivf", "ivfpq")
METRICS = ("l2", "cosine", "ip")


def brute_force(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Reported distances (float64, (n_queries, n)) computed directly in numpy."""
    q = np.asarray(queries, dtype=np.float64)
    x = np.asarray(vectors, dtype=np.float64)
    if metric == "l2":
        sq = (q**2).sum(1)[:, None] + (x**2).sum(1)[None, :] - 2.0 * q @ x.T
        return np.sqrt(np.maximum(sq, 0.0))
    if metric == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        return 1.0 - qn @ xn.T
    return -(q @ x.T)


def top_k(distances: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def assert_index_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    """The error is a VectorIndexError with a one-line message mentioning every fragment."""
    assert isinstance(excinfo.value, VectorIndexError)
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))
