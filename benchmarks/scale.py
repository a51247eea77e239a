"""Scale benchmark: data-parallel training step time, and an index built in shards and merged.

    python benchmarks/scale.py                   # 10M x 32, 4 shards, IVF-Flat (a few GB of disk)
    python benchmarks/scale.py --n 1000000 --skip-ddp

1. DDP: pretrain a conv autoencoder on 2000 MNIST digits for 2 epochs in one process (all
   cores) and with `--nproc 2` (torchrun, one core each); time per optimizer step in epoch 2.
2. Index: N synthetic clustered vectors (float32, memory-mapped .npy) keyed by file-like paths, a
   tenth of them labelled, a template trained on a sample, shards built one process each (as
   separate machines would), merged with faiss's on-disk inverted lists, then opened and searched
   twice: with the `index` package of --baseline-rev (metadata copied into RAM) and with today's.
   Every phase runs in its own process so its peak RSS (ru_maxrss, which counts touched pages of
   memory-mapped files too) and its peak private memory (RssAnon, sampled) are its own. Recall@10
   is against exact search over all N.
3. A paper estimate for 1B items, scaled from the measured bytes per item.
Big files live under --work and are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CENTERS = 4096  # clusters in the synthetic data (embeddings are clustered, not uniform)
OPENED = {"in_ram": "before: metadata in RAM", "on_disk": "now: metadata on disk"}  # search phase modes


# ---------------------------------------------------------------- phases (each in its own process)


class AnonPeak:
    """Peak RssAnon (private, non-file memory) of this process, sampled every 20 ms."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kb("RssAnon"))
            time.sleep(0.02)

    def stop(self) -> float:
        self._stop.set()
        self.peak = max(self.peak, _status_kb("RssAnon"))
        return self.peak / 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next((int(line.split()[1]) for line in fh if line.startswith(field + ":")), 0)


def phase_generate(work: Path, n: int, d: int, queries: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CENTERS, d)).astype(np.float32) * 2.0
    x = np.lib.format.open_memmap(work / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, d))
    block = 1 << 20
    for start in range(0, n, block):
        m = min(block, n - start)
        part = np.random.default_rng([seed, start])
        x[start:start + m] = centers[part.integers(0, CENTERS, m)] + part.standard_normal((m, d), dtype=np.float32)
    x.flush()
    q = centers[rng.integers(0, CENTERS, queries)] + rng.standard_normal((queries, d), dtype=np.float32)
    np.save(work / "queries.npy", q.astype(np.float32))
    return {"bytes": (work / "vectors.npy").stat().st_size}


def phase_truth(work: Path, k: int) -> dict:
    """Exact top-k of the queries, streaming over the vectors in blocks (faiss ResultHeap)."""
    import faiss

    x = np.load(work / "vectors.npy", mmap_mode="r", allow_pickle=False)
    q = np.load(work / "queries.npy", allow_pickle=False)
    heap = faiss.ResultHeap(len(q), k)
    block = 1 << 20
    for start in range(0, len(x), block):
        part = np.ascontiguousarray(x[start:start + block])
        flat = faiss.IndexFlatL2(part.shape[1])
        flat.add(part)
        distances, ids = flat.search(q, k)
        heap.add_result(distances, np.where(ids >= 0, ids + start, -1))
    heap.finalize()
    np.save(work / "truth.npy", heap.I)
    return {}


def phase_train(work: Path, kind: str, nlist: int, pq_m: int | None, seed: int) -> dict:
    from index.kinds import IndexParams, train_sample_size
    from index.shards import train_template

    x = np.load(work / "vectors.npy", mmap_mode="r", allow_pickle=False)
    size = min(len(x), train_sample_size(IndexParams(kind, nlist=nlist, pq_m=pq_m)))
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=size, replace=False))
    template = train_template(x[rows], kind=kind, expected_count=len(x), nlist=nlist, pq_m=pq_m, seed=seed)
    template.save(work / "template")
    return {"sample": int(size)}


def phase_shard(work: Path, i: int, n_shards: int) -> dict:
    from index.shards import build_shard, shard_bounds

    x = np.load(work / "vectors.npy", mmap_mode="r", allow_pickle=False)
    start, stop = shard_bounds(len(x), (i, n_shards))
    keys = [f"photos/{j // 1000:05d}/{j:09d}.jpg" for j in range(start, stop)]  # keys as real collections have
    labels = [f"class-{j % 100}" if j % 10 == 0 else None for j in range(start, stop)]  # a tenth labelled
    shard = build_shard(work / "template", x[start:stop], first_id=start, shard=(i, n_shards), keys=keys,
                        labels=labels)
    shard.save(work / f"shard-{i}")
    return {"items": stop - start}


def phase_merge(work: Path, n_shards: int) -> dict:
    """Merge, then load once as `siamese index merge` does: that first load checks the files whole
    (checksums, rows, ids across files) and records the check, so later loads trust it."""
    from index import VectorIndex
    from index.shards import merge_shards

    merge_shards([work / f"shard-{i}" for i in range(n_shards)], work / "merged", direct_map=False)
    started = time.perf_counter()
    VectorIndex.load(work / "merged")
    return {"check_seconds": time.perf_counter() - started}


def phase_search(work: Path, k: int, nprobes: list[int], mode: str) -> dict:
    """Open the merged index and search it. mode "in_ram" runs the `index` package of --baseline-rev
    (extracted into work/baseline and put first on the path by `run_phase`): the load as it was
    before metadata moved to disk, every file checked whole and keys and labels copied into RAM;
    "on_disk" is today's."""
    import faiss

    import index as index_package
    from index import VectorIndex

    expected = work / "baseline" if mode == "in_ram" else ROOT
    if Path(index_package.__file__).resolve().parent.parent != expected.resolve():
        raise SystemExit(f"mode {mode} imported index from {index_package.__file__}, not from {expected}")
    before, started = _status_kb("RssAnon"), time.perf_counter()
    index = VectorIndex.load(work / "merged")
    load_seconds = time.perf_counter() - started
    loaded_mb = (_status_kb("RssAnon") - before) / 1024  # private memory the open index keeps
    q, truth = np.load(work / "queries.npy", allow_pickle=False), np.load(work / "truth.npy", allow_pickle=False)
    hits = index.search(q[:1], k)  # one search, keys and labels looked up as for any caller
    assert hits.keys[0, 0] is not None
    searched_mb = (_status_kb("RssAnon") - before) / 1024
    rows = []
    for nprobe in nprobes:
        index.set_search_params(nprobe=nprobe)
        for threads in (1, os.cpu_count() or 1):
            faiss.omp_set_num_threads(threads)
            index.search(q[:10], k)  # warm the mapped lists a little
            best = 0.0
            for _ in range(3):  # best of 3: this machine is shared
                started = time.perf_counter()
                found = index.search(q, k)
                best = max(best, len(q) / (time.perf_counter() - started))
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found.ids, truth)]))
            rows.append({"nprobe": nprobe, "threads": threads, "qps": best, "recall": recall})
    return {"load_seconds": load_seconds, "loaded_mb": loaded_mb, "searched_mb": searched_mb,
            "final_mb": (_status_kb("RssAnon") - before) / 1024, "rows": rows}


PHASES = {"generate": phase_generate, "truth": phase_truth, "train": phase_train, "shard": phase_shard,
          "merge": phase_merge, "search": phase_search}


def run_phase(name: str, **kwargs) -> dict:
    """Run one phase in a fresh process; its result plus wall time and peak memory. The phase imports
    `index` from work/baseline (see `extract_baseline`) when asked for mode "in_ram"."""
    command = [sys.executable, __file__, "--phase", name, "--phase-args", json.dumps(kwargs, default=str)]
    path = Path(kwargs["work"]) / "baseline" if kwargs.get("mode") == "in_ram" else ROOT
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(path)})
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"phase {name} failed with status {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = seconds
    return result


def extract_baseline(work: Path, rev: str) -> str:
    """The `index` package as of git revision `rev`, extracted into work/baseline; its one-line log."""
    (work / "baseline").mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "index"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(work / "baseline")], input=archive.stdout, check=True)
    return subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", rev], check=True,
                          capture_output=True, text=True).stdout.strip()


def child_main(name: str, kwargs: dict) -> None:
    import resource

    peak = AnonPeak()
    args = {k: Path(v) if k == "work" else v for k, v in kwargs.items()}
    result = PHASES[name](**args)
    result["peak_anon_mb"] = peak.stop()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# ---------------------------------------------------------------- DDP step time


def ddp_step_times(work: Path, limit: int, epochs: int) -> list[dict]:
    rows = []
    setups = (("1 process, 1 thread", ["--threads", "1"]), ("1 process, 2 threads", ["--threads", "2"]),
              ("2 processes (--nproc 2), 1 thread each", ["--nproc", "2"]))
    for number, (label, extra) in enumerate(setups):
        out = work / f"ddp-{number}"
        command = [sys.executable, "-m", "siamese", "pretrain", "mnist-idx:tests/data/mnist", "--limit",
                   str(limit), "--arch", "conv", "--epochs", str(epochs), "--out", str(out), "-q", *extra]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        history = list(csv.DictReader((out / "history.csv").open()))
        last = history[-1]
        from siamese.training.loop import steps_for

        steps = steps_for(int(round(limit * 0.9)), 128)
        rows.append({"setup": label, "seconds_per_epoch": float(last["seconds"]),
                     "ms_per_step": 1000 * float(last["seconds"]) / steps, "items_per_second":
                     float(last["items_per_second"]), "train_loss": float(last["train_loss"])})
    return rows


# ---------------------------------------------------------------- report


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def billion_estimate(n: int, d: int, nlist: int, merged_bytes: dict, searches: dict, build_rate: float) -> list[str]:
    """Disk / RAM / machines for 1e9 items, scaled from this run's bytes per item, for the index as
    opened before (metadata in RAM) and now (metadata read per hit from meta.sqlite)."""
    target = 1_000_000_000
    lists_per_item = merged_bytes["lists.ivfdata"] / n
    meta_per_item = merged_bytes["meta.sqlite"] / n
    private = {mode: r["final_mb"] * 2**20 / n for mode, r in searches.items()}  # after load and all searches
    search_rows = searches["on_disk"]["rows"]
    nlist_1b = 65536
    lines = ["", f"paper estimate for 1B items of dim {d} (scaled from this run's {n:,} items):"]
    for kind, code in (("ivf (float32 codes, as measured)", 4 * d), ("ivfpq, 16-byte codes", 16)):
        lists = target * (code + 8) if kind.startswith("ivfpq") else target * lists_per_item
        meta = target * meta_per_item
        lines += [f"  {kind}:",
                  f"    disk: inverted lists {lists / 1e9:,.0f} GB + metadata {meta / 1e9:,.0f} GB "
                  f"+ shards while building (same again) -> {2 * (lists + meta) / 1e9:,.0f} GB peak"]
        for mode, label in OPENED.items():
            ram = lists + private[mode] * target
            lines += [f"    {label}: the lists in page cache ({lists / 1e9:,.0f} GB) + private memory "
                      f"{private[mode]:.0f} B/item measured ({private[mode] * target / 1e9:,.0f} GB) + coarse "
                      f"quantizer ({nlist_1b} x {d} floats = {nlist_1b * d * 4 / 1e6:.0f} MB) -> "
                      f"{max(1, int(np.ceil(ram / 48e9)))} machines of 64 GB (48 GB usable) serving from RAM"]
        lines += ["    (a query goes to every machine and the top-k are combined: `siamese serve` and `query` "
                  "take a folder of shards); with the lists read from SSD instead, fewer machines, bounded by "
                  "random-read latency; metadata rows are read only for the hits, from page cache or disk"]
    best = max(search_rows, key=lambda r: (r["recall"], r["qps"]))
    lines += [f"  build: the shard phase above ran at {build_rate:,.0f} items/s per process; 1B items at that "
              f"rate is {target / build_rate / 3600:,.1f} process-hours (parallel across machines)"]
    scanned = best["nprobe"] * target / 1e6
    lines += [f"  search at nprobe={best['nprobe']} scans ~{scanned / nlist:,.0f}M codes per query with "
              f"nlist={nlist}; with nlist={nlist_1b} it is ~{scanned / nlist_1b:,.0f}M"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--kind", choices=("ivf", "ivfpq"), default="ivf")
    parser.add_argument("--nlist", type=int, default=2048)
    parser.add_argument("--pq-m", type=int)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "scale"))
    parser.add_argument("--keep", action="store_true", help="keep the big files")
    parser.add_argument("--skip-ddp", action="store_true")
    parser.add_argument("--baseline-rev", default="3acafbe",
                        help="git revision whose index package is the in-RAM baseline (metadata copied into RAM)")
    parser.add_argument("--ddp-items", type=int, default=2000)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--phase-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child_main(args.phase, json.loads(args.phase_args))
        return

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"machine: {os.cpu_count()} cores; free disk {shutil.disk_usage(work).free / 1e9:.0f} GB; "
          f"numpy {np.__version__}")
    if not args.skip_ddp:
        print(f"\n## data-parallel pretraining (conv autoencoder, {args.ddp_items} MNIST digits, global batch 128)")
        print("| setup | s/epoch | ms/step | items/s | train loss |\n|---|---|---|---|---|")
        for row in ddp_step_times(work, args.ddp_items, 2):
            print(f"| {row['setup']} | {row['seconds_per_epoch']:.1f} | {row['ms_per_step']:.0f} | "
                  f"{row['items_per_second']:.0f} | {row['train_loss']:.2f} |")

    n, d = args.n, args.d
    print(f"\n## {n:,} x {d} float32 vectors, {args.kind} nlist={args.nlist}, {args.shards} shards")
    total = time.perf_counter()
    phases = [("generate", run_phase("generate", work=work, n=n, d=d, queries=args.queries, seed=args.seed))]
    phases.append(("exact top-10 (reference)", run_phase("truth", work=work, k=10)))
    build = time.perf_counter()
    trained = run_phase("train", work=work, kind=args.kind, nlist=args.nlist, pq_m=args.pq_m, seed=args.seed)
    phases.append(("train template", trained))
    shard_results = [run_phase("shard", work=work, i=i, n_shards=args.shards) for i in range(args.shards)]
    phases += [(f"shard {i}/{args.shards}", r) for i, r in enumerate(shard_results)]
    merged = run_phase("merge", work=work, n_shards=args.shards)
    phases.append(("merge (on-disk lists)", merged))
    build_seconds = time.perf_counter() - build
    print(f"in-RAM baseline: the index package of {extract_baseline(work, args.baseline_rev)}")
    searches = {mode: run_phase("search", work=work, k=10, nprobes=args.nprobe, mode=mode)
                for mode in ("in_ram", "on_disk")}
    phases += [(f"open + search, {OPENED[mode]}", r) for mode, r in searches.items()]
    search = searches["on_disk"]
    build_rate = sum(r["items"] for r in shard_results) / sum(r["seconds"] for r in shard_results)

    print("| phase | wall s | peak RSS MB | peak private MB |\n|---|---|---|---|")
    for name, result in phases:
        print(f"| {name} | {result['seconds']:.1f} | {result['peak_rss_mb']:.0f} | {result['peak_anon_mb']:.0f} |")
    shard_bytes = sum(directory_bytes(work / f"shard-{i}") for i in range(args.shards))
    merged_bytes = {p.name: p.stat().st_size for p in (work / "merged").iterdir()}
    parallel_seconds = trained["seconds"] + max(r["seconds"] for r in shard_results) + merged["seconds"]
    print(f"\nbuild (train + {args.shards} shards one after another + merge): {build_seconds:.0f} s; "
          f"with one machine per shard: {parallel_seconds:.0f} s")
    print(f"disk: vectors.npy {(work / 'vectors.npy').stat().st_size / 1e9:.2f} GB, shards {shard_bytes / 1e9:.2f} GB, "
          f"merged index {sum(merged_bytes.values()) / 1e9:.2f} GB "
          f"({', '.join(f'{k} {v / 1e6:,.0f} MB' for k, v in sorted(merged_bytes.items()))})")
    print(f"first load after the merge (every file checked whole, the check recorded): {merged['check_seconds']:.1f} s")
    budget_mb = ((4 * d + 40) * n + (64 << 20)) / 2**20
    print(f"\n| open | open s | private MB kept | after a search | after all searches | "
          f"QPS nprobe {args.nprobe[0]}, 1 / {os.cpu_count()} threads | recall@10 |\n|---|---|---|---|---|---|---|")
    for mode, result in searches.items():
        first = [r for r in result["rows"] if r["nprobe"] == args.nprobe[0]]
        print(f"| {OPENED[mode]} | {result['load_seconds']:.2f} | {result['loaded_mb']:,.0f} | "
              f"{result['searched_mb']:,.0f} | {result['final_mb']:,.0f} | "
              f"{' / '.join(format(r['qps'], ',.0f') for r in first)} | {first[0]['recall']:.3f} |")
    base = {(r["nprobe"], r["threads"]): r["qps"] for r in searches["in_ram"]["rows"]}
    ratios = [r["qps"] / base[r["nprobe"], r["threads"]] for r in search["rows"] if r["nprobe"] == args.nprobe[0]]
    goals = [("open <= 2 s", search["load_seconds"] <= 2, f"{search['load_seconds']:.2f} s"),
             ("open <= 300 MB private", search["loaded_mb"] <= 300, f"{search['loaded_mb']:,.0f} MB"),
             (f"after a search <= 4d + 40 B/item + 64 MiB = {budget_mb:,.0f} MB", search["searched_mb"] <= budget_mb,
              f"{search['searched_mb']:,.0f} MB"),
             (f"QPS at nprobe {args.nprobe[0]} >= 0.8x in RAM", min(ratios) >= 0.8,
              ", ".join(f"{x:.2f}x" for x in ratios))]
    print("\n| goal | measured | |\n|---|---|---|")
    for goal, ok, measured in goals:
        print(f"| {goal} | {measured} | {'pass' if ok else 'FAIL'} |")
    print("\n| nprobe | faiss threads | recall@10 vs exact | QPS in RAM | QPS on disk |\n|---|---|---|---|---|")
    for row in search["rows"]:
        in_ram = base[row["nprobe"], row["threads"]]
        print(f"| {row['nprobe']} | {row['threads']} | {row['recall']:.3f} | {in_ram:,.0f} | {row['qps']:,.0f} |")
    print("\n".join(billion_estimate(n, d, args.nlist, merged_bytes, searches, build_rate)))
    print(f"\ntotal {time.perf_counter() - total:.0f} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
