"""Build a similarity index from a folder of images and query it.

    python examples/build_and_query_folder.py [IMAGE_FOLDER] [--out DIR]

Without a folder, a folder of PNGs is first written from scikit-learn's digits so the example runs
anywhere. Sub-folders, if present, are read as class labels (ImageFolder style).
"""

import argparse
from pathlib import Path

import numpy as np

from index import VectorIndex
from siamese import AutoencoderConfig, TrainConfig, embed, load_items, pretrain


def write_digits_folder(folder: Path, per_class: int = 40) -> Path:
    """A small ImageFolder (one sub-folder per digit) from the embedded digits."""
    import torch
    from torchvision.io import write_png

    digits = load_items("sklearn:digits")
    codes, classes = digits.label_codes()
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(codes == c)[:per_class]:
            pixels = (digits.x[i] * 255).round().to(torch.uint8)
            write_png(pixels, str(folder / name / f"{i}.png"))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--out", type=Path, default=Path("example-output"))
    args = parser.parse_args()
    folder = args.folder or write_digits_folder(args.out / "images")

    items = load_items(folder)  # recursive; keys are relative paths
    print(f"{len(items)} images of shape {items.item_shape} from {folder}")
    model = pretrain(items, AutoencoderConfig(variant="denoising", latent_dim=16, widths=(16, 32)),
                     TrainConfig(epochs=15, batch_size=64))
    model.save(args.out / "model")

    index = VectorIndex.build(embed(model, items), keys=items.keys, labels=items.labels, metric=model.metric,
                              model_fingerprint=model.fingerprint())
    index.save(args.out / "index")

    reloaded = VectorIndex.load(args.out / "index")
    reloaded.check_model(model.fingerprint())  # refuses vectors from another model
    query = load_items([str(folder / items.keys[0])], normalization=items.normalization)
    hits = reloaded.search(embed(model, query), k=5)
    print(f"nearest to {items.keys[0]}:")
    for key, label, distance in zip(hits.keys[0], hits.labels[0], hits.distances[0]):
        print(f"  {key:<20} label {label}  distance {distance:.4f}")


if __name__ == "__main__":
    main()
