"""The model carries its preprocessing: a folder of mixed photos (sizes 37..1000 px; grey, RGB, RGBA
and palette GIF) trains without --image-size, and every later command and API call applies the
model's own size, resize policy, channels and normalisation to new items of any size."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese import embed, load_items, load_model
from siamese.cli import main
from siamese.data.preprocessing import Preprocessing
from siamese.errors import SiameseError

SIZES = [(37, 52), (1000, 750), (120, 90), (64, 64), (300, 400), (80, 200)]
MODES = ["L", "RGB", "RGBA", "P"]
TINY = ["--widths", "4", "8", "--latent-dim", "4", "--epochs", "1", "--batch-size", "8", "-q"]


def photo(path: Path, h: int, w: int, mode: str, brightness: int, rng) -> Path:
    pixels = np.clip(rng.normal(brightness, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    path = path.with_suffix(".gif" if mode == "P" else ".png")
    Image.fromarray(pixels).convert(mode).save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """photos/{dark,bright}/*: 8 images each, every size and colour mode mixed."""
    root = tmp_path_factory.mktemp("first-hour") / "photos"
    rng = np.random.default_rng(0)
    for label, brightness in (("dark", 50), ("bright", 200)):
        (root / label).mkdir(parents=True)
        for i in range(8):
            photo(root / label / str(i), *SIZES[i % len(SIZES)], MODES[i % len(MODES)], brightness, rng)
    return root


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    assert main(["pretrain", str(photos), "--out", str(out / "model"), *TINY]) == 0
    assert main(["index", "build", str(out / "model"), str(photos), "--out", str(out / "index"), "-q"]) == 0
    return out


def test_mixed_folder_trains_at_a_default_size_said_in_one_line(photos, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert main(["pretrain", str(photos), "--out", str(tmp_path / "m"), *TINY]) == 0
    notes = [r.getMessage() for r in caplog.records if "mixed sizes" in r.getMessage()]
    assert len(notes) == 1 and "37x52 to 1000x750" in notes[0] and "64x64" in notes[0], caplog.text
    record = json.loads((tmp_path / "m" / "config.json").read_text())["info"]["preprocessing"]
    assert record["image_size"] == [64, 64] and record["channels"] == 3 and record["resize"] == "stretch"


def test_every_command_applies_the_models_pipeline(trained, photos, tmp_path, capsys):
    """No --image-size anywhere after pretraining, and queries of other sizes than the training items."""
    model, index = str(trained / "model"), str(trained / "index")
    query = photo(tmp_path / "query", 500, 333, "RGBA", 200, np.random.default_rng(1))
    small = photo(tmp_path / "small", 20, 30, "L", 50, np.random.default_rng(2))
    commands = [
        ["query", index, model, str(query), str(small), "-k", "3"],
        ["classify", index, model, str(photos), "-k", "3"],
        ["embed", model, str(photos), "--out", str(tmp_path / "z.npz")],
        ["reconstruct", model, str(photos / "dark"), "--out", str(tmp_path / "recon")],
        ["anomaly", model, str(photos), "--index", index, "--out", str(tmp_path / "scores.csv")],
        ["index", "add", index, model, str(tmp_path / "more")],
    ]
    (tmp_path / "more").mkdir()
    photo(tmp_path / "more" / "extra", 90, 45, "P", 120, np.random.default_rng(3))
    for argv in commands:
        assert main([*argv, "-q"]) == 0, argv
    out = capsys.readouterr()
    assert "query" in out.out and "overrides" not in out.err


def test_python_api_resizes_items_of_any_size(trained, tmp_path):
    model = load_model(trained / "model")
    assert model.preprocessing == Preprocessing((64, 64), 3, "stretch", model.preprocessing.normalization)
    big = photo(tmp_path / "big", 700, 300, "L", 90, np.random.default_rng(4))
    as_loaded = embed(model, load_items([big]))  # grey 700x300: converted and resized by embed
    through_pipeline = embed(model, load_items([big], preprocessing=model.preprocessing))
    assert as_loaded.shape == (1, 4)
    np.testing.assert_allclose(as_loaded, through_pipeline, atol=1e-5)


def test_explicit_options_override_with_a_note_or_say_why_they_cannot(trained, photos, caplog):
    model = load_model(trained / "model")
    with caplog.at_level(logging.WARNING):
        items = load_items(photos / "dark", preprocessing=model.preprocessing, resize="crop")
    assert items.item_shape == (3, 64, 64) and items.resize == "crop"
    assert "--resize crop overrides the model's stretch" in caplog.text
    for option, flag in (({"channels": 1}, "--channels 1"), ({"image_size": 32}, "--image-size 32 32")):
        with pytest.raises(SiameseError, match=f"{flag} does not fit the model, which takes 64x64 RGB"):
            load_items(photos / "dark", preprocessing=model.preprocessing, **option)


def test_crop_policy_is_recorded_and_reused(photos, tmp_path):
    out = tmp_path / "cropped"
    assert main(["pretrain", str(photos), "--out", str(out), "--image-size", "24", "--resize", "crop", *TINY]) == 0
    model = load_model(out)
    assert model.preprocessing.resize == "crop" and model.preprocessing.image_size == (24, 24)
    items = load_items(photos / "bright", preprocessing=model.preprocessing)
    assert items.resize == "crop" and items.item_shape == (3, 24, 24)


def test_folder_where_an_item_file_is_expected(trained, photos, capsys):
    assert main(["query", str(trained / "index"), str(trained / "model"), str(photos / "dark")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a folder, not an image file" in err and "*.png" in err


@pytest.mark.parametrize("record, why", [
    ({"image_size": [64, 64], "channels": 3, "resize": "warp", "normalization": {"offset": 0, "scale": 255}},
     "resize"),
    ({"image_size": [10 ** 9, 64], "channels": 3, "resize": "stretch", "normalization": {"offset": 0, "scale": 1}},
     "image_size"),
    ({"image_size": [64, 64], "channels": 2, "resize": "stretch", "normalization": {"offset": 0, "scale": 1}},
     "channels"),
    ({"image_size": [32, 32], "channels": 3, "resize": "stretch", "normalization": {"offset": 0, "scale": 255}},
     "does not match"),
    ({"image_size": "64", "channels": 3, "resize": "stretch", "normalization": {"offset": 0, "scale": 255}},
     "image_size"),
    ([1, 2], "preprocessing"),
])
def test_hostile_preprocessing_records_are_refused(trained, tmp_path, record, why):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained / "model", copy)
    config = json.loads((copy / "config.json").read_text())
    config["info"]["preprocessing"] = record
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(SiameseError, match=why):
        load_model(copy, verify=False)
