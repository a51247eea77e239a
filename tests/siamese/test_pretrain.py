"""Pretraining end to end on tiny data: history, checkpoints, exact resume, save/load."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from siamese import AutoencoderConfig, SiameseError, TrainConfig, embed, load_items, load_model, pretrain
from siamese.training.finetune import FINETUNE_TRAIN, FinetuneConfig, finetune
from siamese.training.loop import fit, lr_at
from siamese.training.pretrain import MAP_PRETRAIN_EPOCHS, PRETRAIN_EPOCHS, default_pretrain_epochs


@pytest.fixture(scope="module")
def tiny_images():
    rng = np.random.default_rng(0)
    x = (rng.random((60, 1, 8, 8)) > 0.6).astype(np.float32)
    return load_items(x)


CONFIG = AutoencoderConfig(variant="denoising", latent_dim=4, widths=(4, 8), hidden=16)
TRAIN = TrainConfig(epochs=3, batch_size=16, seed=7)


def test_pretrain_writes_a_complete_model_directory(tiny_images, tmp_path):
    model = pretrain(tiny_images, CONFIG, TRAIN, out=tmp_path / "m", progress=False)
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "history.csv", "checkpoint"} <= files
    record = json.loads((tmp_path / "m" / "config.json").read_text())
    assert record["fingerprint"] == model.fingerprint()
    assert record["autoencoder"]["variant"] == "denoising" and record["info"]["normalization"]
    assert {"torch", "faiss", "numpy", "siamese"} <= set(record["versions"])
    assert len((tmp_path / "m" / "history.csv").read_text().splitlines()) == 1 + TRAIN.epochs


def test_save_load_gives_bit_identical_embeddings(tiny_images, tmp_path):
    model = pretrain(tiny_images, CONFIG, TRAIN, progress=False)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert np.array_equal(embed(model, tiny_images), embed(loaded, tiny_images))
    assert loaded.fingerprint() == model.fingerprint()


def test_same_seed_same_weights_other_seed_differs(tiny_images):
    a = pretrain(tiny_images, CONFIG, TRAIN, progress=False)
    b = pretrain(tiny_images, CONFIG, TRAIN, progress=False)
    c = pretrain(tiny_images, CONFIG, TrainConfig(epochs=3, batch_size=16, seed=8), progress=False)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_images, tmp_path, monkeypatch):
    full = pretrain(tiny_images, CONFIG, TRAIN, out=tmp_path / "full", progress=False)

    import siamese.training.loop as train_module

    calls = {"n": 0}
    original = train_module.nn.utils.clip_grad_norm_

    def crash_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 1 has 3 steps (54 items / 16): this is mid-epoch 2
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module.nn.utils, "clip_grad_norm_", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_images, CONFIG, TRAIN, out=tmp_path / "cut", progress=False)
    monkeypatch.setattr(train_module.nn.utils, "clip_grad_norm_", original)
    state = tmp_path / "cut" / "checkpoint" / "state.json"
    meta = json.loads(state.read_text())
    assert meta["epoch"] == 1
    for damaged in ({k: v for k, v in meta.items() if k != "step"}, {**meta, "param_groups": "x"}):
        state.write_text(json.dumps(damaged))
        with pytest.raises(SiameseError, match="incomplete or damaged.*delete it"):
            pretrain(tiny_images, CONFIG, TRAIN, out=tmp_path / "cut", resume=True, progress=False)
    state.write_text(json.dumps(meta))
    resumed = pretrain(tiny_images, CONFIG, TRAIN, out=tmp_path / "cut", resume=True, progress=False)
    assert resumed.fingerprint() == full.fingerprint()
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_and_schedule():
    config = TrainConfig(epochs=10, lr=1.0, warmup=0.2)
    rates = [lr_at(s, 100, config) for s in range(100)]
    assert rates[0] < rates[19] and max(rates) == pytest.approx(1.0, rel=0.05) and rates[-1] < 0.01


@pytest.mark.parametrize("damage, match", [
    ("config", "not valid JSON"),
    ("weights", "safetensors"),
    ("fingerprint", "fingerprint"),
    ("missing", "missing"),
])
def test_damaged_model_directories_give_clear_errors(tiny_images, tmp_path, damage, match):
    pretrain(tiny_images, CONFIG, TrainConfig(epochs=1, batch_size=16), out=tmp_path / "m", progress=False)
    config, weights = tmp_path / "m" / "config.json", tmp_path / "m" / "model.safetensors"
    if damage == "config":
        config.write_text("{not json")
    elif damage == "weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "fingerprint":
        record = json.loads(config.read_text())
        record["fingerprint"] = "0" * 64
        config.write_text(json.dumps(record))
    else:
        weights.unlink()
    with pytest.raises(SiameseError, match=match):
        load_model(tmp_path / "m")


def test_pretrain_rejects_bad_input(tmp_path):
    with pytest.raises(SiameseError):
        pretrain(np.zeros((5, 4), dtype=np.float32), CONFIG)
    with pytest.raises(SiameseError, match="resume"):
        pretrain(load_items(np.zeros((30, 4), dtype=np.float32)), AutoencoderConfig(latent_dim=2), resume=True)
    with pytest.raises(SiameseError, match="does not exist"):
        load_model(tmp_path / "nothing")


def test_later_config_fields_default_to_their_as_before_values():
    """A config.json written before a field existed reads as its default, which must mean "as before"."""
    import dataclasses

    from siamese.models.fingerprint import LATER_FIELDS

    defaults = {f.name: f.default for f in dataclasses.fields(AutoencoderConfig)}
    assert all(defaults[name] in as_before for name, as_before in LATER_FIELDS.items())


@pytest.mark.parametrize("era", ["before the later fields", "views always described"])
def test_models_saved_by_earlier_versions_still_load(tiny_images, tmp_path, era):
    """Config fields added later do not change the fingerprints of models saved before them."""
    from siamese.models.fingerprint import LATER_FIELDS, fingerprint

    model = pretrain(tiny_images, CONFIG, TrainConfig(epochs=1, batch_size=16), out=tmp_path / "m", progress=False)
    config = tmp_path / "m" / "config.json"
    record = json.loads(config.read_text())
    if era == "before the later fields":
        record["autoencoder"] = {k: v for k, v in record["autoencoder"].items() if k not in LATER_FIELDS}
    else:
        record["autoencoder"].pop("augment_strength")
        record["fingerprint"] = fingerprint(model, ("view_weight", "view_temperature"))
    config.write_text(json.dumps(record))
    assert load_model(tmp_path / "m").fingerprint() == model.fingerprint()
    record["autoencoder"]["view_weight"] = 3.0  # a described change is still caught
    config.write_text(json.dumps(record))
    with pytest.raises(SiameseError, match="fingerprint"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("latent_dim, expected", [(2, MAP_PRETRAIN_EPOCHS), (8, PRETRAIN_EPOCHS)])
def test_epochs_default_to_the_stage_and_latent_size(tmp_path, latent_dim, expected):
    rng = np.random.default_rng(0)
    items = load_items(rng.normal(size=(40, 6)).astype(np.float32), labels=[str(i % 2) for i in range(40)])
    config = AutoencoderConfig(latent_dim=latent_dim, widths=(8,), neighbour_weight=0.0)
    model = pretrain(items, config, TrainConfig(batch_size=20, val_fraction=0), out=tmp_path / "m", progress=False)
    assert model.info["pretrain"]["train"]["epochs"] == expected == default_pretrain_epochs(latent_dim)
    assert len((tmp_path / "m" / "history.csv").read_text().splitlines()) == expected + 1
    tuned = finetune(model, items, labels=True, train=TrainConfig(batch_size=20, val_fraction=0),
                     config=FinetuneConfig(pseudo_pairs=None, self_training=None), progress=False)
    assert tuned.info["finetune"]["train"]["epochs"] == FINETUNE_TRAIN.epochs
    with pytest.raises(SiameseError, match="epochs"):
        fit(model, lambda m, batch, g: (torch.zeros((), requires_grad=True), {}), lambda e, g: [], 0, TrainConfig())
