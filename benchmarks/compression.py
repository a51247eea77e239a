"""Compression and denoising on the MNIST split: first 8000 items = index, last 2000 = queries.

Compression: bytes per item of the raw pixels (uint8, float32) against the latent code of an
autoencoder stored as float32 / float16 / int8 (written and read back with siamese.save_codes /
load_codes, int8 with per-dimension scale and offset), the reconstruction error of
decode(dequantised code) against the item (MSE per pixel in [0, 1]) and kNN (k=5) accuracy of
the queries' codes against the index items' codes.

Denoising: the 2000 queries corrupted with gaussian:0.3 and mask:0.4 (seed 0), PSNR of the noisy
and of the reconstructed item against the clean one, for autoencoders trained with and without
corruption.

    python benchmarks/compression.py                  # uses the models of benchmarks/quality.py

The models come from --models (benchmarks/quality.py caches them there); the gaussian-noise
denoiser, not part of the quality protocol, is trained here once and cached beside them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MNIST = f"mnist-idx:{ROOT / 'tests' / 'data' / 'mnist'}"
COMPRESSED = ("ae-plain-32", "ae-denoising-32", "ae-vae-32")
DENOISERS = ("ae-plain-32", "ae-denoising-32", "ae-denoising-gauss-32")
NOISES = ("gaussian:0.3", "mask:0.4")
GAUSS_DENOISER = "ae-denoising-gauss-32"


def split():
    from siamese import load_items

    items = load_items(MNIST)
    return items.subset(np.arange(8000)), items.subset(np.arange(8000, 10000))


def model(models: Path, name: str, train_items, epochs: int):
    from siamese import AutoencoderConfig, TrainConfig, load_model, pretrain

    path = models / name
    if (path / "config.json").exists():
        return load_model(path)
    if name != GAUSS_DENOISER:
        raise SystemExit(f"{path} is missing: run benchmarks/quality.py --train-only --rows {name} first")
    print(f"training {name} ({epochs} epochs, gaussian:0.3 corruption, no affine augmentation)", flush=True)
    config = AutoencoderConfig(variant="denoising", latent_dim=32, noise="gaussian:0.3", augment=False)
    return pretrain(train_items, config, TrainConfig(epochs=epochs, seed=0), out=path, progress=False)


def compression_rows(models: Path, train_items, queries, epochs: int) -> list[dict]:
    import torch

    from siamese import embed, load_codes, save_codes
    from siamese.inference.codes import bytes_per_item
    from siamese.retrieval.evaluate import knn_accuracy

    raw_train, raw_query = train_items.x.flatten(1).numpy(), queries.x.flatten(1).numpy()
    raw_acc = knn_accuracy(raw_train, train_items.labels, raw_query, queries.labels, k=5)
    pixels = raw_train.shape[1]
    rows = [{"what": "raw pixels, uint8", "bytes": pixels, "mse": 0.0, "knn": raw_acc},
            {"what": "raw pixels, float32", "bytes": 4 * pixels, "mse": 0.0, "knn": raw_acc}]
    with tempfile.TemporaryDirectory() as tmp:
        for name in COMPRESSED:
            m = model(models, name, train_items, epochs)
            z_train, z_query = embed(m, train_items), embed(m, queries)
            for dtype in ("float32", "float16", "int8"):
                a = load_codes(save_codes(Path(tmp) / "index.npz", z_train, train_items.keys, dtype=dtype)).z
                b = load_codes(save_codes(Path(tmp) / "queries.npz", z_query, queries.keys, dtype=dtype)).z
                with torch.inference_mode():
                    decoded = torch.sigmoid(m.decode(torch.from_numpy(b))).flatten(1).numpy()
                rows.append({"what": f"{name} code, {dtype}", "bytes": bytes_per_item(m.latent_dim, dtype),
                             "mse": float(np.mean((decoded - raw_query) ** 2)),
                             "knn": knn_accuracy(a, train_items.labels, b, queries.labels, k=5, metric=m.metric)})
    return rows


def denoising_rows(models: Path, train_items, queries, epochs: int) -> list[dict]:
    from siamese.inference.reconstruct import psnr, reconstruct_items

    rows = []
    for name in DENOISERS:
        m = model(models, name, train_items, epochs)
        noise = m.config.noise if m.config.variant == "denoising" else "none"
        augment = " + shifts/rotations" if m.config.uses_augmentation(m.network.input_shape) else ""
        row = {"model": f"{name} (trained on {noise}{augment})"}
        for spec in (None, *NOISES):
            clean, noisy, logits = reconstruct_items(m, queries, noise=spec, seed=0)
            row[spec] = (float(psnr(noisy, clean).mean()), float(psnr(logits.sigmoid(), clean).mean()))
        rows.append(row)
    return rows


def tables(compression: list[dict], denoising: list[dict]) -> str:
    lines = ["| stored per item | bytes | reconstruction MSE (per pixel) | kNN acc (k=5) |", "|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['bytes']} | {r['mse']:.6f} | {100 * r['knn']:.2f}% |" for r in compression]
    lines += ["", "| model | PSNR clean → reconstructed | " + " | ".join(
        f"{n}: noisy → denoised (gain)" for n in NOISES) + " |", "|---|---|" + "---|" * len(NOISES)]
    for r in denoising:
        cells = [f"{r[n][0]:.2f} → {r[n][1]:.2f} dB ({r[n][1] - r[n][0]:+.2f})" for n in NOISES]
        lines.append(f"| {r['model']} | {r[None][1]:.2f} dB | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "benchmarks" / "work" / "full" / "models")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the gaussian denoiser if it is trained")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_items, queries = split()
    report = tables(compression_rows(args.models, train_items, queries, args.epochs),
                    denoising_rows(args.models, train_items, queries, args.epochs))
    seconds = time.perf_counter() - started
    print(f"{report}\n\n(python benchmarks/compression.py --threads {args.threads}; {seconds:.0f} s)")


if __name__ == "__main__":
    main()
