"""Figures for the README and BENCHMARKS.md from the models trained by benchmarks/quality.py.

    python benchmarks/figures.py            # writes docs/images/*.png

The MNIST "mapped to 2-D" maps (autoencoder vs fine-tuned with 100 labels per class; without and,
at the library's defaults, with the neighbour term), a
reconstruction grid, and the "query and its 9 nearest" grid from the fine-tuned index.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from index import VectorIndex
    from siamese import embed, load_items, load_model, reconstruct
    from siamese.plots import plot_latent, plot_neighbors, plot_reconstructions

    models = ROOT / "benchmarks" / "work" / "full" / "models"
    out = ROOT / "docs" / "images"
    items = load_items(f"mnist-idx:{ROOT / 'tests' / 'data' / 'mnist'}")
    train, queries = items.subset(np.arange(8000)), items.subset(np.arange(8000, 10000))
    for name, title in (("ae-denoising-2-e40", "MNIST mapped to 2-D by a denoising autoencoder (no labels)"),
                        ("ft-100pc-d2-e40", "the same encoder fine-tuned with 100 labelled items per class"),
                        ("default-ae-d2-s0", "MNIST mapped to 2-D at the defaults (neighbour term on, no labels)"),
                        ("default-ft-100pc-d2-s0", "the same encoder fine-tuned with 100 labelled items per class")):
        if (models / name).exists():
            model = load_model(models / name)
            plot_latent(embed(model, queries), queries.labels, out / f"latent-{name}.png", title=title)
    if not (models / "ae-denoising-32").exists() or not (models / "ft-10pc-s0").exists():
        print(f"wrote the 2-D maps to {out}; train rows ae-denoising-32 and ft-10pc-s0 (benchmarks/quality.py) "
              "for the other figures")
        return
    model = load_model(models / "ae-denoising-32")
    subset = queries.subset(range(16))
    plot_reconstructions(subset.x.numpy(), reconstruct(model, subset), out / "reconstructions.png",
                         title="denoising autoencoder, d=32: query digits (top) and reconstructions (bottom)")
    model = load_model(models / "ft-10pc-s0")
    index = VectorIndex.build(embed(model, train), keys=train.keys, labels=train.labels, metric=model.metric)
    picks = queries.subset([0, 1, 2, 3, 4, 7])
    hits = index.search(embed(model, picks), 9)
    position = {key: i for i, key in enumerate(train.keys)}
    neighbours = train.x[[position[k] for k in hits.keys.ravel()]].numpy().reshape(6, 9, 1, 28, 28)
    plot_neighbors(picks.x.numpy(), neighbours, out / "neighbors.png", distances=hits.distances,
                   neighbor_labels=hits.labels, query_labels=picks.labels,
                   title="MNIST queries and their 9 nearest indexed items (fine-tuned with 10 labels per class)")
    print(f"wrote figures to {out}")


if __name__ == "__main__":
    main()
