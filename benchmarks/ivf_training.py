"""IVF trained on a sample drawn across the whole source vs on the first chunk, for a source sorted
by class (the case where the first chunk is one class).

    python benchmarks/ivf_training.py            # MNIST t10k sorted by label, chunks of 1000 items
    python benchmarks/ivf_training.py --quick    # fewer epochs and queries

Both indexes hold the same embeddings of the same 10,000 digits (a small MLP autoencoder
pretrained on them, labels unused), kind ivf with the same nlist. "whole source" is what
`build_index` does now (a seeded uniform sample across every chunk, `embed_sample`); "first chunk"
trains the same quantizer on the first chunk's embeddings only (what it did before). Recall@10 is
against exact search over all items, for 1,000 seeded queries among the items, at several nprobe;
"largest list" is the biggest inverted list over the mean list size (1.0 = perfectly balanced;
an unbalanced quantizer scans more vectors per probe).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from index import VectorIndex  # noqa: E402
from index.kinds import IndexParams, train_sample_size  # noqa: E402
from siamese import embed, load_items, load_model  # noqa: E402
from siamese.cli import main as siamese  # noqa: E402
from siamese.retrieval.indexing import build_index  # noqa: E402

NPROBES = (1, 4, 16)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours (n, k) found in `found` (n, k)."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


def list_balance(index: VectorIndex) -> float:
    invlists = faiss.extract_index_ivf(index.faiss_index).invlists
    sizes = np.array([invlists.list_size(i) for i in range(invlists.nlist)])
    return float(sizes.max() / sizes.mean())


def first_chunk_index(model, source: Path, chunk: int, whole: VectorIndex) -> VectorIndex:
    """The same kind and nlist as `whole`, trained on the first `chunk` items only, holding the same items."""
    items = load_items(str(source), preprocessing=model.preprocessing)
    z = embed(model, items)
    params = whole.params
    old = VectorIndex.empty(z.shape[1], metric=model.metric, kind="ivf", nlist=params["nlist"])
    old.train(z[:chunk])
    old.add(z, keys=items.keys)
    return old


def run(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="ivf-training-") as tmp:
        work = Path(tmp)
        items = load_items(f"mnist-idx:{ROOT / 'tests' / 'data' / 'mnist'}")
        order = np.argsort(np.asarray(items.labels, dtype=int), kind="stable")  # sorted by class
        source = work / "sorted.npz"
        np.savez(source, x=(items.x.numpy()[order] * 255).astype(np.uint8), y=np.asarray(items.labels)[order])
        assert siamese(["pretrain", str(source), "--out", str(work / "model"), "--arch", "mlp", "--widths", "128",
                        "--latent-dim", "32", "--epochs", str(args.epochs), "--seed", "0", "-q"]) == 0
        model = load_model(work / "model")
        whole = build_index(model, source, kind="ivf", chunk_size=args.chunk)
        first = first_chunk_index(model, source, args.chunk, whole)
        z = whole.reconstruct(whole.ids)
        exact = VectorIndex.build(z, metric=model.metric, kind="flat")
        queries = z[np.random.default_rng(0).choice(len(z), args.queries, replace=False)]
        truth = exact.search(queries, 10).ids
        first_labels = np.asarray(items.labels)[order][:args.chunk]
        sample = min(train_sample_size(IndexParams.from_json(whole.params)), len(z))
        lines = [f"Command: `python benchmarks/ivf_training.py{' --quick' if args.quick else ''}`", "",
                 f"{len(z):,} MNIST digits sorted by label, chunks of {args.chunk:,} (the first chunk holds only "
                 f"class(es) {', '.join(sorted(set(first_labels.tolist())))}); kind ivf, nlist "
                 f"{whole.params['nlist']}, d {z.shape[1]}, {args.queries:,} queries", "",
                 "| quantizer trained on | training vectors | largest list / mean | "
                 + " | ".join(f"recall@10, nprobe {p}" for p in NPROBES) + " |",
                 "|---|---|---|" + "---|" * len(NPROBES)]
        for name, index, size in (("a sample across the whole source (now)", whole, sample),
                                  ("the first chunk (before)", first, args.chunk)):
            recalls = []
            for nprobe in NPROBES:
                index.set_search_params(nprobe=nprobe)
                recalls.append(recall_at(index.search(queries, 10).ids, truth))
            lines.append(f"| {name} | {size:,} | {list_balance(index):.1f} | "
                         + " | ".join(f"{r:.3f}" for r in recalls) + " |")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--chunk", type=int, default=1000)
    args = parser.parse_args()
    args.epochs, args.queries = (2, 300) if args.quick else (5, 1000)
    print(run(args))


if __name__ == "__main__":
    main()
