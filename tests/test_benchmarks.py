"""benchmarks/speed.py on tiny sizes: every row compares equal answers and the table renders.

Correctness only (same weights, embeddings, ids, predictions; recall computed); never time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.script_modules import script_module

SPEED = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    with script_module(SPEED, "speed_benchmark") as module:
        yield module


@pytest.fixture(scope="module")
def tiny(speed):
    return replace(speed.QUICK, train_items=200, train_epochs=1, train_arch="mlp", train_widths=(16,), embed_items=300, search_n=2_000, search_q=40,
                   knn_n=2_000, knn_q=300, auto_n=3_000, auto_q=50, build_n=2_000, sgemm_size=128, repeats=1)


def test_recall_at_counts_shared_ids(speed):
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 2, 9], [4, -1, -1]])
    assert speed.recall_at(found, truth) == pytest.approx(3 / 6)


def test_training_rows_reach_identical_weights(speed, tiny):
    rows, trained = speed.bench_training(tiny)
    assert [r.measure for r in rows] == ["train step, pretrain", "train step, fine-tune"]
    assert all(r.correct for r in rows), [r.note for r in rows]
    embed_rows = speed.bench_embed(tiny, trained["model"])
    assert embed_rows[0].correct, embed_rows[0].note


def test_search_rows_return_the_raw_faiss_ids(speed, tiny):
    rows = speed.bench_search(tiny)
    assert [r.measure for r in rows] == [f"search, {kind}" for kind in tiny.search_kinds]
    assert all(r.correct for r in rows), [r.note for r in rows]


def test_knn_predictions_match_sklearn(speed, tiny):
    (row,) = speed.bench_knn(tiny, gflops=10.0)
    assert row.correct, row.note
    assert "identical predictions: yes" in row.note


def test_auto_row_measures_recall_against_flat(speed, tiny):
    auto, flops = speed.bench_auto(tiny, gflops=10.0)
    assert "recall@10 1.000" in auto.ours  # 3000 vectors: auto resolves to exact flat search
    assert flops.ratio > 0


def test_build_child_indexes_every_row_of_the_npy(speed, tiny, tmp_path):
    npy, model_dir, model_bytes = speed.write_build_inputs(tiny, tmp_path)
    report = speed.build_child(str(npy), str(model_dir))
    assert report["count"] == tiny.build_n and model_bytes > 0
    assert report["peak"]["VmRSS"] >= report["before"]["VmRSS"] > 0


def test_report_is_a_markdown_table(speed):
    rows = [speed.Row("embed throughput", "10 items/s", "11 items/s", 0.91, ">= 0.90x", True),
            speed.Row("knn predict (speed-up)", "2 s", "1 s", 0.5, ">= 5x faster", False, "note")]
    text = speed.report(rows, {"cpu": "test", "cores": 2}, "python benchmarks/speed.py --quick")
    lines = text.splitlines()
    assert "Command: `python benchmarks/speed.py --quick`" in lines[0]
    assert "cpu test; cores 2" in text
    assert "| embed throughput | 10 items/s | 11 items/s | 0.91 | >= 0.90x | pass |  |" in lines
    assert "| knn predict (speed-up) | 2 s | 1 s | 0.50 | >= 5x faster | FAIL | note |" in lines


def test_quality_leave_one_out_and_seed_means():
    """benchmarks/quality.py's choice measure leaves each query out of its own vote, and the seed
    table averages over seeds."""
    with script_module(SPEED.parent / "quality.py", "quality_benchmark") as quality:
        z = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2], [0.15]], dtype=np.float32)
        labels = np.array(["a", "a", "a", "b", "b", "b", "b"])  # the last item sits among the a's
        queries = np.ones(len(z), dtype=bool)
        assert quality.leave_one_out_knn(z, labels, queries, "l2", k=3) == pytest.approx(6 / 7)
        only_last = np.zeros(len(z), dtype=bool)
        only_last[-1] = True
        assert quality.leave_one_out_knn(z, labels, only_last, "l2", k=1) == 0.0  # itself would say "b"
        rows = {f"default-ft-10pc-s{s}": {"knn_accuracy": a, "map_at_r": 0.5, "refs_only_knn": a - 0.02}
                for s, a in enumerate((0.98, 0.99, 0.97))}
        table = quality.seed_means(rows)
        assert "| default-ft-10pc (3) | 98.00% (97.00-99.00) | 96.00% (95.00-97.00) |" in table
