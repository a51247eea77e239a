"""Speed against the bare libraries underneath, measured side by side in one run.

Every row times our code and its baseline on the same data in the same process (or, for peak
memory and the demo, in a fresh subprocess), so the ratio is meaningful on a noisy, shared
machine where absolute times are not.

    python benchmarks/speed.py              # full sizes (1M-vector cases included), ~15 min on 2 cores
    python benchmarks/speed.py --quick      # tiny sizes, a few minutes
    python benchmarks/speed.py --only knn   # one group: train, embed, search, knn, auto, build, demo

Rows (ratio = ours / baseline unless the target says otherwise):
  train pretrain / finetune   seconds per optimizer step of `siamese.training.pretrain` / `finetune` (train.fit)
                              vs a bare torch loop with the same model, batches, AdamW and clipping
  embed                       items/s of `siamese.inference.embed` vs `model.encode` under inference_mode
  search <kind>               `VectorIndex.search` vs the same faiss index searched directly
  knn predict                 `KNNClassifier.predict` vs sklearn KNeighborsClassifier(brute)
  auto                        QPS of the `auto` index vs exact flat search (faiss IndexFlatL2), with recall@10
  flat GFLOP/s                2*n*q*d / time of exact flat search vs numpy sgemm GFLOP/s
  build from .npy             peak resident memory growth of `build_index` over a .npy on disk
                              vs the bytes of the vectors plus the model
  demo                        wall time of `siamese demo --quiet`
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MNIST = f"mnist-idx:{ROOT / 'tests' / 'data' / 'mnist'}"
GROUPS = ("train", "embed", "search", "knn", "auto", "build", "demo")


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run (the full sizes unless --quick)."""

    train_source: str = MNIST
    train_items: int = 1024
    train_epochs: int = 2
    train_arch: str = "auto"  # conv for images
    train_widths: tuple[int, ...] = ()  # () = the library's defaults
    embed_items: int = 10_000
    search_n: int = 100_000
    search_q: int = 2_000
    search_kinds: tuple[str, ...] = ("flat", "hnsw", "ivf")
    knn_n: int = 100_000
    knn_q: int = 10_000
    auto_n: int = 1_000_000
    auto_q: int = 10_000
    build_n: int = 1_000_000
    dim: int = 64
    sgemm_size: int = 4096
    repeats: int = 2


QUICK = Sizes(train_source="sklearn:digits", train_items=512, train_epochs=1, embed_items=2_000, search_n=20_000,
              search_q=500, search_kinds=("flat", "hnsw", "ivf"), knn_n=20_000, knn_q=2_000, auto_n=100_000,
              auto_q=1_000, build_n=100_000, sgemm_size=2048, repeats=2)


@dataclass
class Row:
    """One line of the table; `ratio` is ours / baseline in the units given."""

    measure: str
    ours: str
    baseline: str
    ratio: float
    target: str
    passed: bool
    note: str = ""
    correct: bool = True  # ours gave the baseline's answer (weights, embeddings, ids, predictions)


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(fastest wall time in seconds, result of the last call)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def paired(ours: Callable[[], object], baseline: Callable[[], object], repeats: int) -> tuple[float, object, float, object]:
    """Alternate the two callables `repeats` times after one untimed warm-up call each, so load
    changes on a shared machine hit both sides alike; (best ours s, ours result, best baseline s, its result)."""
    ours(), baseline()
    t_ours, t_base, out_ours, out_base = float("inf"), float("inf"), None, None
    for _ in range(repeats):
        t, out_base = best_of(baseline, 1)
        t_base = min(t_base, t)
        t, out_ours = best_of(ours, 1)
        t_ours = min(t_ours, t)
    return t_ours, out_ours, t_base, out_base


def clustered(n: int, d: int, *, clusters: int, seed: int, spread: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: float32 (n, d) vectors and int (n,) cluster ids; centers ~ N(0, spread^2)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=spread, size=(clusters, d)).astype(np.float32)
    y = rng.integers(0, clusters, size=n)
    x = centers[y] + rng.normal(size=(n, d)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), y


def machine() -> dict:
    """CPU, cores, library versions and thread counts of this run."""
    import faiss
    import sklearn
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "faiss": faiss.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
        "torch threads": torch.get_num_threads(), "faiss threads": faiss.omp_get_max_threads(),
        "load average (1/5/15 min) at start": load,
    }


def sgemm_gflops(size: int, repeats: int) -> float:
    """The machine's float32 matrix-multiply rate through numpy (square size x size)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(size, size)).astype(np.float32)
    b = rng.normal(size=(size, size)).astype(np.float32)
    seconds, _ = best_of(lambda: a @ b, repeats)
    return 2 * size ** 3 / seconds / 1e9


def gemm_gflops(xb: np.ndarray, xq: np.ndarray, repeats: int) -> float:
    """numpy sgemm rate on flat search's own GEMM: up to 2048 queries against all of xb, written
    block by block into one reused buffer (inner dimension d, as in the search)."""
    q = xq[:2048]
    cols = max(1, (1 << 23) // len(q))
    buffer = np.empty(len(q) * cols, dtype=np.float32)

    def run():
        for j in range(0, len(xb), cols):
            block = xb[j:j + cols]
            np.matmul(q, block.T, out=buffer[:len(q) * len(block)].reshape(len(q), len(block)))

    seconds, _ = best_of(run, repeats)
    return 2 * len(q) * len(xb) * xb.shape[1] / seconds / 1e9


# ---------------------------------------------------------------- training


def _train_items(sizes: Sizes):
    from siamese import load_items

    return load_items(sizes.train_source, limit=sizes.train_items)


def _state_equal(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def bare_pretrain(items, config, train):
    """What a user would write by hand: the same model, batches, AdamW, clipping and loss."""
    import torch

    from siamese.models.autoencoder import Autoencoder
    from siamese.models.model_input import as_model_input
    from siamese.training.stages import split_validation

    torch.manual_seed(train.seed)
    model = Autoencoder(config, config.network(items.item_shape))
    model.info = {"normalization": items.normalization.to_dict()}
    x = as_model_input(model, items)
    train_idx, _ = split_validation(len(x), train.val_fraction, train.seed)
    x = x[train_idx]
    generator = torch.Generator().manual_seed(train.seed)
    torch.manual_seed(train.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    batch = min(train.batch_size, len(x))
    steps = 0
    model.train()
    for _ in range(train.epochs):
        order = torch.randperm(len(x), generator=generator)
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            if len(idx) < 2:
                continue
            loss, _ = model.loss(x[idx], generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            optimizer.step()
            steps += 1
    model.eval()
    return model, steps


def bare_finetune(model, items, codes, config, train):
    """finetune's step by hand: reconstruction over unlabelled + labelled items, PML loss on the labelled."""
    import torch

    from siamese.data.augment import random_affine
    from siamese.training.finetune import build_loss
    from siamese.models.model_input import as_model_input
    from siamese.training.stages import split_validation

    tuned = copy.deepcopy(model)
    x = as_model_input(tuned, items)
    train_idx, _ = split_validation(len(x), train.val_fraction, train.seed)
    loss_fn = build_loss(config)
    labelled = np.flatnonzero(codes >= 0)
    codes_t = torch.as_tensor(codes)
    batch = min(config.unlabelled_per_step, len(train_idx))
    generator = torch.Generator().manual_seed(train.seed)
    torch.manual_seed(train.seed)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    steps = 0
    tuned.train()
    for _ in range(train.epochs):
        order = torch.randperm(len(train_idx), generator=generator)
        for s in range(0, len(train_idx), batch):
            chunk = order[s:s + batch]
            if len(chunk) < 2:
                continue
            pick = torch.randperm(len(labelled), generator=generator)[:config.labelled_per_step]
            lab = torch.as_tensor(labelled[pick.numpy()])
            x_lab = x[lab]
            recon, _ = tuned.loss(torch.cat([x[train_idx[chunk]], x_lab]), generator)
            if config.augment and x.ndim == 4:
                x_lab = random_affine(x_lab, generator)
            metric = loss_fn(tuned.encode(x_lab), codes_t[lab], None)
            loss = config.recon_weight * recon + config.metric_weight * metric
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tuned.parameters(), train.grad_clip)
            optimizer.step()
            steps += 1
    tuned.eval()
    return tuned, steps


def bench_training(sizes: Sizes) -> tuple[list[Row], dict]:
    """Pretrain and fine-tune step time through our loop vs the bare loops above (same weights out)."""
    from siamese import AutoencoderConfig, FinetuneConfig, TrainConfig, finetune, pretrain
    from siamese.training.finetune import resolve_labels
    from siamese.data.pairs import select_per_class

    items = _train_items(sizes)
    config = AutoencoderConfig(variant="denoising", latent_dim=32, arch=sizes.train_arch, widths=sizes.train_widths)
    # constant lr: the bare loop then does exactly the same arithmetic, which the weight check proves
    train = TrainConfig(epochs=sizes.train_epochs, val_fraction=0.0, schedule="constant")

    ours_s, ours, bare_s, (bare, steps) = paired(lambda: pretrain(items, config, train, progress=False),
                                                 lambda: bare_pretrain(items, config, train), sizes.repeats)
    rows = [_step_row("train step, pretrain", ours_s, bare_s, steps, _state_equal(ours, bare))]

    ft_train = TrainConfig(epochs=sizes.train_epochs, lr=1e-3, val_fraction=0.0, schedule="constant")
    ft_config = FinetuneConfig(pseudo_pairs=None, metric_weight=10.0, distance="cosine")  # as the bare loop has it
    codes = resolve_labels(items, True)
    codes = np.where(select_per_class(codes, 10, seed=ft_train.seed), codes, -1)
    ft_s, tuned, bare_ft_s, (bare_tuned, ft_steps) = paired(
        lambda: finetune(ours, items, labels=True, labels_per_class=10, config=ft_config, train=ft_train,
                         progress=False),
        lambda: bare_finetune(ours, items, codes, ft_config, ft_train), sizes.repeats)
    rows.append(_step_row("train step, fine-tune", ft_s, bare_ft_s, ft_steps, _state_equal(tuned, bare_tuned)))
    return rows, {"model": ours, "items": items}


def _step_row(name: str, ours_s: float, bare_s: float, steps: int, same: bool) -> Row:
    ratio = ours_s / bare_s
    return Row(name, f"{1e3 * ours_s / steps:.1f} ms/step", f"{1e3 * bare_s / steps:.1f} ms/step", ratio,
               "<= 1.10x", ratio <= 1.10 and same,
               f"{steps} steps per run, setup included on both sides; identical weights: {'yes' if same else 'NO'}",
               correct=same)


# ---------------------------------------------------------------- embedding


def bench_embed(sizes: Sizes, model=None) -> list[Row]:
    """Throughput of `embed` vs the bare encoder on the same 1024-item batches."""
    import torch

    from siamese import AutoencoderConfig, embed
    from siamese.models.autoencoder import Autoencoder

    if model is None:
        config = AutoencoderConfig(variant="denoising", latent_dim=32)
        model = Autoencoder(config, config.network((1, 28, 28)))
    shape = tuple(model.network.input_shape)
    x = torch.rand((sizes.embed_items, *shape), generator=torch.Generator().manual_seed(0))

    def bare():
        model.eval()
        with torch.inference_mode():
            return torch.cat([model.encode(x[s:s + 1024]) for s in range(0, len(x), 1024)]).numpy()

    ours_s, z, bare_s, z_bare = paired(lambda: embed(model, x, batch_size=1024), bare, sizes.repeats)
    ratio = bare_s / ours_s
    same = bool(np.array_equal(z, z_bare))
    n = len(x)
    return [Row("embed throughput", f"{n / ours_s:,.0f} items/s", f"{n / bare_s:,.0f} items/s", ratio, ">= 0.90x",
                ratio >= 0.90 and same, f"{n} items of shape {shape}; identical output: {'yes' if same else 'NO'}",
                correct=same)]


# ---------------------------------------------------------------- search


def raw_search(index, queries: np.ndarray, k: int):
    """The faiss index inside a VectorIndex, searched directly (numpy queries, faiss's own defaults)."""
    from index._faiss import faiss_call

    return faiss_call(index.faiss_index, "search", index.prepare_queries(queries), k)


def bench_search(sizes: Sizes) -> list[Row]:
    """`VectorIndex.search` vs searching its faiss index directly, per kind."""
    from index import VectorIndex

    x, _ = clustered(sizes.search_n, sizes.dim, clusters=100, seed=1)
    q, _ = clustered(sizes.search_q, sizes.dim, clusters=100, seed=1)
    rows = []
    for kind in sizes.search_kinds:
        index = VectorIndex.build(x, kind=kind)
        ours_s, ours, raw_s, (raw, raw_ids) = paired(lambda: index.search(q, 10), lambda: raw_search(index, q, 10),
                                                     sizes.repeats)
        agree = float(np.mean(ours.ids == raw_ids))
        # flat search is one numpy GEMM in ours: neighbours at equal float32 distance may swap places
        same = agree >= 0.999 and bool(np.allclose(ours.distances, np.sqrt(np.maximum(raw, 0)), rtol=1e-4, atol=1e-4))
        ratio = ours_s / raw_s
        rows.append(Row(f"search, {kind}", f"{sizes.search_q / ours_s:,.0f} q/s", f"{sizes.search_q / raw_s:,.0f} q/s",
                        ratio, "<= 1.05x", ratio <= 1.05 and same,
                        f"{sizes.search_n} x {sizes.dim}, k=10; same ids: {100 * agree:.2f}%, same distances: "
                        f"{'yes' if same else 'NO'}", correct=same))
    return rows


# ---------------------------------------------------------------- kNN classification


def bench_knn(sizes: Sizes, gflops: float) -> list[Row]:
    """KNNClassifier.predict vs sklearn brute force on the same float32 vectors and labels."""
    from sklearn.neighbors import KNeighborsClassifier

    from index import KNNClassifier, VectorIndex

    x, y = clustered(sizes.knn_n + sizes.knn_q, sizes.dim, clusters=10, seed=2, spread=0.5)
    labels = np.array([f"class-{c}" for c in y], dtype=object)
    xb, yb, xq = x[:sizes.knn_n], labels[:sizes.knn_n], x[sizes.knn_n:]
    clf = KNNClassifier(VectorIndex.build(xb, labels=list(yb)), k=5)
    sk = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(xb, yb)
    ours_s, ours, sk_s, theirs = paired(lambda: clf.predict(xq), lambda: sk.predict(xq), sizes.repeats)
    same = bool(np.array_equal(ours.astype(str), theirs.astype(str)))
    floor = 2 * sizes.knn_n * sizes.knn_q * sizes.dim / (gflops * 1e9)  # distance GEMM alone at peak sgemm
    speedup = sk_s / ours_s
    return [Row("knn predict (speed-up)", f"{ours_s:.2f} s", f"{sk_s:.2f} s", speedup, ">= 5x faster, identical",
                speedup >= 5 and same,
                f"{sizes.knn_n} x {sizes.dim} index, {sizes.knn_q} queries, k=5; identical predictions: "
                f"{'yes' if same else 'NO'}; the distance GEMM alone at peak sgemm takes {floor:.2f} s, so brute "
                f"force can be at most {sk_s / floor:.1f}x faster than sklearn here", correct=same)]


# ---------------------------------------------------------------- auto index and flat GFLOP/s


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true k nearest ids found, averaged over queries; arrays of shape (q, k)."""
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth))
    return hits / truth.size


def bench_auto(sizes: Sizes, gflops: float) -> list[Row]:
    """`auto` index on clustered vectors vs exact flat search (faiss IndexFlat, the bare library):
    recall@10 and QPS; our own flat search's QPS and GFLOP/s beside it."""
    import faiss

    from index import VectorIndex
    from index._faiss import faiss_call

    x, _ = clustered(sizes.auto_n + sizes.auto_q, sizes.dim, clusters=1000, seed=3)
    xb, xq = x[:sizes.auto_n], x[sizes.auto_n:]
    raw = faiss.IndexFlatL2(sizes.dim)
    faiss_call(raw, "add", xb)
    flat_s, (_, exact) = best_of(lambda: faiss_call(raw, "search", xq, 10), 1)
    del raw
    flat = VectorIndex.build(xb, kind="flat")
    ours_flat_s, ours_exact = best_of(lambda: flat.search(xq, 10), 1)
    del flat
    start = time.perf_counter()
    auto = VectorIndex.build(xb, kind="auto")
    build_s = time.perf_counter() - start
    auto_s, found = best_of(lambda: auto.search(xq, 10), sizes.repeats)
    recall = recall_at(found.ids, exact)
    speedup = flat_s / auto_s
    flops = 2 * sizes.auto_n * sizes.auto_q * sizes.dim / ours_flat_s / 1e9
    same_shape = gemm_gflops(xb, xq, sizes.repeats)
    params = {k: v for k, v in auto.params.items() if v is not None}
    return [
        Row("auto index QPS (speed-up vs exact flat)", f"{sizes.auto_q / auto_s:,.0f} q/s, recall@10 {recall:.3f}",
            f"{sizes.auto_q / flat_s:,.0f} q/s (faiss IndexFlatL2)", speedup, "recall@10 >= 0.95 at >= 20x",
            recall >= 0.95 and speedup >= 20,
            f"{sizes.auto_n} x {sizes.dim}, 1000 clusters, {sizes.auto_q} queries; {params}; built in {build_s:.0f} s; "
            f"our own exact flat search: {sizes.auto_q / ours_flat_s:,.0f} q/s (recall@10 "
            f"{recall_at(ours_exact.ids, exact):.3f}), so auto is {ours_flat_s / auto_s:.1f}x that"),
        Row("flat search GFLOP/s (share of sgemm)", f"{flops:.1f} GFLOP/s", f"{same_shape:.1f} GFLOP/s",
            flops / same_shape, ">= 0.50", flops / same_shape >= 0.50,
            f"VectorIndex flat search, {sizes.auto_n} x {sizes.dim}, {sizes.auto_q} queries, k=10, vs numpy sgemm "
            f"of the same shape ({len(xq[:2048])} x {sizes.dim} times {sizes.dim} x {sizes.auto_n}); numpy's "
            f"square {sizes.sgemm_size}^3 sgemm peak is {gflops:.1f} GFLOP/s ({flops / gflops:.2f} of it)"),
    ]


# ---------------------------------------------------------------- build from .npy: peak memory


def _status() -> dict[str, int]:
    """Resident memory fields of /proc/self/status in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[name] = int(value.split()[0]) * 1024
    return out


def build_child(npy: str, model_dir: str) -> dict:
    """Run in a fresh process: build an index over `npy` and report memory before and at peak."""
    import torch

    from siamese import build_index, load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(model_dir)
    try:  # reset the kernel's high-water mark (VmHWM) so it records the build alone
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    before = _status()
    peak = dict(before)
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            for key, value in _status().items():
                peak[key] = max(peak[key], value)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    index = build_index(model, npy, kind="flat")
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    for key, value in _status().items():
        peak[key] = max(peak[key], value)
    return {"before": before, "peak": peak, "seconds": seconds, "count": len(index),
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def bench_build(sizes: Sizes, workdir: Path) -> list[Row]:
    """Peak memory of build_index over an n x 64 .npy on disk through a tiny MLP model."""
    npy, model_dir, model_bytes = write_build_inputs(sizes, workdir)
    out = subprocess.run([sys.executable, __file__, "--build-child", str(npy), str(model_dir)],
                         capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    vector_bytes = sizes.build_n * sizes.dim * 4
    budget = vector_bytes + model_bytes
    anon = report["peak"]["RssAnon"] - report["before"]["RssAnon"]
    hwm = report["peak"]["VmHWM"] - report["before"]["VmRSS"]  # the kernel's exact peak, file pages included
    mb = 1 / 2 ** 20
    return [Row("build from .npy, peak RSS growth (share of vectors + model)", f"{hwm * mb:.0f} MiB",
                f"{budget * mb:.0f} MiB", hwm / budget, "<= 1.5x", hwm / budget <= 1.5,
                f"{sizes.build_n} x {sizes.dim} float32 .npy read by range with plain file reads (its pages are "
                f"not mapped into the process), flat index, MLP {sizes.dim}-{sizes.dim}-{sizes.dim}; VmHWM growth "
                f"over the build; private memory sampled every 20 ms peaked {anon * mb:.0f} MiB above the start "
                f"({anon / budget:.2f}x); {report['seconds']:.0f} s; interpreter and libraries "
                f"{report['before']['VmRSS'] * mb:.0f} MiB before the build")]


def write_build_inputs(sizes: Sizes, workdir: Path) -> tuple[Path, Path, int]:
    """An (n, dim) float32 .npy written in blocks and a saved tiny MLP model; (npy, model dir, model bytes)."""
    import torch

    from siamese import AutoencoderConfig, save_model
    from siamese.models.autoencoder import Autoencoder

    npy = workdir / "items.npy"
    rng = np.random.default_rng(4)
    arr = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(sizes.build_n, sizes.dim))
    for s in range(0, sizes.build_n, 100_000):
        arr[s:s + 100_000] = rng.random((min(100_000, sizes.build_n - s), sizes.dim), dtype=np.float32)
    arr.flush()
    del arr
    config = AutoencoderConfig(variant="plain", arch="mlp", latent_dim=sizes.dim, widths=(sizes.dim,))
    torch.manual_seed(0)
    model = Autoencoder(config, config.network((sizes.dim,)))
    model.info = {"normalization": {"offset": 0.0, "scale": 1.0}, "metric": "l2"}
    save_model(model, workdir / "model")
    model_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    return npy, workdir / "model", model_bytes


# ---------------------------------------------------------------- demo


def bench_demo(workdir: Path) -> list[Row]:
    """`siamese demo --quiet` in a subprocess, wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "siamese", "demo", "--out", str(workdir / "demo"), "--quiet"],
                   check=True, capture_output=True, cwd=workdir)
    seconds = time.perf_counter() - start
    return [Row("siamese demo wall time", f"{seconds:.0f} s", "90 s", seconds / 90, "<= 90 s", seconds <= 90,
                "subprocess, all cores")]


# ---------------------------------------------------------------- report


def table(rows: list[Row]) -> str:
    lines = ["| measure | ours | baseline | ratio | target | pass | notes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.measure} | {r.ours} | {r.baseline} | {r.ratio:.2f} | {r.target} | "
                     f"{'pass' if r.passed else 'FAIL'} | {r.note} |")
    return "\n".join(lines)


def report(rows: list[Row], info: dict, command: str) -> str:
    described = "; ".join(f"{k} {v}" for k, v in info.items())
    return f"Command: `{command}`\n\nMachine: {described}\n\n{table(rows)}\n"


def run(sizes: Sizes, groups: tuple[str, ...], workdir: Path, progress: Callable[[str], None] = lambda s: None) -> list[Row]:
    """Run the chosen groups in order and return their rows."""
    rows: list[Row] = []
    gflops = sgemm_gflops(sizes.sgemm_size, sizes.repeats) if {"knn", "auto"} & set(groups) else 0.0
    trained = {}
    for group in groups:
        progress(group)
        if group == "train":
            new, trained = bench_training(sizes)
        elif group == "embed":
            new = bench_embed(sizes, trained.get("model"))
        elif group == "search":
            new = bench_search(sizes)
        elif group == "knn":
            new = bench_knn(sizes, gflops)
        elif group == "auto":
            new = bench_auto(sizes, gflops)
        elif group == "build":
            new = bench_build(sizes, workdir)
        else:
            new = bench_demo(workdir)
        rows += new
        for r in new:
            progress(f"  {r.measure}: {r.ours} vs {r.baseline} -> {r.ratio:.2f} ({'pass' if r.passed else 'FAIL'})")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a few minutes)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, help="run only these groups")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--build-child", nargs=2, metavar=("NPY", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_child:
        print(json.dumps(build_child(*args.build_child)))
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING)
    sizes = QUICK if args.quick else Sizes()
    groups = tuple(g for g in GROUPS if args.only is None or g in args.only)
    info = machine()
    command = "python benchmarks/speed.py" + (" --quick" if args.quick else "") + \
        (f" --only {' '.join(args.only)}" if args.only else "")
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(sizes, groups, Path(tmp), progress=lambda s: print(s, file=sys.stderr, flush=True))
    text = report(rows, info, command)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
