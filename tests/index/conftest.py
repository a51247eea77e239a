"""Shared data for the index tests: small, seeded, and built once per session where expensive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from index_testlib import brute_force, top_k


@dataclass(frozen=True)
class Clustered:
    vectors: np.ndarray  # float32 (20000, 32)
    queries: np.ndarray  # float32 (200, 32)
    truth: np.ndarray  # int64 (200, 10): exact L2 top-10 ids


@pytest.fixture(scope="session")
def clustered() -> Clustered:
    """20k vectors in 50 Gaussian clusters (d=32) with exact top-10 neighbours of 200 queries."""
    rng = np.random.default_rng(1234)
    centers = rng.standard_normal((50, 32)) * 3.0
    vectors = (centers[rng.integers(0, 50, 20000)] + rng.standard_normal((20000, 32))).astype(np.float32)
    queries = (centers[rng.integers(0, 50, 200)] + rng.standard_normal((200, 32))).astype(np.float32)
    truth = top_k(brute_force(queries, vectors, "l2"), 10)
    return Clustered(vectors, queries, truth)


@pytest.fixture(scope="session")
def small() -> np.ndarray:
    """600 Gaussian vectors of dim 16 (float32): enough to train every kind quickly."""
    return np.random.default_rng(7).standard_normal((600, 16)).astype(np.float32)


@pytest.fixture(autouse=True)
def _single_faiss_thread():
    """Run faiss single-threaded inside index tests: on a small shared machine OpenMP barriers
    in many tiny parallel regions (PQ training) cost more than the work; restored afterwards so
    other test directories keep faiss's default."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)
