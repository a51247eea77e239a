"""Choosing label propagation's settings (`classify`'s default) without touching the queries.

For each fine-tuned model of a quality.py run with few labels (rows `default-ft-10pc-s*` by
default), the training items whose labels fine-tuning used are the index's only labels; the labels
are propagated over the kNN graph of all 8000 training items, and each setting is scored by how
many of the other 7900 items' propagated labels are right (their labels were never seen by
training). The 2000 queries are never embedded here.

    python benchmarks/propagation.py                         # after quality.py --defaults
    python benchmarks/propagation.py --rows default-ft-10pc-s0 --k 5,10,20 --alpha 0.9,0.99
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "full",
                        help="a quality.py work folder holding the models")
    parser.add_argument("--rows", default="default-ft-10pc-s0,default-ft-10pc-s1,default-ft-10pc-s2")
    parser.add_argument("--k", default="5,10,20,40", help="graph neighbours per item")
    parser.add_argument("--alpha", default="0.5,0.9,0.99", help="how far labels spread (0-1)")
    parser.add_argument("--bandwidth", default="0.5,1,2", help="edge weight scale, in median distances")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "work" / "propagation.json")
    args = parser.parse_args()

    import torch

    from index import VectorIndex
    from index.propagation import propagate_labels
    from quality import split  # the benchmark's own split of MNIST t10k
    from siamese import embed, load_model
    from siamese.data.pairs import select_per_class

    torch.set_num_threads(2)
    train_items, _ = split()
    truth = np.asarray(train_items.labels).astype(str)
    settings = list(itertools.product([int(k) for k in floats(args.k)], floats(args.alpha), floats(args.bandwidth)))
    results: dict[str, dict[str, float]] = {}
    for row in args.rows.split(","):
        seed = int(re.search(r"-s(\d+)$", row).group(1))
        per_class = int(re.search(r"-(\d+)pc", row).group(1))
        model = load_model(args.work / "models" / row)
        used = select_per_class(np.asarray(train_items.labels, dtype=np.int64), per_class, seed=seed)
        index = VectorIndex.build(embed(model, train_items), labels=[t if u else None for t, u in zip(truth, used)],
                                  metric=model.metric, kind="flat")
        results[row] = {}
        for k, alpha, bandwidth in settings:
            propagated = propagate_labels(index, k=k, alpha=alpha, bandwidth=bandwidth)
            right = propagated.labels[~used].astype(str) == truth[~used]
            results[row][f"k={k} alpha={alpha:g} bandwidth={bandwidth:g}"] = float(right.mean())
        best = max(results[row], key=results[row].get)
        print(f"{row}: best {best} {100 * results[row][best]:.2f}%", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    names = list(next(iter(results.values())))
    means = {name: float(np.mean([r[name] for r in results.values()])) for name in names}
    print(f"\n| setting | {' | '.join(results)} | mean |\n|---|" + "---|" * (len(results) + 1))
    for name in sorted(names, key=means.get, reverse=True):
        cells = " | ".join(f"{100 * r[name]:.2f}%" for r in results.values())
        print(f"| {name} | {cells} | {100 * means[name]:.2f}% |")


if __name__ == "__main__":
    main()
