"""Open-set kNN on MNIST t10k: two digits never labelled nor indexed must come back "unknown".

Protocol (the quality protocol's split): the first 8000 items are the training pile, the last
2000 the queries. Digits 8 and 9 are held out: no label of them is used and none is indexed
(they stay in the unlabelled pile the autoencoder saw, as unknowns would in practice).

- encoder: the pretrained denoising autoencoder d=32 of benchmarks/quality.py (reused from
  --work/full/models/ae-denoising-32 when cached, otherwise pretrained here with the same settings),
  fine-tuned with 10 labelled items per known digit (seed 0, 10 epochs, as quality.py);
- calibration: 20 *other* labelled items per known digit; all their same pairs (1 520) and as many
  random different pairs, target F1;
- index: the known-digit items of the first 8000, with their labels; kNN k=5;
- unknown rules: nearest labelled distance above a threshold (the calibrated pair threshold for
  target F1 or precision=0.99, or the 0.95 quantile of the indexed items' own leave-one-out
  nearest distances); reconstruction error above the 0.95 quantile of the indexed items' errors.

    python benchmarks/openset.py            # about 12 minutes on 2 cores (fine-tuning dominates)
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
MNIST = f"mnist-idx:{ROOT / 'tests' / 'data' / 'mnist'}"
HELD_OUT = ("8", "9")


def _rank01(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / max(1, len(values) - 1)


def _f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = int((predicted & truth).sum())
    return 2 * tp / max(1, int(predicted.sum()) + int(truth.sum()))


def pretrained_model(work: Path):
    from siamese import AutoencoderConfig, TrainConfig, load_model, pretrain

    cached = work / "full" / "models" / "ae-denoising-32"
    if (cached / "config.json").exists():
        return load_model(cached), str(cached.relative_to(ROOT) if cached.is_relative_to(ROOT) else cached)
    own = work / "openset" / "ae-denoising-32"
    if (own / "config.json").exists():
        return load_model(own), str(own)
    from siamese import load_items

    train = load_items(MNIST).subset(np.arange(8000))
    model = pretrain(train, AutoencoderConfig(variant="denoising", latent_dim=32), TrainConfig(epochs=20, seed=0),
                     out=own, progress=False)
    return model, f"{own} (pretrained here)"


def _best_f1(scores: np.ndarray, truth: np.ndarray) -> float:
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(truth, scores)
    return float(np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12)))


def evaluate(name: str, model, train, queries, known_train: np.ndarray, calib_mask: np.ndarray,
             quantile: float) -> dict:
    from index import KNNClassifier, VectorIndex
    from sklearn.metrics import roc_auc_score

    from siamese import embed
    from siamese.retrieval.calibration import calibrate_distances, model_pair_distances
    from siamese.retrieval.openset import predict_open_set, reconstruction_threshold
    from siamese.data.pairs import pairs_from_labels

    codes, _ = train.label_codes()
    pairs = pairs_from_labels(np.where(calib_mask, codes, -1))  # all same pairs and as many different ones
    distances = model_pair_distances(model, train, pairs)
    thresholds = {target: calibrate_distances(distances, pairs.label, metric=model.metric, target=target).threshold
                  for target in ("f1", "precision=0.99")}
    indexed = train.subset(np.flatnonzero(known_train))
    z_indexed = embed(model, indexed)
    index = VectorIndex.build(z_indexed, keys=indexed.keys, labels=indexed.labels, metric=model.metric)
    own = index.search(z_indexed, 2).distances[:, 1]  # leave-one-out nearest distance of the indexed items
    thresholds[f"index q{quantile}"] = float(np.quantile(own, quantile))
    recon_threshold = reconstruction_threshold(model, indexed, quantile)
    truth = np.asarray(queries.labels, dtype=object)
    is_unknown = np.isin(truth, HELD_OUT)
    known = ~is_unknown
    row = {"row": name, "metric": model.metric, "thresholds": thresholds, "recon_threshold": recon_threshold,
           "n_known": int(known.sum()), "n_unknown": int(is_unknown.sum())}
    z = embed(model, queries)
    for target, threshold in thresholds.items():
        classifier = KNNClassifier(index, k=5, max_distance=threshold)
        result = predict_open_set(classifier, model, queries, z=z, recon_threshold=recon_threshold)
        row[f"f1 {target}"] = _f1(result.unknown_by_distance, is_unknown)
        row[f"known open {target}"] = float(np.mean(np.where(result.unknown_by_distance, None, result.closed_set)[known]
                                                    == truth[known]))
    combined = (_rank01(result.nearest_distance) + _rank01(result.reconstruction_error)) / 2
    row.update({
        "known_accuracy_closed": float(np.mean(result.closed_set[known] == truth[known])),
        "auroc_distance": float(roc_auc_score(is_unknown, result.nearest_distance)),
        "auroc_recon": float(roc_auc_score(is_unknown, result.reconstruction_error)),
        "auroc_combined": float(roc_auc_score(is_unknown, combined)),
        "best_f1_distance": _best_f1(result.nearest_distance, is_unknown),
        "f1_recon": _f1(result.unknown_by_reconstruction, is_unknown),
        "f1_either": _f1(result.unknown, is_unknown),
    })
    return row


def table(rows: list[dict], quantile: float) -> str:
    q = f"index q{quantile}"
    lines = ["| encoder | known acc (closed set) | AUROC: distance | recon | combined | F1 @ calibrated F1 thr | "
             "F1 @ calibrated precision=0.99 thr | F1 @ " + q + " | best F1 (oracle) | F1 recon @ q | "
             "known acc, open set @ " + q + " |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["thresholds"]
        lines.append(f"| {r['row']} ({r['metric']}) | {100 * r['known_accuracy_closed']:.2f}% | "
                     f"{r['auroc_distance']:.3f} | {r['auroc_recon']:.3f} | {r['auroc_combined']:.3f} | "
                     f"{r['f1 f1']:.3f} (thr {t['f1']:.3g}) | {r['f1 precision=0.99']:.3f} (thr {t['precision=0.99']:.3g}) | "
                     f"{r['f1 ' + q]:.3f} (thr {t[q]:.3g}) | {r['best_f1_distance']:.3f} | {r['f1_recon']:.3f} | "
                     f"{100 * r['known open ' + q]:.2f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs")
    parser.add_argument("--quantile", type=float, default=0.95,
                        help="quantile of the indexed items' nearest distance / reconstruction error")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from siamese import TrainConfig, load_items, load_model
    from siamese.training.finetune import finetune
    from siamese.data.pairs import select_per_class

    started = time.perf_counter()
    items = load_items(MNIST)
    train, queries = items.subset(np.arange(8000)), items.subset(np.arange(8000, 10000))
    labels = np.asarray(train.labels, dtype=object)
    known_train = ~np.isin(labels, HELD_OUT)
    codes, _ = train.label_codes()
    known_codes = np.where(known_train, codes, -1)
    finetune_mask = select_per_class(known_codes, 10, seed=0)
    calib_mask = select_per_class(np.where(finetune_mask, -1, known_codes), 20, seed=1)
    pretrained, source = pretrained_model(args.work)
    out = args.work / "openset" / f"ft-known8-10pc-e{args.epochs}"
    if (out / "config.json").exists():
        tuned = load_model(out)
    else:
        mapping = {train.keys[i]: labels[i] for i in np.flatnonzero(finetune_mask)}
        tuned = finetune(pretrained, train, labels=mapping, train=TrainConfig(epochs=args.epochs, lr=1e-3, seed=0),
                         out=out, progress=False)
    rows = [evaluate("pretrained AE (d=32)", pretrained, train, queries, known_train, calib_mask, args.quantile),
            evaluate("fine-tuned, 10 labels x 8 known digits", tuned, train, queries, known_train, calib_mask,
                     args.quantile)]
    report = (f"{table(rows, args.quantile)}\n\nheld out: digits {', '.join(HELD_OUT)} ({rows[0]['n_unknown']} of 2000 queries); "
              f"indexed: {int(known_train.sum())} known-digit items; pretrained encoder: {source}; "
              f"q: {args.quantile} quantile of the indexed items' leave-one-out nearest distance / reconstruction "
              f"error; "
              f"{time.perf_counter() - started:.0f} s\n")
    (args.work / "openset").mkdir(parents=True, exist_ok=True)
    (args.work / "openset" / "openset.json").write_text(json.dumps(rows, indent=1))
    (args.work / "openset" / "openset.md").write_text(report)
    print(report)
    print(f"command: python benchmarks/openset.py --epochs {args.epochs} --quantile {args.quantile}")


if __name__ == "__main__":
    main()
