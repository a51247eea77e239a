"""Does fine-tuning gain from pseudo-pairs mined among the unlabelled items? MNIST split, 10 labels per class.

Protocol of benchmarks/quality.py: the first 8000 items of MNIST t10k train (10 labelled items
per class, seeds 0, 1, 2; the rest unlabelled), the last 2000 are queries; kNN (k=5) accuracy of
the queries against the 8000 and MAP@R (siamese.retrieval.evaluate.score_embeddings). Both arms start from
the pretrained denoising autoencoder d=32 and fine-tune 10 epochs with the default FinetuneConfig;
the pseudo-pair arm adds PseudoPairConfig() (mutual 5-NN below the median distance as positives,
as many random pairs beyond the 0.9 distance quantile as negatives, mined once in the pretrained
space). The labelled-only arm reuses quality.py's cached ft-10pc-s* results when present (same
code path and settings). Purity (share of mined pairs whose true labels agree with the pair
label) uses the labels for reporting only.

    python benchmarks/pseudo_pairs.py          # about 35 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.quality import Row, run_row, split  # noqa: E402

SEEDS = (0, 1, 2)


def pseudo_row(seed: int, work: Path, epochs: int, config) -> dict:
    """Fine-tune with pseudo-pairs (cached in work/pseudo) and score like quality.py."""
    from siamese import TrainConfig, embed, load_model
    from siamese.retrieval.evaluate import score_embeddings
    from siamese.training.finetune import FinetuneConfig, finetune

    result_path = work / "pseudo" / f"ft-10pc-pseudo-s{seed}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    train_items, queries = split()
    parent = load_model(work / "full" / "models" / "ae-denoising-32")
    started = time.perf_counter()
    model = finetune(parent, train_items, labels=True, labels_per_class=10,
                     config=FinetuneConfig(pseudo_pairs=config),
                     train=TrainConfig(epochs=epochs, lr=1e-3, seed=seed), out=work / "pseudo" / f"ft-10pc-pseudo-s{seed}",
                     progress=False)
    seconds = time.perf_counter() - started
    scores = score_embeddings(embed(model, train_items), train_items.labels, embed(model, queries), queries.labels,
                              metric=model.metric)
    result = {"row": f"ft-10pc-pseudo-s{seed}", **scores.to_dict(), "seconds": seconds}
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result))
    return result


def purity(work: Path, config) -> dict:
    """How often the pairs mined in the pretrained space agree with the true labels."""
    from siamese import embed, load_model
    from siamese.data.pairs import select_per_class
    from siamese.training.pseudo_pairs import mine_pseudo_pairs

    train_items, _ = split()
    model = load_model(work / "full" / "models" / "ae-denoising-32")
    codes = train_items.label_codes()[0]
    unlabelled = np.flatnonzero(~select_per_class(codes, 10, seed=0))
    pairs = mine_pseudo_pairs(embed(model, train_items), config, metric="cosine", candidates=unlabelled)
    agree = (codes[pairs.a] == codes[pairs.b]) == (pairs.label == 1)
    return {"positives": pairs.n_positive, "negatives": pairs.n_negative,
            "positive_purity": float(agree[pairs.label == 1].mean()),
            "negative_purity": float(agree[pairs.label == 0].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from siamese.training.pseudo_pairs import PseudoPairConfig

    config = PseudoPairConfig()
    started = time.perf_counter()
    mined = purity(args.work, config)
    print(f"mined in the pretrained space: {mined}", flush=True)
    base = [run_row(Row(f"ft-10pc-s{s}", parent="ae-denoising-32", per_class=10, seed=s), args.work / "full",
                    20, args.epochs) for s in SEEDS]
    pseudo = []
    for s in SEEDS:
        pseudo.append(pseudo_row(s, args.work, args.epochs, config))
        print(f"seed {s}: labelled only {100 * base[s]['knn_accuracy']:.2f}%, with pseudo-pairs "
              f"{100 * pseudo[-1]['knn_accuracy']:.2f}%", flush=True)
    lines = ["| fine-tuning (10 labels per class) | kNN acc (k=5) per seed | mean kNN acc | mean MAP@R |",
             "|---|---|---|---|"]
    for name, rows in (("labelled pairs only", base), ("+ pseudo-pairs", pseudo)):
        accs = [100 * r["knn_accuracy"] for r in rows]
        maps = [100 * r["map_at_r"] for r in rows]
        lines.append(f"| {name} | {' / '.join(f'{a:.2f}%' for a in accs)} | {np.mean(accs):.2f}% | "
                     f"{np.mean(maps):.2f}% |")
    report = ("\n".join(lines) + f"\n\npseudo-pairs mined in the pretrained space among the 7900 unlabelled items (seed 0 labels): "
              f"{mined['positives']} positives ({100 * mined['positive_purity']:.2f}% truly same), "
              f"{mined['negatives']} negatives ({100 * mined['negative_purity']:.2f}% truly different); "
              f"{time.perf_counter() - started:.0f} s\n")
    (args.work / "pseudo").mkdir(parents=True, exist_ok=True)
    (args.work / "pseudo" / "pseudo_pairs.md").write_text(report)
    print(report)
    print(f"command: python benchmarks/pseudo_pairs.py --epochs {args.epochs}")


if __name__ == "__main__":
    main()
