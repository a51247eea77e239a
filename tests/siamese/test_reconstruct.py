"""`siamese reconstruct` (reconstruction / denoising into a folder) and VAE sampling."""

import csv

import numpy as np
import pytest
import torch
from torchvision.io import read_image

from siamese import AutoencoderConfig, SiameseError, TrainConfig, load_items, pretrain, reconstruct
from siamese.inference.anomaly import reconstruction_scores
from siamese.cli import main
from siamese.inference.reconstruct import ARRAY, ERRORS_CSV, psnr, reconstruct_to_dir
from siamese.inference.generate import latent_manifold, sample
from siamese.models.model_input import model_normalization

DIGITS = "sklearn:digits"


@pytest.fixture(scope="module")
def digits():
    items = load_items(DIGITS)
    return items.subset(np.arange(600)), items.subset(np.arange(1700, 1797))


@pytest.fixture(scope="module")
def models(digits, tmp_path_factory):
    """A small MLP denoiser trained on gaussian noise, and a one-epoch 2-D VAE, both saved."""
    train, _ = digits
    root = tmp_path_factory.mktemp("recon-models")
    fast = dict(arch="mlp", widths=(64,), hidden=64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: extra threads only spin, and crawl on a busy machine
    try:
        denoiser = pretrain(train, AutoencoderConfig(variant="denoising", latent_dim=12, noise="gaussian:0.3",
                                                     augment=False, **fast),
                            TrainConfig(epochs=8, batch_size=32, lr=5e-3, val_fraction=0.0), progress=False)
        vae = pretrain(train, AutoencoderConfig(variant="vae", latent_dim=2, **fast),
                       TrainConfig(epochs=1, batch_size=64, val_fraction=0.0), progress=False)
    finally:
        torch.set_num_threads(threads)
    denoiser.save(root / "denoiser")
    vae.save(root / "vae")
    return {"denoiser": denoiser, "vae": vae, "denoiser_dir": root / "denoiser", "vae_dir": root / "vae"}


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_reconstruct_writes_one_image_per_item_and_errors_match(models, tmp_path, capsys):
    out = tmp_path / "recon"
    code, stdout, err = run(capsys, "reconstruct", models["denoiser_dir"], DIGITS, "--skip", 5, "--limit", 25,
                            "--out", out, "-q")
    assert code == 0, err
    model = models["denoiser"]
    items = load_items(DIGITS).subset(np.arange(5, 30))
    rows = read_csv(out / ERRORS_CSV)
    assert [r["key"] for r in rows] == items.keys
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["file"] for r in rows) and len(rows) == 25
    np.testing.assert_allclose([float(r["reconstruction_error"]) for r in rows],
                               reconstruction_scores(model, items), rtol=1e-5)
    png = read_image(str(out / rows[0]["file"]))
    assert png.shape == (1, 8, 8) and png.dtype == torch.uint8
    raw = np.load(out / ARRAY, allow_pickle=False)
    expected = model_normalization(model).invert(torch.from_numpy(reconstruct(model, items))).numpy()
    assert raw.shape == (25, 1, 8, 8) and 16.0 < raw.max() <= 255.0  # the digits in the 0..255 range of image files
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(png[0].numpy(), np.round(expected[0, 0]).astype(np.uint8))  # 0..255 as is
    assert stdout.startswith("wrote 25 reconstructions") and "mean reconstruction error" in stdout
    code, _, err = run(capsys, "reconstruct", models["denoiser_dir"], DIGITS, "--limit", 3, "--out", out, "-q")
    assert code == 0, err  # an earlier output is replaced as a whole
    assert len(read_csv(out / ERRORS_CSV)) == 3 and len(list(out.glob("*.png"))) == 3


@pytest.mark.parametrize("noise", ["gaussian:0.3", "mask:0.3"])
def test_denoising_raises_psnr(models, digits, noise, tmp_path):
    _, held_out = digits
    report = reconstruct_to_dir(models["denoiser"], held_out, tmp_path / "out", noise=noise, seed=3)
    assert report.psnr_gain > 0, (report.psnr_noisy.mean(), report.psnr_denoised.mean())
    rows = read_csv(tmp_path / "out" / ERRORS_CSV)
    np.testing.assert_allclose([float(r["psnr_denoised"]) for r in rows], report.psnr_denoised, atol=1e-4)
    again = reconstruct_to_dir(models["denoiser"], held_out, tmp_path / "again", noise=noise, seed=3)
    np.testing.assert_array_equal(again.psnr_noisy, report.psnr_noisy)  # the seed fixes the corruption


def test_cli_reports_psnr_gain(models, tmp_path, capsys):
    code, out, err = run(capsys, "reconstruct", models["denoiser_dir"], DIGITS, "--skip", 1700, "--out",
                         tmp_path / "d", "--noise", "gaussian:0.3", "-q")
    assert code == 0, err
    assert out.count("\n") == 1 and "wrote 97 reconstructions" in out and "PSNR (gaussian:0.3) noisy" in out
    gain = float(out.rsplit("(", 1)[1].split()[0])
    assert gain > 0


def test_psnr_by_hand():
    clean = torch.zeros(2, 4)
    noisy = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(psnr(noisy, clean), [20.0, 100.0])  # MSE 0.01 -> 20 dB; exact copy capped


def test_samples_and_manifold(models, tmp_path, capsys):
    vae = models["vae"]
    images = sample(vae, 7, seed=1)
    assert images.shape == (7, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    np.testing.assert_array_equal(images, sample(vae, 7, seed=1))
    grid, z = latent_manifold(vae, side=5)
    assert grid.shape == (25, 1, 8, 8) and z.shape == (25, 2)
    assert np.all(np.diff(z[:5, 0]) > 0) and np.all(np.diff(z[::5, 1]) < 0)  # left to right, top to bottom
    code, out, err = run(capsys, "plot", "samples", models["vae_dir"], "-n", 9, "--out", tmp_path / "s.png")
    assert code == 0, err
    for name in ("s.png", "s-manifold.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG" and name in out
    with pytest.raises(SiameseError, match="variational"):
        latent_manifold(models["denoiser"])


@pytest.mark.parametrize("args, match", [
    (["plot", "samples", "{denoiser}", "--out", "{tmp}/s.png"], "variational"),
    (["reconstruct", "{denoiser}", DIGITS, "--out", "{tmp}/r", "--noise", "blur:3"], "bad noise spec"),
    (["reconstruct", "{denoiser}", DIGITS, "--out", "{tmp}/file/r"], "is a file"),
    (["reconstruct", "{denoiser}", DIGITS, "--out", "{tmp}/file"], "is a file"),
    (["reconstruct", "{denoiser}", DIGITS, "--out", "{tmp}/other"], "not a siamese reconstructions output"),
])
def test_user_errors_exit_2_with_one_line(models, args, match, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    argv = [a.format(denoiser=models["denoiser_dir"], tmp=tmp_path) for a in args]
    code, out, err = run(capsys, *argv, "-q")
    assert code == 2 and err.startswith("siamese: error:") and err.count("\n") == 1
    assert match.lower() in err.lower(), err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written or replaced
