"""A tiny trained workspace (8x8 bar images, model, fine-tuned model, index, pairs) for CLI tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torchvision.io import write_png

from siamese.cli import main

TINY = ["--widths", "4", "8", "--latent-dim", "4", "--epochs", "2", "--batch-size", "8", "-q"]


def draw(kind: int, rng) -> torch.Tensor:
    """8x8 gray image: class 0 = a vertical bar, class 1 = a horizontal bar, plus noise."""
    img = rng.integers(0, 40, (8, 8))
    pos = rng.integers(2, 6)
    if kind == 0:
        img[:, pos] = 255
    else:
        img[pos, :] = 255
    return torch.from_numpy(img.astype(np.uint8))[None]


def build(root: Path) -> Path:
    """images/{0,1}/*.png (12 each), queries/{a,b,c}.png, model/, tuned/, index/ and pairs.csv under root."""
    rng = np.random.default_rng(0)
    folder = root / "images"
    for cls in ("0", "1"):
        (folder / cls).mkdir(parents=True)
        for i in range(12):
            write_png(draw(int(cls), rng), str(folder / cls / f"{i}.png"))
    (root / "queries").mkdir()
    for name, kind in (("a", 0), ("b", 0), ("c", 1)):
        write_png(draw(kind, rng), str(root / "queries" / f"{name}.png"))
    assert main(["pretrain", str(folder), "--out", str(root / "model"), *TINY]) == 0
    assert main(["finetune", str(root / "model"), str(folder), "--labels", "items", "--out", str(root / "tuned"),
                 "--epochs", "2", "--batch-size", "8", "-q"]) == 0
    assert main(["index", "build", str(root / "tuned"), str(folder), "--out", str(root / "index"), "-q"]) == 0
    keys = [f"{c}/{i}.png" for c in ("0", "1") for i in range(12)]
    with open(root / "pairs.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["a", "b", "label"])
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                writer.writerow([a, b, int(a[0] == b[0])])
    return root


_BUILT: dict[str, Path] = {}


def shared(tmp_path_factory) -> Path:
    """One workspace per test session; tests that change its files work on copies."""
    if "root" not in _BUILT:
        _BUILT["root"] = build(tmp_path_factory.mktemp("tiny-workspace"))
    return _BUILT["root"]
