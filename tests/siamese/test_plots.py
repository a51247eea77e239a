"""Figures: every plot writes a readable PNG, accepts images and vectors, and rejects bad input."""

import logging
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from matplotlib.figure import Figure

from siamese import SiameseError, plots
from siamese.plots import charts as plot_charts, common as plot_common, grids as plot_grids
from siamese.plots.common import _sorted_labels
from siamese.plots.grids import _as_displayable
from siamese.plots import (
    plot_curves,
    plot_image_grid,
    plot_latent,
    plot_neighbors,
    plot_reconstructions,
    plot_roc,
    plot_score_histogram,
)

KINDS = {"gray8": (1, 8, 8), "rgb32": (3, 32, 32), "vec20": (20,), "vec64": (64,)}


def items(*batch, kind="gray8", seed=0):
    return np.random.default_rng(seed).random((*batch, *KINDS[kind]))


def assert_png(path):
    path = Path(path)
    assert path.is_file()
    assert path.read_bytes()[:4] == b"\x89PNG"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0
    assert not list(path.parent.glob(f".{path.name}.tmp-*"))  # atomic write left no temp file


def write_history(tmp_path, val=True, parts=True, epochs=6):
    columns = ["epoch", "train_loss"] + (["recon", "kl"] if parts else []) + (["val_loss"] if val else [])
    columns += ["lr", "seconds", "items_per_second"]
    lines = [",".join(columns)]
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": 1 / e, "recon": 0.8 / e, "kl": 0.2 / e + 0.01, "val_loss": 1.1 / e,
               "lr": 1e-3, "seconds": 2.0, "items_per_second": 500.0}
        lines.append(",".join(str(row[c]) for c in columns))
    path = tmp_path / "history.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- items


@pytest.mark.parametrize("kind, shape, cmap", [
    ("gray8", (8, 8), "gray"), ("rgb32", (32, 32, 3), None), ("vec20", (1, 20), "gray"), ("vec64", (8, 8), "gray"),
])
def test_as_displayable(kind, shape, cmap):
    item = items(kind=kind)
    shown, used = _as_displayable(item)
    assert shown.shape == shape and used == cmap
    if kind == "rgb32":
        assert np.array_equal(shown[2, 5], item[:, 2, 5])


@pytest.mark.parametrize("kind", KINDS)
def test_neighbors(tmp_path, kind):
    q, k = 2, 4
    distances = np.sort(np.random.default_rng(1).random((q, k)) * 3, axis=1)
    distances[1, -1] = np.inf  # a missing neighbour (FAISS pads with inf) still draws
    labels = [["cat", "dog", None, "cat"], ["7", "1", "7", "7"]]
    out = plot_neighbors(items(q, kind=kind), items(q, k, kind=kind, seed=2), tmp_path / "deep" / "nn.png",
                         distances=distances, neighbor_labels=labels, query_labels=["cat", None])
    assert out == tmp_path / "deep" / "nn.png"
    assert_png(out)


def test_neighbors_without_extras(tmp_path):
    assert_png(plot_neighbors(items(1), items(1, 9), tmp_path / "nn.png"))


@pytest.mark.parametrize("kind", KINDS)
def test_reconstructions(tmp_path, kind):
    x = items(20, kind=kind)
    assert_png(plot_reconstructions(x, np.clip(x + 0.1, 0, 1), tmp_path / "recon.png", n=6))


def test_reconstructions_of_standardised_features(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 20))  # outside [0, 1]: colours rescale
    assert_png(plot_reconstructions(x, x * 0.9, tmp_path / "recon.png"))


@pytest.mark.parametrize("kind", KINDS)
def test_image_grid(tmp_path, kind):
    assert_png(plot_image_grid(items(7, kind=kind), tmp_path / "grid.png", titles=[f"#{i}" for i in range(7)],
                               title="samples"))


def test_image_grid_columns(tmp_path):
    assert_png(plot_image_grid(items(12), tmp_path / "grid.png", ncols=4))


# ---------------------------------------------------------------- latent map


def clustered(n, d, seed=0):
    rng = np.random.default_rng(seed)
    labels = [str(i % 3) for i in range(n)]
    z = rng.normal(size=(n, d)) + np.array([int(label) * 4.0 for label in labels])[:, None]
    return z, labels


@pytest.mark.parametrize("with_labels", [False, True])
def test_latent_2d(tmp_path, with_labels):
    z, labels = clustered(60, 2)
    out = plot_latent(z, labels if with_labels else None, tmp_path / "latent.png")
    assert_png(out)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_latent_projected(tmp_path, method, caplog):
    z, labels = clustered(100, 10)
    labels[::7] = [None] * len(labels[::7])
    with caplog.at_level(logging.INFO, logger="siamese.plots.charts"):
        assert_png(plot_latent(z, labels, tmp_path / "latent.png", method=method, title="test"))
    assert f"with {method}" in caplog.text


def test_latent_auto_uses_pca_beyond_max_points_and_subsamples(tmp_path, caplog):
    z, labels = clustered(300, 5)
    with caplog.at_level(logging.INFO, logger="siamese.plots.charts"):
        assert_png(plot_latent(z, labels, tmp_path / "latent.png", max_points=120))
    assert "subsample of 120 of 300" in caplog.text and "with pca" in caplog.text


def test_latent_1d_and_all_unlabelled(tmp_path):
    assert_png(plot_latent(np.arange(10.0)[:, None], [None] * 10, tmp_path / "latent.png"))


def test_latent_many_labels(tmp_path):
    z = np.random.default_rng(0).normal(size=(90, 2))
    assert_png(plot_latent(z, [f"c{i % 45}" for i in range(90)], tmp_path / "latent.png"))


def test_labels_sort_numeric_aware():
    assert _sorted_labels(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert _sorted_labels(["class10", "class2", "Bird"]) == ["Bird", "class2", "class10"]


# ---------------------------------------------------------------- curves, histograms, ROC


@pytest.mark.parametrize("val, parts", [(True, True), (False, True), (True, False), (False, False)])
def test_curves(tmp_path, val, parts):
    assert_png(plot_curves(write_history(tmp_path, val=val, parts=parts), tmp_path / "curves.png"))


def test_curves_single_epoch(tmp_path):
    assert_png(plot_curves(write_history(tmp_path, epochs=1), tmp_path / "curves.png"))


@pytest.mark.parametrize("text", [None, "", "epoch,train_loss\n", "epoch,loss\n1,0.5\n", "epoch,train_loss\n1,abc\n"])
def test_curves_bad_history(tmp_path, text):
    history = tmp_path / "history.csv"
    if text is not None:
        history.write_text(text)
    with pytest.raises(SiameseError, match="history"):
        plot_curves(history, tmp_path / "curves.png")


@pytest.mark.parametrize("labelled", [False, True])
def test_score_histogram(tmp_path, labelled):
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(1, 0.3, 200), rng.normal(3, 0.5, 10)])
    is_anomaly = np.arange(210) >= 200 if labelled else None
    assert_png(plot_score_histogram(scores, tmp_path / "hist.png", is_anomaly=is_anomaly, threshold=2.0,
                                    score_name="reconstruction error"))


def test_score_histogram_constant(tmp_path):
    assert_png(plot_score_histogram(np.ones(5), tmp_path / "hist.png"))


@pytest.mark.parametrize("higher_is_positive", [False, True])
def test_roc(tmp_path, higher_is_positive, caplog):
    rng = np.random.default_rng(0)
    positive = np.arange(100) < 40
    distances = np.where(positive, rng.normal(0.5, 0.3, 100), rng.normal(1.5, 0.3, 100))
    with caplog.at_level(logging.INFO, logger="siamese.plots.charts"):
        assert_png(plot_roc(distances, positive, tmp_path / "roc.png", threshold=1.0,
                            higher_is_positive=higher_is_positive))
    auc = float(caplog.text.split("ROC AUC ")[1].split()[0])
    assert (auc < 0.1) if higher_is_positive else (auc > 0.9)


# ---------------------------------------------------------------- bad input


GOOD = items(3)


@pytest.mark.parametrize("call, match", [
    (lambda p: plot_latent(np.zeros((0, 4)), path=p), "empty"),
    (lambda p: plot_latent(np.array([[0.0, np.nan], [1, 2]]), path=p), "NaN"),
    (lambda p: plot_latent(np.zeros(5), path=p), "2-D"),
    (lambda p: plot_latent(np.zeros((2, 2, 2)), path=p), "2-D"),
    (lambda p: plot_latent(np.zeros((4, 2)), ["a"], path=p), "labels"),
    (lambda p: plot_latent(np.zeros((4, 3)), path=p, method="umap"), "method"),
    (lambda p: plot_latent(np.zeros((4, 3)), path=p, max_points=0), "max_points"),
    (lambda p: plot_neighbors(items(2), items(3, 4), p), "queries"),
    (lambda p: plot_neighbors(items(2), items(2, 4, kind="vec20"), p), "same kind"),
    (lambda p: plot_neighbors(items(2), items(2, 4), p, distances=np.zeros((2, 3))), "distances"),
    (lambda p: plot_neighbors(items(2), items(2, 4), p, neighbor_labels=[["a"] * 4]), "neighbor_labels"),
    (lambda p: plot_neighbors(items(2), items(2, 4), p, query_labels=["a"]), "query_labels"),
    (lambda p: plot_neighbors(GOOD, GOOD, p), "neighbor_images"),
    (lambda p: plot_reconstructions(GOOD, items(4), p), "shape"),
    (lambda p: plot_reconstructions(GOOD, GOOD, p, n=0), "n must"),
    (lambda p: plot_reconstructions(GOOD, GOOD * np.inf, p), "NaN/inf"),
    (lambda p: plot_image_grid(np.zeros((2, 2, 4, 4)), p), "channels"),
    (lambda p: plot_image_grid(np.zeros((0, 1, 4, 4)), p), "empty"),
    (lambda p: plot_image_grid(np.zeros((2, 4, 4)), p), "shape"),
    (lambda p: plot_image_grid(GOOD, p, titles=["a"]), "titles"),
    (lambda p: plot_image_grid(GOOD, p, ncols=0), "ncols"),
    (lambda p: plot_score_histogram([], p), "empty"),
    (lambda p: plot_score_histogram([1.0, np.inf], p), "NaN/inf"),
    (lambda p: plot_score_histogram([[1.0]], p), "1-D"),
    (lambda p: plot_score_histogram([1.0, 2.0], p, is_anomaly=[True]), "is_anomaly"),
    (lambda p: plot_score_histogram([1.0, 2.0], p, threshold=np.nan), "threshold"),
    (lambda p: plot_roc([0.1, 0.2], [True, True], p), "both positives and negatives"),
    (lambda p: plot_roc([0.1, np.nan], [True, False], p), "NaN/inf"),
    (lambda p: plot_roc([0.1, 0.2], [True, False, True], p), "is_positive"),
])
def test_bad_input(tmp_path, call, match):
    with pytest.raises(SiameseError, match=match):
        call(tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_unwritable_paths(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SiameseError, match=str(blocker)):
        plot_image_grid(GOOD, blocker / "sub" / "grid.png")
    with pytest.raises(SiameseError, match="directory"):
        plot_image_grid(GOOD, tmp_path)


def test_failed_render_keeps_old_file(tmp_path, monkeypatch):
    out = tmp_path / "grid.png"
    plot_image_grid(GOOD, out)
    before = out.read_bytes()

    def boom(self, fh, **kwargs):
        fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(SiameseError, match="No space left"):
        plot_image_grid(items(5), out)
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".grid.png.tmp-*"))


@pytest.mark.parametrize("module", [plots, plot_common, plot_grids, plot_charts])
def test_module_does_not_use_pyplot(module):
    source = Path(module.__file__).read_text()
    assert "import pyplot" not in source and "pyplot." not in source


@pytest.mark.parametrize("count", [3, 9, 10, 18, 25])
def test_label_colours_distinct_and_never_grey(count):
    colours = plot_charts._label_colours([str(i) for i in range(count)])
    assert len(set(colours)) == count
    assert all(not (c[0] == c[1] == c[2]) for c in colours)


def test_score_histogram_mostly_equal_scores_with_outlier(tmp_path):
    scores = np.concatenate([np.zeros(1000), np.full(5, 1e-9), [1e6]])  # IQR 0: bin rules must stay bounded
    assert_png(plot_score_histogram(scores, tmp_path / "hist.png", threshold=1.0))


def test_plots_module_reexports_both_families():
    for name in plots.__all__:
        home = plot_grids if hasattr(plot_grids, name) else plot_charts
        assert getattr(plots, name) is getattr(home, name)
    assert {"plot_image_grid", "plot_latent", "plot_curves", "plot_roc"} <= set(plots.__all__)
