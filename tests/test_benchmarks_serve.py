"""benchmarks/serve.py on tiny sizes: the setup builds, the real server answers every request of every
row, the counts add up and the table renders.

Correctness only; never time.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.script_modules import script_module

SERVE = Path(__file__).resolve().parents[1] / "benchmarks" / "serve.py"


@pytest.fixture(scope="module")
def bench():
    with script_module(SERVE, "serve_benchmark") as module:
        yield module


@pytest.fixture(scope="module")
def tiny(bench):
    return replace(bench.QUICK, items=200, widths=(4, 8), clients=(1, 3), key_requests=12, upload_requests=6,
                   health_requests=9, warmup=2, search_block=5, upload_block=2, distinct_keys=20, distinct_images=4)


@pytest.fixture(scope="module")
def served(bench, tiny, tmp_path_factory):
    """The tiny setup built with the command line, loaded in-process and served."""
    work = tmp_path_factory.mktemp("serve-bench")
    digits, model, index = bench.build(work, tiny)
    keys, pngs = bench.sample_inputs(index, digits, tiny)
    server = bench.Server(index, model, tiny.threads)
    try:
        inproc = bench.InProcess(index, model, keys, pngs, tiny.threads)
        yield digits, keys, pngs, inproc, server.wait_ready()
    finally:
        server.stop()


def test_setup_writes_the_digits_as_pngs(bench, served, tiny):
    digits, keys, pngs, _, _ = served
    files = sorted(digits.rglob("*.png"))
    assert len(files) == tiny.items and {f.parent.name for f in files} <= set("0123456789")
    assert len(keys) == tiny.distinct_keys and len(set(keys)) == len(keys)
    assert len(pngs) == tiny.distinct_images and all(p.startswith(b"\x89PNG") for p in pngs)
    model = digits.parent / "model" / "model.safetensors"
    before = model.stat().st_mtime_ns
    assert bench.build(digits.parent, tiny) == (digits, digits.parent / "model", digits.parent / "index")
    assert model.stat().st_mtime_ns == before  # a --work folder is reused, not rebuilt


def test_rows_count_every_request_and_the_table_renders(bench, served, tiny):
    _, _, _, inproc, server = served
    rows = bench.measure(server, inproc, tiny)
    served_rows, in_process = rows[:6], rows[6:]
    assert [(r.name.split(" (")[0], r.clients) for r in served_rows] == [
        ("POST /search by key", 1), ("POST /search by key", 3),
        ("POST /search by upload", 1), ("POST /search by upload", 3), ("GET /health", 1), ("GET /health", 3)]
    totals = [tiny.key_requests] * 2 + [tiny.upload_requests] * 2 + [tiny.health_requests] * 2
    for row, total in zip(served_rows, totals):
        assert row.requests == row.clients * (total // row.clients) and row.errors == 0, row
        assert row.qps > 0 and row.p99_ms >= row.p50_ms > 0 and row.ratio > 0
    blocks = len(served_rows)  # one in-process block before every served row
    assert [r.requests for r in in_process] == [blocks * tiny.search_block] * 2 + [blocks * tiny.upload_block] * 2
    assert in_process[0].ratio == pytest.approx(1.0) and in_process[3].ratio == pytest.approx(1.0)

    text = bench.report(rows, "python benchmarks/serve.py --quick", {"cores": 2})
    lines = text.splitlines()
    assert lines[0] == "Command: `python benchmarks/serve.py --quick`"
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 1 + len(rows) and all(line.count("|") == 11 for line in table)


def test_http_client_loads_agree_with_the_raw_client(bench, served):
    _, keys, _, _, server = served
    request = bench.json_request(server.host, server.port, "/search", {"key": keys[0], "k": 9})
    answers = {}
    for kind in bench.CLIENTS:
        load = bench.run_load(server.host, server.port, [request], 2, 3, kind, server)
        assert load.requests == 6 and load.errors == 0 and len(load.latencies) == 6
        assert load.server_cpu >= 0 and load.client_cpu >= 0
        answers[kind] = [json.loads(body) for body in load.first_bodies]
    assert answers["raw"] == answers["http.client"]
    assert len(answers["raw"][0]["results"]) == 9 and keys[0] not in {r["key"] for r in answers["raw"][0]["results"]}


def test_errors_are_counted_not_timed(bench, served):
    _, _, _, _, server = served
    bad = bench.json_request(server.host, server.port, "/search", {"key": "no such key", "k": 9})
    load = bench.run_load(server.host, server.port, [bad], 2, 2)
    assert load.errors == 4 and len(load.latencies) == 0 and load.qps == 0
    assert json.loads(load.first_bodies[0])["error"]


def test_report_leaves_blank_what_was_not_measured(bench):
    rows = [bench.Row("GET /health", 8, 800, 0, 1234.5, 1.0, 2.5, 0.5, 0.1, 0.3),
            bench.Row("`VectorIndex.search`", "in-process", 300, 0, 4000.0, 0.2, 0.4, ratio=1.0)]
    lines = bench.report(rows, "python benchmarks/serve.py", {"cpu": "test", "cores": 2}).splitlines()
    assert "cpu test; cores 2" in lines
    assert "| GET /health | 8 | 800 | 0 | 1,234 | 1.00 | 2.50 | 0.50 | 0.10 | 0.30 |" in lines
    assert "| `VectorIndex.search` | in-process | 300 | 0 | 4,000 | 0.20 | 0.40 |  |  | 1.00 |" in lines
