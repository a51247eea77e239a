"""One-class anomaly detection on the MNIST split: train on one digit, score all 2000 queries.

For each digit c: pretrain an autoencoder on the items of the first 8000 labelled c (labels
are used only to pick them), index their embeddings, and score the last 2000 items by
reconstruction error and by mean distance to their 5 nearest normal items. The other nine
digits are the anomalies. Reports AUROC per digit and the mean over digits and seeds (Deep SVDD:
0.948). Training uses the library's defaults unless flags say otherwise.

    python benchmarks/anomaly.py --seeds 0,1,2             # the defaults, three seeds
    python benchmarks/anomaly.py --epochs 30 --batch-size 64 --seeds 0   # the first published run
    python benchmarks/anomaly.py --holdout --seeds 0       # choices: normal among 0-6999, scored on 7000-7999

Each run scores the kNN distance both whitened (the library's default) and raw (`whiten=False`).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="pretraining epochs (default: the library's)")
    parser.add_argument("--batch-size", type=int, help="(default: the library's)")
    parser.add_argument("--variant", help="(default: the library's)")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--digits", default="0123456789")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; means are over digits and seeds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--holdout", action="store_true",
                        help="normal items among 0-6999, scored on 7000-7999 (for choices; the 2000 queries untouched)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "work" / "anomaly.json")
    args = parser.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from index import VectorIndex
    from siamese import AutoencoderConfig, TrainConfig, embed, load_items, pretrain
    from siamese.inference.anomaly import rank01, score_items

    torch.set_num_threads(args.threads)
    settings = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v is not None}
    variant = {"variant": args.variant} if args.variant else {}
    items = load_items(f"mnist-idx:{ROOT / 'tests' / 'data' / 'mnist'}")
    split = (7000, 8000) if args.holdout else (8000, 10000)
    train, queries = items.subset(np.arange(split[0])), items.subset(np.arange(split[0], split[1]))
    rows = []
    for seed, digit in ((int(seed), digit) for seed in args.seeds.split(",") for digit in args.digits):
        started = time.perf_counter()
        normal = train.subset(np.array(train.labels) == digit)
        model = pretrain(normal, AutoencoderConfig(latent_dim=args.latent_dim, **variant),
                         TrainConfig(**settings, val_fraction=0, seed=seed), progress=False)
        index = VectorIndex.build(embed(model, normal), keys=normal.keys, metric=model.metric)
        scores = score_items(model, queries, index=index, k=5)
        raw = score_items(model, queries, index=index, k=5, whiten=False)  # the kNN distance before whitening
        recon_rank, knn_rank = rank01(scores.reconstruction), rank01(scores.knn_distance)
        is_anomaly = np.array(queries.labels) != digit
        row = {"digit": digit, "seed": seed, "normal_items": len(normal),
               "auroc_reconstruction": roc_auc_score(is_anomaly, scores.reconstruction),
               "auroc_knn": roc_auc_score(is_anomaly, scores.knn_distance),
               "auroc_combined": roc_auc_score(is_anomaly, scores.combined),
               "auroc_knn_raw": roc_auc_score(is_anomaly, raw.knn_distance),
               "auroc_combined_raw": roc_auc_score(is_anomaly, raw.combined),
               # the choice of RECONSTRUCTION_RANK_WEIGHT (made with --holdout): other weights, same scores
               "auroc_by_reconstruction_weight": {
                   str(w): roc_auc_score(is_anomaly, w * recon_rank + (1 - w) * knn_rank)
                   for w in (0.0, 0.1, 0.2, 0.3, 0.5)},
               "seconds": time.perf_counter() - started}
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = ("auroc_reconstruction", "auroc_knn_raw", "auroc_combined_raw", "auroc_knn", "auroc_combined")
    means = {k: float(np.mean([r[k] for r in rows])) for k in columns}
    print("| digit | seed | normal items | AUROC reconstruction | AUROC kNN distance, raw | AUROC combined, raw | "
          "AUROC kNN distance, whitened | AUROC combined, whitened |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['digit']} | {r['seed']} | {r['normal_items']} | " + " | ".join(f"{r[k]:.3f}" for k in columns)
              + " |")
    print("| mean | | | " + " | ".join(f"{means[k]:.3f}" for k in columns) + " |")
    weights = rows[0]["auroc_by_reconstruction_weight"]
    print("mean AUROC by the reconstruction rank's weight (whitened kNN distance): " + ", ".join(
        f"{w}: {np.mean([r['auroc_by_reconstruction_weight'][w] for r in rows]):.4f}" for w in weights))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "mean": means, "args": vars(args) | {"out": str(args.out)}}))


if __name__ == "__main__":
    main()
