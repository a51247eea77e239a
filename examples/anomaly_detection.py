"""One-class anomaly detection: learn what normal items look like, then score new ones.

    python examples/anomaly_detection.py [--normal 0]

Pretrains an autoencoder only on the digits of one class, indexes them, and scores held-out
digits of every class by reconstruction error and by distance to their nearest normal items.
Reports the AUROC of each score for telling the other classes apart.
"""

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from index import VectorIndex
from siamese import AutoencoderConfig, TrainConfig, embed, load_items, pretrain
from siamese.inference.anomaly import score_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal", default="0", help="the digit treated as normal")
    args = parser.parse_args()

    digits = load_items("sklearn:digits")
    order = np.random.default_rng(0).permutation(len(digits))
    train, test = digits.subset(np.sort(order[900:])), digits.subset(np.sort(order[:900]))
    normal = train.subset(np.array(train.labels) == args.normal)
    model = pretrain(normal, AutoencoderConfig(variant="denoising", latent_dim=16, widths=(16, 32)),
                     TrainConfig(epochs=40, batch_size=32))
    index = VectorIndex.build(embed(model, normal), keys=normal.keys, metric=model.metric)

    scores = score_items(model, test, index=index, k=5)
    is_anomaly = np.array(test.labels) != args.normal
    print(f"trained on {len(normal)} digits '{args.normal}'; scoring {len(test)} held-out digits "
          f"({int(is_anomaly.sum())} anomalies)")
    for name, values in (("reconstruction error", scores.reconstruction), ("kNN distance", scores.knn_distance),
                         ("combined rank", scores.combined)):
        print(f"  AUROC {name:<21} {roc_auc_score(is_anomaly, values):.3f}")
    print("most anomalous:", ", ".join(f"{test.keys[i]} (digit {test.labels[i]})" for i in scores.top(5)))


if __name__ == "__main__":
    main()
