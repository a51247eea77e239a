"""siamese.data.loading: every source kind, normalisation, validation errors and chunked loading."""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.io import write_png

from siamese.data.loading import ItemSet, Normalization, describe_source, iter_item_chunks, load_items, read_labels_csv
from siamese.errors import SiameseError

MNIST_DIR = Path(__file__).resolve().parents[1] / "data" / "mnist"
RNG = np.random.default_rng(0)


def _img(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _gray(h: int = 6, w: int = 5) -> np.ndarray:
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def _rgb(h: int = 6, w: int = 5) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _idx(path: Path, arr: np.ndarray, magic: int) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())
    return path


def _fake_mnist(folder: Path, n_train: int = 5, n_test: int = 3, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = _idx(folder / f"{split}-images-idx3-ubyte", RNG.integers(0, 256, (n, 28, 28)), 2051)
        labels = _idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, 2049)
        if gz:
            for p in (images, labels):
                p.with_name(p.name + ".gz").write_bytes(gzip.compress(p.read_bytes()))
                p.unlink()


def _raises(fn, *fragments: str) -> str:
    with pytest.raises(SiameseError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    return msg


# ---------------------------------------------------------------- image folders and files

def test_image_folder_labels_from_subfolders(tmp_path: Path) -> None:
    a, b, c = _gray(), _gray(), _gray()
    _img(tmp_path / "cats" / "a.png", a)
    _img(tmp_path / "dogs" / "b.png", b)
    _img(tmp_path / "dogs" / "deep" / "c.png", c)
    _img(tmp_path / ".hidden" / "x.png", _gray())  # hidden entries are ignored
    (tmp_path / "notes.txt").write_text("not an image")
    items = load_items(tmp_path)
    assert items.keys == ["cats/a.png", "dogs/b.png", "dogs/deep/c.png"]
    assert items.labels == ["cats", "dogs", "dogs"]
    assert items.x.dtype == torch.float32 and items.x.shape == (3, 1, 6, 5) and items.is_image
    assert items.normalization == Normalization(0.0, 255.0)
    torch.testing.assert_close(items.x[:, 0], torch.from_numpy(np.stack([a, b, c])).float() / 255)


def test_flat_folder_or_single_subfolder_has_no_labels(tmp_path: Path) -> None:
    _img(tmp_path / "flat" / "a.png", _gray())
    _img(tmp_path / "flat" / "sub" / "b.png", _gray())
    _img(tmp_path / "one" / "only" / "c.png", _gray())
    assert load_items(tmp_path / "flat").labels is None  # one image at top level
    assert load_items(tmp_path / "one").labels is None  # a single class is no labelling


def test_channels_inferred_or_forced(tmp_path: Path) -> None:
    _img(tmp_path / "g" / "a.png", _gray())
    _img(tmp_path / "g" / "b.jpg", _gray())
    assert load_items(tmp_path / "g").item_shape == (1, 6, 5)
    _img(tmp_path / "g" / "c.png", _rgb())
    assert load_items(tmp_path / "g").item_shape == (3, 6, 5)  # any colour image -> RGB
    gray = load_items(tmp_path / "g", channels=1)
    assert gray.item_shape == (1, 6, 5)
    rgb = load_items(tmp_path / "g", channels=3)
    torch.testing.assert_close(rgb.x[0, 0], rgb.x[0, 2])  # gray replicated into R, G, B


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "gif", "webp", "tiff"])
def test_single_image_file_formats(tmp_path: Path, ext: str) -> None:
    arr = np.zeros((6, 5, 3), np.uint8)
    arr[:3] = (200, 30, 30)  # two flat colours survive GIF palettes and JPEG
    path = _img(tmp_path / f"x.{ext}", arr)
    items = load_items(path)
    assert items.keys == [path.as_posix()] and items.labels is None
    assert items.x.shape == (1, 3, 6, 5)
    expected = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    if ext in ("jpg", "webp"):  # lossy: close on average
        assert float((items.x[0] - expected).abs().mean()) < 0.05
    else:
        torch.testing.assert_close(items.x[0], expected, atol=1e-6, rtol=0)


def test_list_of_files_and_common_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = [_img(tmp_path / "a.png", _rgb(8, 8)), _img(tmp_path / "b.png", _rgb(16, 12))]
    with caplog.at_level(logging.WARNING):
        chosen = load_items(paths)
    assert chosen.x.shape == (2, 3, 10, 10)  # the median shorter side of 8 and 12
    assert "mixed sizes (8x8 to 16x12): resizing all to 10x10" in caplog.text and "--image-size" in caplog.text
    items = load_items([str(p) for p in paths], image_size=10)
    assert items.x.shape == (2, 3, 10, 10) and items.keys == [p.as_posix() for p in paths]
    assert load_items(paths, image_size=(4, 6), channels=1).x.shape == (2, 1, 4, 6)
    assert float(items.x.min()) >= 0 and float(items.x.max()) <= 1


@pytest.mark.parametrize("sizes, side", [([(28, 28), (32, 32)], 30), ([(37, 52), (1000, 750), (300, 400)], 64),
                                         ([(20, 90), (90, 20), (40, 40)], 20)])
def test_mixed_sizes_in_folder_get_a_default_size(tmp_path: Path, sizes, side, caplog) -> None:
    for i, (h, w) in enumerate(sizes):
        _img(tmp_path / f"{i}.png", _gray(h, w))
    with caplog.at_level(logging.WARNING):
        items = load_items(tmp_path)
    assert items.x.shape == (len(sizes), 1, side, side)
    assert caplog.text.count(f"resizing all to {side}x{side}") == 1


@pytest.mark.parametrize("resize", ["stretch", "crop"])
def test_resize_policy_keeps_or_crops_the_aspect_ratio(tmp_path: Path, resize) -> None:
    wide = np.zeros((8, 16), dtype=np.uint8)
    wide[:, 4:12] = 255  # a white centre band half as wide as the image
    path = _img(tmp_path / "wide.png", wide)
    items = load_items([path], image_size=8, resize=resize)
    assert items.preprocessing.resize == resize and items.x.shape == (1, 1, 8, 8)
    centre_share = float(items.x.mean())
    assert centre_share == pytest.approx(1.0 if resize == "crop" else 0.5, abs=0.08)


def test_corrupt_image_raise_or_skip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a.png", "c.png"):
        _img(tmp_path / name, _gray())
    (tmp_path / "b.png").write_bytes(b"\x89PNG not really")
    trunc = (tmp_path / "a.png").read_bytes()
    (tmp_path / "e.png").write_bytes(trunc[: len(trunc) // 2])  # header fine, pixels cut off
    _raises(lambda: load_items(tmp_path), "b.png", "--on-error skip")
    _raises(lambda: load_items(tmp_path, channels=1, image_size=6), "b.png")  # no header pass: decode fails
    with caplog.at_level(logging.WARNING, logger="siamese.data.loading"):
        items = load_items(tmp_path, on_error="skip")
    assert items.keys == ["a.png", "c.png"]
    assert "skipped 2 unreadable image files" in caplog.text


# ---------------------------------------------------------------- arrays and tables

def test_npy_npz_csv_sources(tmp_path: Path) -> None:
    x = RNG.normal(size=(6, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    items = load_items(tmp_path / "x.npy")
    assert items.keys == [str(i) for i in range(6)] and items.labels is None and not items.is_image
    assert float(items.x.min()) == 0.0 and abs(float(items.x.max()) - 1.0) < 1e-6

    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 10, 2, 1]), keys=np.array(list("abcdef")))
    items = load_items(tmp_path / "d.npz")
    assert items.keys == list("abcdef") and items.labels == ["0", "1", "2", "10", "2", "1"]
    codes, classes = items.label_codes()
    assert classes == ["0", "1", "2", "10"] and codes.tolist() == [0, 1, 2, 3, 2, 1]

    (tmp_path / "t.csv").write_text("f1,label,f2,key\n1,cat,2,r1\n3,,4.5,r2\n-1,dog,0,r3\n")
    items = load_items(tmp_path / "t.csv")
    assert items.keys == ["r1", "r2", "r3"] and items.labels == ["cat", None, "dog"]
    assert items.item_shape == (2,) and items.normalization == Normalization(-1.0, 5.5)
    torch.testing.assert_close(items.normalization.invert(items.x), torch.tensor([[1, 2], [3, 4.5], [-1, 0.0]]))
    assert items.labelled_mask().tolist() == [True, False, True] and items.has_labels
    plain = tmp_path / "p.csv"
    plain.write_text("a,b\n0.5,0.25\n1,0\n")
    assert load_items(plain).keys == ["0", "1"]


def test_in_memory_arrays(tmp_path: Path) -> None:
    imgs = RNG.integers(0, 256, (4, 6, 5), dtype=np.uint8)
    items = load_items(imgs, labels=[1, 2, None, 1])
    assert items.x.shape == (4, 1, 6, 5) and items.labels == ["1", "2", None, "1"]
    nhwc = RNG.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    items = load_items(torch.from_numpy(nhwc), normalization=Normalization(0, 255))
    torch.testing.assert_close(items.x, torch.from_numpy(nhwc).permute(0, 3, 1, 2).float() / 255)
    resized = load_items(nhwc, channels=1, image_size=4, normalization=Normalization(0, 255))
    assert resized.x.shape == (3, 1, 4, 4)
    assert load_items(np.arange(5.0)).item_shape == (1,)
    assert describe_source(imgs) == "in-memory array of shape (4, 6, 5)"


def test_labels_argument_forms(tmp_path: Path) -> None:
    x = np.eye(3)
    (tmp_path / "LABELS.csv").write_text("key,label\n0,a\n2,b\n1,\n")
    assert read_labels_csv(tmp_path / "LABELS.csv") == {"0": "a", "2": "b"}
    assert load_items(x, labels=tmp_path / "LABELS.csv").labels == ["a", None, "b"]
    assert load_items(x, labels={"1": 7}).labels == [None, "7", None]
    _raises(lambda: load_items(x, labels={"9": "a"}), "1 label keys", "'9'")
    items = load_items(x).with_labels({"2": "z"})
    assert items.labels == [None, None, "z"] and items.has_labels
    _raises(lambda: items.with_labels({"nope": 1}), "'nope'")


# ---------------------------------------------------------------- normalisation

def test_normalization_inferred_or_given() -> None:
    x = np.array([[2.0, 4.0], [6.0, 10.0]], np.float32)
    inferred = load_items(x)
    assert inferred.normalization == Normalization(2.0, 8.0)
    given = Normalization(offset=1.0, scale=4.0)
    items = load_items(x, normalization=given)
    assert items.normalization == given
    assert torch.equal(items.x, (torch.from_numpy(x) - 1.0) / 4.0)
    torch.testing.assert_close(given.invert(items.x), torch.from_numpy(x))
    assert load_items(x, normalization=given.to_dict()).normalization == given
    assert load_items(np.array([[0.0, 0.5], [1.0, 0.2]])).normalization == Normalization()  # already in [0, 1]
    assert load_items(np.full((3, 2), 7.0)).normalization == Normalization(7.0, 1.0)  # constant data


def test_normalization_dict_and_validation() -> None:
    norm = Normalization(3.5, 2.0)
    assert Normalization.from_dict(norm.to_dict()) == norm
    _raises(lambda: Normalization(0.0, 0.0), "scale")
    _raises(lambda: Normalization.from_dict({"offset": 1}), "'offset' and 'scale'")


@settings(max_examples=40, deadline=None)
@given(offset=st.floats(-1e3, 1e3), scale=st.floats(1e-2, 1e3),
       values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8))
def test_normalization_round_trip(offset: float, scale: float, values: list[float]) -> None:
    norm = Normalization(offset, scale)
    x = torch.tensor(values, dtype=torch.float64)
    torch.testing.assert_close(norm.invert(norm.apply(x)), x, atol=1e-9, rtol=1e-9)


def test_itemset_source_is_reused_or_renormalised() -> None:
    items = load_items(np.array([[0.0, 10.0], [5.0, 2.0]]))
    assert load_items(items) is items
    moved = load_items(items, normalization=Normalization(0.0, 20.0))
    torch.testing.assert_close(moved.x, torch.tensor([[0.0, 0.5], [0.25, 0.1]]))
    assert len(load_items(items, limit=1)) == 1


# ---------------------------------------------------------------- ItemSet

def test_itemset_subset_and_codes() -> None:
    items = load_items(np.arange(12.0).reshape(6, 2), labels=["10", "2", None, "2", "10", "1"])
    codes, classes = items.label_codes()
    assert classes == ["1", "2", "10"] and codes.tolist() == [2, 1, -1, 1, 2, 0]
    sub = items.subset([4, 0])
    assert sub.keys == ["4", "0"] and sub.labels == ["10", "10"] and torch.equal(sub.x, items.x[[4, 0]])
    masked = items.subset(items.labelled_mask())
    assert masked.keys == ["0", "1", "3", "4", "5"]
    assert len(items.subset(np.array([], dtype=np.int64))) == 0
    _raises(lambda: items.subset([6]), "0..5")
    words = load_items(np.eye(3), labels=["b", "a", "B"])
    assert words.label_codes()[1] == ["B", "a", "b"]
    _raises(lambda: ItemSet(torch.zeros(2, 3), ["a", "a"], None, Normalization(), "test"), "duplicate keys", "'a'")


# ---------------------------------------------------------------- datasets

@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="tests/data/mnist absent")
def test_mnist_idx_gz_and_plain(tmp_path: Path) -> None:
    items = load_items(f"mnist-idx:{MNIST_DIR}")
    assert items.x.shape == (10000, 1, 28, 28) and items.x.dtype == torch.float32
    assert items.labels[0] == "7" and sorted(set(items.labels)) == [str(d) for d in range(10)]
    assert items.keys[:2] == ["0", "1"] and items.normalization == Normalization(0.0, 255.0)
    assert float(items.x.min()) == 0.0 and float(items.x.max()) == 1.0
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(MNIST_DIR / f"{name}.gz") as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    plain = load_items(f"mnist-idx:{tmp_path}", split="test", limit=50)
    assert torch.equal(plain.x, items.x[:50]) and plain.labels == items.labels[:50]


def test_mnist_idx_splits_and_corrupt_files(tmp_path: Path) -> None:
    _fake_mnist(tmp_path / "m", gz=True)
    both = load_items(f"mnist-idx:{tmp_path / 'm'}")
    assert len(both) == 8 and both.keys[0] == "train-0" and both.keys[5] == "test-0"
    assert load_items(f"mnist-idx:{tmp_path / 'm'}", split="train").keys == ["0", "1", "2", "3", "4"]
    _fake_mnist(tmp_path / "bad")
    images = tmp_path / "bad" / "t10k-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes(data[:-10])
    _raises(lambda: load_items(f"mnist-idx:{tmp_path / 'bad'}", split="test"), str(images), "truncated")
    images.write_bytes((2049).to_bytes(4, "big") + data[4:])
    _raises(lambda: load_items(f"mnist-idx:{tmp_path / 'bad'}", split="test"), str(images), "magic number 2049")
    gz = tmp_path / "bad" / "train-images-idx3-ubyte"
    (tmp_path / "bad" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(gz.read_bytes())[:-20])
    gz.unlink()
    _raises(lambda: load_items(f"mnist-idx:{tmp_path / 'bad'}", split="train"), "train-images-idx3-ubyte.gz")
    (tmp_path / "empty").mkdir()
    _raises(lambda: load_items(f"mnist-idx:{tmp_path / 'empty'}"), "no MNIST idx files")


def test_sklearn_digits() -> None:
    items = load_items("sklearn:digits")
    assert len(items) == 1797 and items.item_shape == (1, 8, 8)
    assert float(items.x.min()) >= 0 and float(items.x.max()) == 1.0
    assert items.normalization == Normalization(0.0, 255.0)  # the range of 8-bit image files
    assert items.label_codes()[1] == [str(d) for d in range(10)]


def test_a_png_of_a_digit_loads_as_the_dataset_item(tmp_path: Path) -> None:
    items = load_items("sklearn:digits")
    pixels = torch.round(items.x[5] * 255).to(torch.uint8)
    write_png(pixels, str(tmp_path / "five.png"))
    again = load_items([str(tmp_path / "five.png")], preprocessing=items.preprocessing)
    assert torch.allclose(again.x[0], items.x[5], atol=1 / 255)


def test_torchvision_dataset_from_local_files(tmp_path: Path) -> None:
    _fake_mnist(tmp_path / "MNIST" / "raw")
    items = load_items("torchvision:mnist", root=tmp_path, split="test")
    assert items.x.shape == (3, 1, 28, 28) and items.labels == ["0", "1", "2"]
    assert len(load_items("torchvision:MNIST", root=tmp_path)) == 8
    _raises(lambda: load_items("torchvision:FashionMNIST", root=tmp_path), "not found under", "download")


# ---------------------------------------------------------------- errors

def _write_bad_files(tmp: Path) -> None:
    (tmp / "empty").mkdir()
    np.save(tmp / "nan.npy", np.array([[1.0, np.nan], [np.inf, 2.0]]))
    np.save(tmp / "zero.npy", np.zeros((0, 3)))
    (tmp / "nan.csv").write_text("a,b\n1,2\n3,nan\n")
    (tmp / "text.csv").write_text("a,b\n1,2\n3,x\n")
    (tmp / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (tmp / "dup.csv").write_text("key,a\nk,1\nk,2\n")
    np.savez(tmp / "noy.npz", z=np.zeros(3))
    np.savez(tmp / "badlen.npz", x=np.zeros((3, 2)), y=np.zeros(2))
    (tmp / "a.txt").write_text("hello")


V = np.zeros((3, 2))
BAD_INPUTS = {  # case: (call given the tmp folder, fragments the message must contain)
    "missing path": (lambda t: load_items(t / "nope"), ["not found", "nope"]),
    "empty folder": (lambda t: load_items(t / "empty"), ["no image files", "empty"]),
    "nan npy": (lambda t: load_items(t / "nan.npy"), ["2 NaN/inf values", "nan.npy"]),
    "nan csv": (lambda t: load_items(t / "nan.csv"), ["1 NaN/inf values", "nan.csv"]),
    "empty npy": (lambda t: load_items(t / "zero.npy"), ["empty", "zero.npy"]),
    "non-numeric csv": (lambda t: load_items(t / "text.csv"), ["text.csv line 3 (row 1)", "'b'", "'x'"]),
    "ragged csv": (lambda t: load_items(t / "ragged.csv"), ["ragged.csv line 3", "1 cells"]),
    "duplicate keys": (lambda t: load_items(t / "dup.csv"), ["duplicate keys", "'k'"]),
    "npz without x": (lambda t: load_items(t / "noy.npz"), ["no array 'x'"]),
    "npz labels length": (lambda t: load_items(t / "badlen.npz"), ["labels length mismatch", "2 labels for 3"]),
    "labels length": (lambda t: load_items(V, labels=["a"]), ["labels length mismatch"]),
    "mixed shapes": (lambda t: load_items([np.zeros(3), np.zeros(4)]), ["mixed item shapes"]),
    "unsupported file": (lambda t: load_items(t / "a.txt"), ["'.txt'", "a.txt"]),
    "unknown scheme": (lambda t: load_items("foo:bar"), ["unknown source scheme 'foo'"]),
    "unknown torchvision": (lambda t: load_items("torchvision:NotADataset"), ["NotADataset", "MNIST", "CIFAR10"]),
    "torchvision absent": (lambda t: load_items("torchvision:KMNIST", root=t / "empty"), ["--download", "--root"]),
    "unknown sklearn": (lambda t: load_items("sklearn:iris"), ["sklearn:digits"]),
    "split on folder": (lambda t: load_items(t / "empty", split="train"), ["split"]),
    "vector image_size": (lambda t: load_items(V, image_size=4), ["--image-size"]),
    "huge image_size": (lambda t: load_items(V, image_size=40000), ["--image-size 40000", "1..4096"]),
    "bad channels": (lambda t: load_items(V, channels=2), ["--channels 2"]),
    "bad on_error": (lambda t: load_items(V, on_error="ignore"), ["--on-error"]),
    "bad labels csv": (lambda t: read_labels_csv(t / "nan.csv"), ["key,label"]),
    "bad chunk size": (lambda t: list(iter_item_chunks(V, 0)), ["--chunk-size"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_raise_one_line_siamese_error(tmp_path: Path, case: str) -> None:
    _write_bad_files(tmp_path)
    call, fragments = BAD_INPUTS[case]
    _raises(lambda: call(tmp_path), *fragments)


# ---------------------------------------------------------------- chunks

def test_iter_item_chunks_matches_load_items(tmp_path: Path) -> None:
    for i in range(5):
        _img(tmp_path / "imgs" / ("a" if i < 3 else "b") / f"{i}.png", _rgb(4 + i, 5))
    np.save(tmp_path / "x.npy", RNG.normal(size=(7, 3)))
    cases = [(tmp_path / "imgs", {"image_size": 4}), (tmp_path / "x.npy", {}),
             ("sklearn:digits", {"limit": 5}), (np.arange(7.0), {"labels": list("abcdefg")})]
    for source, kwargs in cases:
        whole = load_items(source, **kwargs)
        stream = iter_item_chunks(source, 2, **kwargs)
        assert stream.total == len(whole)  # known before the first chunk is read
        chunks = list(stream)
        assert [len(c) for c in chunks] == [2] * (len(whole) // 2) + [1] * (len(whole) % 2)
        assert torch.equal(torch.cat([c.x for c in chunks]), whole.x)
        assert sum((c.keys for c in chunks), []) == whole.keys
        assert sum((c.labels or [] for c in chunks), []) == (whole.labels or [])
        assert {c.normalization for c in chunks} == {whole.normalization}


def test_iter_item_chunks_skips_bad_files_and_validates_eagerly(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a.png", "b.png", "d.png"):
        _img(tmp_path / name, _gray())
    (tmp_path / "c.png").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="siamese.data.loading"):
        stream = iter_item_chunks(tmp_path, 2, on_error="skip", channels=1, image_size=(6, 5))
        chunks = list(stream)
    assert [c.keys for c in chunks] == [["a.png", "b.png"], ["d.png"]]
    assert stream.total == 4  # an upper bound: the unreadable file is only found while reading
    assert "skipped 1 unreadable image files" in caplog.text
    _raises(lambda: iter_item_chunks(tmp_path / "missing", 2), "missing")  # before the first next()


@pytest.mark.parametrize("source, expected", [
    ("sklearn:digits", "sklearn digits"),
    ("mnist-idx:some/dir", "MNIST idx files in some/dir"),
    ("torchvision:CIFAR10", "torchvision CIFAR10"),
    (np.zeros((4, 3)), "in-memory array of shape (4, 3)"),
])
def test_describe_source(source: object, expected: str) -> None:
    assert describe_source(source).startswith(expected)
