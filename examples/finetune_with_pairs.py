"""Fine-tune a pretrained encoder with a file of "same / different" pairs and measure the gain.

    python examples/finetune_with_pairs.py [--out DIR]

Pretrains a denoising autoencoder on the embedded digits (labels unused), writes a PAIRS.csv
from ten labelled items per class (header `a,b,label`, 1 = same), fine-tunes on those pairs with
the contrastive loss and compares kNN accuracy on held-out digits before and after.
"""

import argparse
from pathlib import Path

import numpy as np

from siamese import AutoencoderConfig, TrainConfig, load_items, pretrain
from siamese.evaluate import evaluate_model
from siamese.finetune import finetune
from siamese.pairs import pairs_from_labels, select_per_class, write_pairs_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("example-output"))
    args = parser.parse_args()

    digits = load_items("sklearn:digits")
    order = np.random.default_rng(0).permutation(len(digits))
    train, held_out = digits.subset(np.sort(order[360:])), digits.subset(np.sort(order[:360]))
    model = pretrain(train, AutoencoderConfig(variant="denoising", latent_dim=32, widths=(32, 64)),
                     TrainConfig(epochs=30, batch_size=64))

    codes, _ = train.label_codes()
    few = np.where(select_per_class(codes, 10, seed=0), codes, -1)  # the only labels we "have"
    pairs_file = args.out / "pairs.csv"
    write_pairs_csv(pairs_file, pairs_from_labels(few, seed=0), train.keys)
    print(f"wrote {pairs_file}")

    tuned = finetune(model, train, pairs=pairs_file, train=TrainConfig(epochs=20, lr=1e-3, batch_size=64))
    tuned.save(args.out / "model-pairs")
    before = evaluate_model(model, train, held_out).knn_accuracy
    after = evaluate_model(tuned, train, held_out).knn_accuracy
    record = tuned.info["finetune"]
    print(f"kNN accuracy on held-out digits: {100 * before:.2f}% -> {100 * after:.2f}% "
          f"({record['n_pairs']} pairs; validation reconstruction {record['val_reconstruction_before']:.2f} -> "
          f"{record['val_reconstruction_after']:.2f})")


if __name__ == "__main__":
    main()
