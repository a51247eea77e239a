"""Self-training: a second fine-tuning round on the given plus the most confident propagated labels."""

import csv
from functools import partial

import numpy as np
import pytest

from siamese import AutoencoderConfig, SiameseError, TrainConfig, load_items, pretrain
from siamese.cli import main
from siamese.data.pairs import pairs_from_labels
from siamese.models.saving import save_model
from siamese.training.finetune import FinetuneConfig, adaptive_metric_weight, finetune
from siamese.training.self_training import SelfTrainingConfig, add_confident_labels


@pytest.fixture(scope="module")
def three_clusters():
    """Three well-separated Gaussian clusters in 16-D, 50 items each; labels "a"/"b"/"c"."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (3, 16))
    y = np.repeat([0, 1, 2], 50)
    x = (centers[y] + rng.normal(0, 1, (150, 16))).astype(np.float32)
    return load_items(x, labels=[str("abc"[v]) for v in y])


@pytest.fixture(scope="module")
def pretrained(three_clusters):
    config = AutoencoderConfig(variant="plain", latent_dim=4, widths=(32,))
    return pretrain(three_clusters, config, TrainConfig(epochs=5, batch_size=32), progress=False)


FAST = TrainConfig(epochs=2, batch_size=32, lr=3e-3)


@pytest.mark.parametrize("config, n_labelled, n_items, runs", [
    (SelfTrainingConfig(), 3, 150, True),  # 2% labelled
    (SelfTrainingConfig(), 8, 150, False),  # 5.3%: the labels alone reach nearly every item
    (SelfTrainingConfig(below_share=None), 8, 150, True),  # --self-training on
    (SelfTrainingConfig(below_share=None), 150, 150, False),  # nothing left to propagate to
])
def test_second_round_runs_only_with_few_labels(config, n_labelled, n_items, runs):
    assert config.applies(n_labelled, n_items) is runs


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.5, float("nan")])
def test_bad_keep_share_names_its_flag(keep):
    with pytest.raises(SiameseError, match="--self-training-keep"):
        SelfTrainingConfig(keep=keep)


@pytest.mark.parametrize("keep", [0.5, 1.0])
def test_confident_labels_are_added_and_given_ones_kept(three_clusters, pretrained, keep):
    truth = three_clusters.label_codes()[0]
    codes = np.full(len(truth), -1)
    given = np.array([0, 50, 100])  # one item per cluster
    codes[given] = truth[given]
    x = three_clusters.x
    result, summary = add_confident_labels(pretrained, x, codes, SelfTrainingConfig(keep=keep), metric="l2")
    added = np.flatnonzero((result >= 0) & (codes < 0))
    assert len(added) == summary["n_propagated_labels"] == round(keep * 147)
    assert (result[given] == truth[given]).all()
    assert np.mean(result[added] == truth[added]) > 0.95  # the clusters are far apart
    assert (codes[codes < 0] == -1).all()  # the input is not changed


def test_few_labels_fine_tune_twice_and_record_it(three_clusters, pretrained, tmp_path):
    out = tmp_path / "tuned"
    tuned = finetune(pretrained, three_clusters, labels=True, labels_per_class=1, train=FAST, progress=False,
                     out=out)
    record = tuned.info["finetune"]
    assert record["n_labelled"] == 3
    assert record["self_training"]["n_propagated_labels"] == round(0.8 * 147)
    assert record["self_training"]["first_round_metric_weight"] == round(adaptive_metric_weight(3 / 150), 2)
    assert record["config"]["metric_weight"] > 10.0  # the second round's weight follows its larger labelled share
    assert record["config"]["self_training"] == SelfTrainingConfig().to_dict()
    with (out / "labels-used.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3  # the given labels only: they are what an index may trust
    assert record["val_reconstruction_before"] == pytest.approx(
        finetune(pretrained, three_clusters, labels=True, labels_per_class=1, train=FAST, progress=False,
                 config=FinetuneConfig(self_training=None)).info["finetune"]["val_reconstruction_before"])


def test_self_training_off_keeps_one_round(three_clusters, pretrained):
    tuned = finetune(pretrained, three_clusters, labels=True, labels_per_class=1, train=FAST, progress=False,
                     config=FinetuneConfig(self_training=None))
    assert tuned.info["finetune"]["self_training"] is None
    assert tuned.info["finetune"]["config"]["metric_weight"] == round(adaptive_metric_weight(3 / 150), 2)


def test_self_training_on_with_a_pairs_file_is_refused(three_clusters, pretrained):
    pairs = pairs_from_labels(three_clusters.label_codes()[0], 20, seed=0)
    with pytest.raises(SiameseError, match="--self-training on"):
        finetune(pretrained, three_clusters, pairs=pairs, train=FAST, progress=False,
                 config=FinetuneConfig(self_training=SelfTrainingConfig(below_share=None)))
    tuned = finetune(pretrained, three_clusters, pairs=pairs, train=FAST, progress=False)  # auto: one round
    assert tuned.info["finetune"]["self_training"] is None


def test_cli_says_what_the_second_round_added(three_clusters, pretrained, tmp_path, capsys):
    data = tmp_path / "items.npy"
    np.save(data, three_clusters.x.numpy())
    labels = tmp_path / "labels.csv"
    labels.write_text("key,label\n0,a\n50,b\n100,c\n")
    save_model(pretrained, tmp_path / "model")
    code = main(["finetune", str(tmp_path / "model"), str(data), "--labels", str(labels), "--out",
                 str(tmp_path / "tuned"), "--epochs", "1", "--batch-size", "32", "-q"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "with 118 propagated labels added (self-training" in printed
    assert main(["finetune", str(tmp_path / "model"), str(data), "--labels", str(labels), "--out",
                 str(tmp_path / "bad"), "--self-training-keep", "0", "-q"]) != 0
    assert "--self-training-keep" in capsys.readouterr().err


@pytest.mark.parametrize("config", [FinetuneConfig(), FinetuneConfig(self_training=None)], ids=["two-rounds", "one"])
def test_resume_in_the_last_round_matches_an_uninterrupted_run(three_clusters, pretrained, config, tmp_path,
                                                               monkeypatch):
    """Also: the pseudo-pairs of a resumed run are those of the first epoch (they used to be drawn anew)."""
    import siamese.training.loop as loop

    original = loop.nn.utils.clip_grad_norm_
    calls = {"n": 0, "crash_at": None}

    def counting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["crash_at"]:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop.nn.utils, "clip_grad_norm_", counting)
    run = partial(finetune, pretrained, three_clusters, labels=True, labels_per_class=1, train=FAST, progress=False,
                  config=config)
    full = run(out=tmp_path / "full")
    calls["n"], calls["crash_at"] = 0, calls["n"]  # the last step: the last round's last epoch
    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut")
    calls["crash_at"] = None
    resumed = run(out=tmp_path / "cut", resume=True)
    assert resumed.fingerprint() == full.fingerprint()
    assert resumed.info["finetune"]["self_training"] == full.info["finetune"]["self_training"]
    assert (full.info["finetune"]["self_training"] is None) == (config.self_training is None)
