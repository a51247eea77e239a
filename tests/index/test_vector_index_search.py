"""Search correctness: exact against numpy for flat, recall for approximate kinds, range search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index import SearchResult, VectorIndex
from index._exact import BlockPlan, flat_search
from index.kinds import resolve_params
from index_testlib import KINDS, METRICS, assert_index_error, brute_force, recall_at, top_k


@pytest.mark.parametrize("metric", METRICS)
def test_flat_is_exact(metric: str, small: np.ndarray) -> None:
    queries = np.random.default_rng(1).standard_normal((20, 16)).astype(np.float32)
    index = VectorIndex.build(small, metric=metric, kind="flat")
    result = index.search(queries, 7)
    expected = brute_force(queries, small, metric)
    expected_ids = top_k(expected, 7)
    np.testing.assert_array_equal(result.ids, expected_ids)
    np.testing.assert_allclose(result.distances, np.take_along_axis(expected, expected_ids, 1), rtol=1e-4, atol=1e-4)
    assert result.ids.dtype == np.int64 and result.distances.dtype == np.float32
    assert result.ids.shape == result.keys.shape == result.labels.shape == (20, 7)
    assert np.all(np.diff(result.distances, axis=1) >= 0)
    np.testing.assert_array_equal(result.keys, result.ids.astype(str).astype(object))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 6),
    metric=st.sampled_from(METRICS),
    seed=st.integers(0, 2**32 - 1),
)
def test_flat_matches_brute_force_property(n: int, d: int, metric: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    query = rng.standard_normal(d).astype(np.float32)
    index = VectorIndex.build(vectors, metric=metric)
    k = int(rng.integers(1, n + 1))
    result = index.search(query, k)
    expected = brute_force(query[None], vectors, metric)[0]
    # compare distances (ids may legitimately swap on near-ties)
    np.testing.assert_allclose(result.distances[0], np.sort(expected)[:k], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(expected[result.ids[0]], result.distances[0], rtol=1e-3, atol=1e-3)


# Blockings that put block edges everywhere: one query and one row per block, blocks that do not
# divide the sizes, workers over query ranges (m >= threads * rows) and over database ranges, with
# and without a one-thread BLAS per worker; None = the plan chosen for this machine.
FLAT_PLANS = [BlockPlan(1, 1, 1, False), BlockPlan(4, 5, 1, True), BlockPlan(3, 7, 2, True),
              BlockPlan(16, 6, 3, True), BlockPlan(5, 4, 2, False), None]


def _argsort_reference(queries: np.ndarray, vectors: np.ndarray, k: int, metric_type: int):
    """(values, ids) of a stable argsort over float64 scores: equal scores keep row order."""
    q, x = queries.astype(np.float64), vectors.astype(np.float64)
    l2 = metric_type == faiss.METRIC_L2
    rank = ((q[:, None, :] - x[None]) ** 2).sum(-1) if l2 else -(q @ x.T)
    ids = np.argsort(rank, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(rank, ids, 1)
    return (values if l2 else -values), ids


@pytest.mark.parametrize("plan", FLAT_PLANS, ids=str)
@pytest.mark.parametrize("metric_type", [faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT], ids=["l2", "ip"])
@pytest.mark.parametrize("k", [1, 6, 41, 60])
def test_flat_search_is_argsort_with_ties(plan: BlockPlan | None, metric_type: int, k: int) -> None:
    """Small integer vectors score exactly in float32, and 41 rows drawn from 9 distinct vectors
    tie everywhere: ids must be exactly those of a stable argsort (k = 60 is clipped to 41)."""
    rng = np.random.default_rng(k)
    vectors = rng.integers(-3, 4, size=(9, 5)).astype(np.float32)[rng.integers(0, 9, 41)]
    queries = rng.integers(-3, 4, size=(23, 5)).astype(np.float32)
    values, ids = flat_search(vectors, queries, k, metric_type, plan)
    expected_values, expected_ids = _argsort_reference(queries, vectors, min(k, 41), metric_type)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(values, expected_values)
    assert values.dtype == np.float32 and ids.dtype == np.int64


@pytest.mark.parametrize("plan", [BlockPlan(4, 8, 1, True), BlockPlan(4, 8, 2, True), BlockPlan(8, 8, 2, True)],
                         ids=str)
def test_flat_search_rows_sorted_far_to_near(plan: BlockPlan) -> None:
    """Each block beats all the thresholds left by the blocks before it (the worst order for
    running thresholds): still the argsort answer, ties included (every row appears twice)."""
    vectors = np.repeat(np.arange(150, 0, -1, dtype=np.float32), 2)[:, None].repeat(3, axis=1)
    near_zero = np.random.default_rng(3).integers(-2, 3, size=(10, 3)).astype(np.float32)
    # l2: queries near 0, so later (smaller) rows are nearer; ip: negative queries, so they score higher
    for metric_type, queries in ((faiss.METRIC_L2, near_zero), (faiss.METRIC_INNER_PRODUCT, near_zero - 5)):
        values, ids = flat_search(vectors, queries, 7, metric_type, plan)
        expected_values, expected_ids = _argsort_reference(queries, vectors, 7, metric_type)
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(values, expected_values)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq", "auto"])
def test_recall_at_10(kind: str, clustered) -> None:
    index = VectorIndex.build(clustered.vectors, kind=kind)
    result = index.search(clustered.queries, 10)
    assert recall_at(result.ids, clustered.truth) >= 0.95
    assert index.kind != "auto"


def test_cosine_ivf_recall(clustered) -> None:
    index = VectorIndex.build(clustered.vectors, kind="ivf", metric="cosine")
    truth = top_k(brute_force(clustered.queries, clustered.vectors, "cosine"), 10)
    assert recall_at(index.search(clustered.queries, 10).ids, truth) >= 0.95


def test_single_vector_query_is_one_query(small: np.ndarray) -> None:
    index = VectorIndex.build(small)
    one = index.search(small[3], 4)
    many = index.search(small[3:4], 4)
    assert one.ids.shape == (1, 4)
    np.testing.assert_array_equal(one.ids, many.ids)
    assert one.ids[0, 0] == 3 and one.distances[0, 0] == pytest.approx(0.0, abs=1e-3)


def test_results_carry_keys_and_labels(small: np.ndarray) -> None:
    keys = [f"item-{i}" for i in range(len(small))]
    labels = [None if i % 3 == 0 else f"c{i % 2}" for i in range(len(small))]
    index = VectorIndex.build(small, keys=keys, labels=labels)
    result = index.search(small[:10], 3)
    for row in range(10):
        for col in range(3):
            item = int(result.ids[row, col])
            assert result.keys[row, col] == keys[item]
            assert result.labels[row, col] == labels[item]
    assert result.keys.dtype == object and result.labels.dtype == object


def test_k_bounds(small: np.ndarray) -> None:
    index = VectorIndex.build(small[:12])
    assert index.search(small[0], 12).ids.shape == (1, 12)
    with pytest.raises(Exception) as excinfo:
        index.search(small[0], 20)
    assert_index_error(excinfo, "k=20 is larger than the index (12 items); use k <= 12")
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(Exception) as excinfo:
            index.search(small[0], bad)
        assert_index_error(excinfo, "k")


def test_missing_hits_are_padded_not_mapped(small: np.ndarray) -> None:
    """An IVF probing one list can return fewer than k hits: -1 must never become a real key."""
    index = VectorIndex.build(small, kind="ivf", nlist=15)
    index.faiss_index.nprobe = 1
    result = index.search(small[:50], len(small))
    missing = result.ids == -1
    assert missing.any()
    assert np.all(result.keys[missing] == None)  # noqa: E711
    assert np.all(result.labels[missing] == None)  # noqa: E711
    assert np.all(np.isinf(result.distances[missing]))
    assert np.all(result.keys[~missing] != None)  # noqa: E711


@pytest.mark.parametrize("metric", METRICS)
def test_range_search_flat_is_exact(metric: str, small: np.ndarray) -> None:
    index = VectorIndex.build(small, metric=metric, labels=[str(i % 4) for i in range(len(small))])
    queries = small[:5] + 0.01
    distances = brute_force(queries, small, metric)
    radius = float(np.quantile(distances, 0.05))
    results = index.range_search(queries, radius)
    assert len(results) == 5
    for row, res in enumerate(results):
        assert isinstance(res, SearchResult)
        expected = set(np.flatnonzero(distances[row] < radius).tolist())
        borderline = set(np.flatnonzero(np.abs(distances[row] - radius) < 1e-4).tolist())
        assert set(res.ids.tolist()) ^ expected <= borderline
        assert np.all(np.diff(res.distances) >= 0) and np.all(res.distances < radius)
        np.testing.assert_array_equal(res.keys, res.ids.astype(str).astype(object))
        np.testing.assert_array_equal(res.labels, (res.ids % 4).astype(str).astype(object))


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_range_search_approximate_kinds(kind: str, small: np.ndarray) -> None:
    index = VectorIndex.build(small, kind=kind)
    distances = brute_force(small[:5], small, "l2")
    radius = float(np.quantile(distances, 0.02))
    for row, res in enumerate(index.range_search(small[:5], radius)):
        assert np.all(res.distances < radius)
        assert row in res.ids.tolist()  # the query itself is at distance ~0
        found = set(res.ids.tolist())
        expected = set(np.flatnonzero(distances[row] < radius * 0.95).tolist())
        assert len(found & expected) >= 0.8 * len(expected)


def test_range_search_bad_radius(small: np.ndarray) -> None:
    index = VectorIndex.build(small)
    for bad in (float("nan"), float("inf"), "1", -1.0, 0.0):
        with pytest.raises(Exception) as excinfo:
            index.range_search(small[0], bad)
        assert_index_error(excinfo, "radius")


@pytest.mark.parametrize(
    ("n", "budget", "expected"),
    [
        (10_000, None, "flat"),
        (100_000, None, "hnsw"),
        (999_999, None, "hnsw"),
        (1_000_000, None, "ivf"),  # HNSW32 recall@10 fell to 0.93 on 1M clustered vectors; IVF kept 1.0
        (4_000_000, None, "ivf"),
        (20_000_000, None, "ivf"),
        (1_000_000, 200 * 1_000_000, "ivf"),
        (1_000_000, 60 * 1_000_000, "ivfpq"),
        (10_000, 1_000_000, "ivfpq"),
    ],
)
def test_auto_resolution(n: int, budget: int | None, expected: str) -> None:
    params = resolve_params("auto", 32, n, budget)
    assert params.kind == expected
    if expected == "ivfpq":
        assert 32 % params.pq_m == 0


def test_auto_budget_too_small() -> None:
    with pytest.raises(Exception) as excinfo:
        resolve_params("auto", 32, 1_000_000, 1000)
    assert_index_error(excinfo, "memory_budget_bytes=1000")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_finds_itself(kind: str, small: np.ndarray) -> None:
    index = VectorIndex.build(small, kind=kind)
    hits = index.search(small[:50], 5).ids
    assert np.mean([i in row for i, row in enumerate(hits)]) >= 0.98


def test_set_search_params_round_trip(small: np.ndarray, tmp_path) -> None:
    ivf = VectorIndex.build(small, kind="ivf")
    ivf.set_search_params(nprobe=1)
    assert ivf.params["nprobe"] == 1 and ivf.faiss_index.nprobe == 1
    ivf.set_search_params(nprobe=10_000)
    assert ivf.params["nprobe"] == ivf.params["nlist"]  # clipped: probing every list is exact
    np.testing.assert_array_equal(ivf.search(small[:20], 5).ids, top_k(brute_force(small[:20], small, "l2"), 5))
    hnsw = VectorIndex.build(small, kind="hnsw")
    hnsw.set_search_params(ef_search=300)
    hnsw.save(tmp_path / "h")
    for untrusted in (False, True):
        assert VectorIndex.load(tmp_path / "h", untrusted=untrusted).params["ef_search"] == 300
    with pytest.raises(Exception) as excinfo:
        hnsw.set_search_params(nprobe=3)
    assert_index_error(excinfo, "nprobe", "'hnsw'")
    with pytest.raises(Exception) as excinfo:
        ivf.set_search_params(ef_search=0)
    assert_index_error(excinfo, "ef_search")
