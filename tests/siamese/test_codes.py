"""Latent codes on disk: `siamese embed` for every source kind, each dtype round trip, chunking."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from siamese import Autoencoder, AutoencoderConfig, SiameseError, embed, load_codes, load_items, write_codes
from siamese.cli import main
from siamese.inference.codes import Quantization, dequantize, quantize, save_codes

MNIST = f"mnist-idx:{Path(__file__).resolve().parents[1] / 'data' / 'mnist'}"
N = 30


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Every source kind with the item count `siamese embed` should see ('limit' = --limit)."""
    root = tmp_path_factory.mktemp("codes")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 6)).astype(np.float32)
    y = np.array([str(i % 3) for i in range(N)])
    np.save(root / "x.npy", x)
    np.savez(root / "x.npz", x=x, y=y, keys=np.array([f"row{i}" for i in range(N)]))
    with open(root / "x.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"f{j}" for j in range(6)] + ["label", "key"])
        writer.writerows([*map(float, row), y[i], f"c{i}"] for i, row in enumerate(x))
    for cls in ("a", "b"):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(5):
            image = torch.from_numpy(rng.integers(0, 256, (1, 8, 8), dtype=np.uint8))
            write_png(image, str(root / "images" / cls / f"{i}.png"))
    return {"npy": (root / "x.npy", None), "npz": (root / "x.npz", None), "csv": (root / "x.csv", None),
            "folder": (root / "images", None), "mnist": (MNIST, 20)}


@pytest.fixture(scope="module")
def models(sources, tmp_path_factory):
    """A tiny seeded (untrained: codes only need a fixed encoder) model per item shape, saved with the
    normalisation of its data: vectors (6,), 8x8 images, 28x28 MNIST."""
    root = tmp_path_factory.mktemp("code-models")
    out = {}
    for name, source, limit in (("vec", sources["npy"][0], None), ("img", sources["folder"][0], None),
                                ("mnist", MNIST, 40)):
        items = load_items(str(source), limit=limit)
        config = AutoencoderConfig(variant="plain", latent_dim=3, widths=(4, 8) if items.is_image else (8,))
        torch.manual_seed(0)
        model = Autoencoder(config, config.network(items.item_shape))
        model.info["normalization"] = items.normalization.to_dict()
        model.save(root / name)
        out[name] = root / name
    return out


MODEL_OF = {"npy": "vec", "npz": "vec", "csv": "vec", "folder": "img", "mnist": "mnist"}


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def expected(models, sources, kind):
    from siamese import load_model
    from siamese.models.model_input import model_normalization

    source, limit = sources[kind]
    model = load_model(models[MODEL_OF[kind]])
    items = load_items(str(source), limit=limit, normalization=model_normalization(model))
    return model, items


@pytest.mark.parametrize("kind", list(MODEL_OF))
def test_embed_every_source_kind(models, sources, kind, tmp_path, capsys):
    source, limit = sources[kind]
    extra = ["--limit", limit] if limit else []
    code, out, err = run(capsys, "embed", models[MODEL_OF[kind]], source, "--out", tmp_path / "z.npz", "-q", *extra)
    assert code == 0, err
    model, items = expected(models, sources, kind)
    with np.load(tmp_path / "z.npz", allow_pickle=False) as data:
        assert data["z"].shape == (len(items), 3) and data["z"].dtype == np.float32
        assert data["keys"].tolist() == items.keys
        assert ("y" in data.files) == items.has_labels
        if items.has_labels:
            assert data["y"].tolist() == items.labels
        np.testing.assert_allclose(data["z"], embed(model, items), rtol=1e-5, atol=1e-6)
    assert f"wrote {len(items)} x 3 float32 codes" in out


@pytest.mark.parametrize("dtype, suffix", [("float32", ".npz"), ("float16", ".npz"), ("int8", ".npz"),
                                           ("float32", ".npy"), ("float16", ".npy")])
def test_round_trip_each_dtype(models, sources, dtype, suffix, tmp_path, capsys):
    path = tmp_path / f"z{suffix}"
    code, _, err = run(capsys, "embed", models["vec"], sources["npz"][0], "--out", path, "--dtype", dtype, "-q")
    assert code == 0, err
    model, items = expected(models, sources, "npz")
    z = embed(model, items)
    codes = load_codes(path)
    assert codes.z.dtype == np.float32 and codes.z.shape == z.shape and codes.dtype == dtype
    stored = np.load(path, allow_pickle=False)
    assert (stored["z"] if suffix == ".npz" else stored).dtype == np.dtype(dtype)
    if dtype == "float32":
        np.testing.assert_array_equal(codes.z, z)
    elif dtype == "float16":
        np.testing.assert_allclose(codes.z, z, rtol=1e-3, atol=1e-4)
    else:
        step = (z.max(axis=0) - z.min(axis=0)) / 254
        assert np.all(np.abs(codes.z - z) <= step / 2 + 1e-6)
        assert np.abs(codes.z - z).max() > 0  # really quantised
    if suffix == ".npz":
        assert codes.keys == items.keys and codes.labels == items.labels
    else:
        assert codes.keys is None and codes.labels is None


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_chunked_equals_unchunked(models, sources, dtype, tmp_path, capsys):
    for name, chunk in (("whole", 1000), ("chunked", 7)):
        code, _, err = run(capsys, "embed", models["mnist"], MNIST, "--limit", 20, "--skip", 3, "--chunk", chunk,
                           "--dtype", dtype, "--out", tmp_path / f"{name}.npz", "-q")
        assert code == 0, err
    whole, chunked = (np.load(tmp_path / f"{name}.npz", allow_pickle=False) for name in ("whole", "chunked"))
    assert whole.files == chunked.files
    for key in ("keys", "y"):
        np.testing.assert_array_equal(whole[key], chunked[key])
    for key in set(whole.files) & {"scale", "offset"}:
        np.testing.assert_allclose(whole[key], chunked[key], rtol=1e-5)
    # batches of another size may round the last float bit differently: at most one int8 step apart
    atol = 1 if dtype == "int8" else 1e-6
    np.testing.assert_allclose(whole["z"].astype(np.float32), chunked["z"].astype(np.float32), rtol=1e-5, atol=atol)
    assert whole["keys"].tolist() == [str(i) for i in range(3, 23)]


def test_python_api_writes_the_same_file(models, sources, tmp_path):
    model, items = expected(models, sources, "csv")
    writer = write_codes(model, items, tmp_path / "z.npz", dtype="int8", chunk=4)
    assert (writer.count, writer.dim) == (N, 3) and writer.keys == items.keys
    codes = load_codes(tmp_path / "z.npz")
    assert codes.quantization is not None and codes.quantization.scale.shape == (3,)
    assert embed(model, items).dtype == np.float32  # embed stays the float32 path
    streamed = write_codes(model, str(sources["csv"][0]), tmp_path / "s.npz", dtype="int8", chunk=4)
    np.testing.assert_array_equal(load_codes(tmp_path / "s.npz").z, codes.z)
    assert streamed.labels == items.labels


def test_quantize_bounds_and_constant_dimensions():
    z = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    z[:, 2] = 1.5  # a constant dimension comes back exactly
    q, params = quantize(z, "int8")
    assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    back = dequantize(q, params)
    assert np.all(back[:, 2] == 1.5)
    assert np.all(np.abs(back - z) <= params.scale / 2 + 1e-6)
    with pytest.raises(SiameseError, match="scale and offset"):
        dequantize(q)
    with pytest.raises(SiameseError, match="float16"):
        quantize(np.array([[1e6]], dtype=np.float32), "float16")
    assert isinstance(params, Quantization)


def test_load_codes_rejects_bad_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros((2, 2)))
    with pytest.raises(SiameseError, match="no 'z'"):
        load_codes(tmp_path / "other.npz")
    np.savez(tmp_path / "noscale.npz", z=np.zeros((2, 2), dtype=np.int8))
    with pytest.raises(SiameseError, match="scale"):
        load_codes(tmp_path / "noscale.npz")
    with pytest.raises(SiameseError, match="does not exist"):
        load_codes(tmp_path / "missing.npz")
    with pytest.raises(SiameseError, match="no items"):
        save_codes(tmp_path / "empty.npz", np.zeros((0, 3), dtype=np.float32))
    assert not (tmp_path / "empty.npz").exists()


@pytest.mark.parametrize("args, match", [
    (["--dtype", "int4"], "unknown code dtype"),
    (["--dtype", "int8", "--out", "{tmp}/z.npy"], "write a .npz"),
    (["--out", "{tmp}/z.txt"], ".npz or .npy"),
    (["--chunk", "0"], "chunk"),
    (["--out", "{tmp}/file/z.npz"], "cannot write"),
])
def test_embed_user_errors_exit_2_with_one_line(models, sources, args, match, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["embed", models["vec"], sources["npy"][0]] + [a.format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        argv += ["--out", tmp_path / "z.npz"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith("siamese: error:") and err.count("\n") == 1
    assert match.lower() in err.lower(), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing partial written
