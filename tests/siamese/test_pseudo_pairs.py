"""Pseudo-pair mining in the latent space and its fine-tuning term."""

import numpy as np
import pytest

from siamese import AutoencoderConfig, SiameseError, TrainConfig, load_items, pretrain
from siamese.training.finetune import FinetuneConfig, finetune
from siamese.data.pairs import select_per_class
from siamese.training.pseudo_pairs import PseudoPairConfig, PseudoPairTerm, mine_pseudo_pairs, mutual_neighbours


def clusters(n=100, d=8, gap=10.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n)
    return (rng.normal(0, 1, (2 * n, d)) + gap * y[:, None]).astype(np.float32), y


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("seed", [0, 1])
def test_strict_mining_on_separated_clusters_gives_only_correct_pairs(metric, seed):
    z, y = clusters(seed=seed)
    if metric == "cosine":
        z = z - z.mean(axis=0)  # clusters in opposite directions
    pairs = mine_pseudo_pairs(z, PseudoPairConfig(k=5, positive_quantile=0.5, negative_quantile=0.9), metric=metric,
                              seed=seed)
    same = y[pairs.a] == y[pairs.b]
    assert pairs.n_positive > 50 and pairs.n_negative == pairs.n_positive
    assert np.array_equal(same, pairs.label == 1)  # every positive joins one cluster, every negative both


def test_mutual_neighbours_match_brute_force():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 3)).astype(np.float32)
    d = np.linalg.norm(z[:, None] - z[None], axis=2)
    np.fill_diagonal(d, np.inf)
    knn = np.argsort(d, axis=1)[:, :4]
    expected = {(i, j) for i in range(40) for j in knn[i] if i < j and i in knn[j]}
    i, j, dist = mutual_neighbours(z, 4)
    assert set(zip(i.tolist(), j.tolist())) == expected
    np.testing.assert_allclose(dist, d[i, j], rtol=1e-5)


def test_candidates_and_ratio():
    z, _ = clusters()
    candidates = np.arange(0, 200, 2)
    pairs = mine_pseudo_pairs(z, PseudoPairConfig(negatives_per_positive=0.5), candidates=candidates)
    assert set(pairs.items().tolist()) <= set(candidates.tolist())
    assert pairs.n_negative == round(0.5 * pairs.n_positive)
    assert mine_pseudo_pairs(z[:2], PseudoPairConfig()) is None


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"positive_quantile": 0}, {"negative_quantile": 1.5},
                                    {"negatives_per_positive": -1}, {"pairs_per_step": 1}])
def test_bad_config(kwargs):
    with pytest.raises(SiameseError):
        PseudoPairConfig(**kwargs)


@pytest.mark.parametrize("refresh", [False, True])
def test_finetune_uses_mined_pairs(refresh, monkeypatch):
    x, y = clusters(n=40, d=12, gap=2.0)
    items = load_items(x, labels=[str(v) for v in y])
    model = pretrain(items, AutoencoderConfig(variant="plain", latent_dim=4, widths=(16,)),
                     TrainConfig(epochs=1, batch_size=32), progress=False)
    mined = []
    original = PseudoPairTerm.mine

    def spy(self, m, epoch):
        original(self, m, epoch)
        mined.append((epoch, self.pairs))

    monkeypatch.setattr(PseudoPairTerm, "mine", spy)
    config = FinetuneConfig(pseudo_pairs=PseudoPairConfig(k=3, refresh=refresh))
    tuned = finetune(model, items, labels=True, labels_per_class=3, config=config,
                     train=TrainConfig(epochs=2, batch_size=32, val_fraction=0.0), progress=False)
    assert [e for e, _ in mined] == [0, 1]
    assert mined[0][1] is not None and mined[0][1].n_positive > 0
    labelled = np.flatnonzero(select_per_class(items.label_codes()[0], 3, seed=0))  # finetune's own choice
    assert len(labelled) == 6 and not np.isin(mined[0][1].items(), labelled).any()  # mined among unlabelled only
    assert tuned.info["finetune"]["config"]["pseudo_pairs"]["refresh"] is refresh
    if not refresh:
        assert mined[1][1] is mined[0][1]  # mined once in the pretrained space


def test_cli_flags(tmp_path_factory, tmp_path, capsys):
    import json

    import tiny_workspace
    from siamese.cli import main

    root = tiny_workspace.shared(tmp_path_factory)
    code = main(["finetune", str(root / "model"), str(root / "images"), "--labels", "items", "--labels-per-class", "3",
                 "--pseudo-pairs", "on", "--pseudo-k", "3", "--pseudo-refresh", "--epochs", "1", "--batch-size", "8",
                 "--out", str(tmp_path / "ft"), "-q"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "ft" / "config.json").read_text())["info"]["finetune"]["config"]["pseudo_pairs"]
    assert config["k"] == 3 and config["refresh"] is True
    assert main(["finetune", str(root / "model"), str(root / "images"), "--labels", "items", "--pseudo-pairs", "on",
                 "--pseudo-k", "0", "--out", str(tmp_path / "bad"), "-q"]) == 2
    assert main(["finetune", str(root / "model"), str(root / "images"), "--labels", "items", "--labels-per-class", "3",
                 "--pseudo-pairs", "off", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "off"),
                 "-q"]) == 0
    assert json.loads((tmp_path / "off" / "config.json").read_text())["info"]["finetune"]["config"]["pseudo_pairs"] is None
