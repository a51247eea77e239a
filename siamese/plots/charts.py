"""2-D maps and curves: the latent map, training curves, anomaly-score histograms and ROC curves.

Inputs are numpy arrays (convert tensors with `.detach().cpu().numpy()`). Each function writes one
PNG atomically and returns its Path.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import SiameseError
from .common import (
    _array,
    _bool_array,
    _check_path,
    _finite,
    _labels,
    _optional_number,
    _save,
    _scores,
    _short,
    _sorted_labels,
)

logger = logging.getLogger(__name__)

METHODS = ("auto", "pca", "tsne")
# history.csv columns that are bookkeeping, not losses
NOT_LOSSES = frozenset({"epoch", "train_loss", "val_loss", "lr", "seconds", "items_per_second"})


# ---------------------------------------------------------------- latent map


def project_2d(z: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str, str]:
    """(n, d) -> ((n, 2) coordinates, x label, y label) for d > 2 with "pca" or "tsne"."""
    n, d = z.shape
    if method == "tsne" and n < 4:
        logger.warning("t-SNE needs at least 4 points (got %d); using PCA instead", n)
        method = "pca"
    if method == "pca":
        from sklearn.decomposition import PCA

        components = min(2, n, d)
        pca = PCA(n_components=components, random_state=seed)
        xy = pca.fit_transform(z)
        if components < 2:
            xy = np.column_stack([xy, np.zeros((n, 2 - components))])
        ratio = np.nan_to_num(np.append(pca.explained_variance_ratio_, [0.0] * (2 - components)))
        return xy, f"PC1 ({100 * ratio[0]:.1f}% of variance)", f"PC2 ({100 * ratio[1]:.1f}% of variance)"
    from sklearn.manifold import TSNE

    if d > 50 and n > 50:
        from sklearn.decomposition import PCA

        logger.info("reducing %d-D embeddings to 50-D with PCA before t-SNE", d)
        z = PCA(n_components=50, random_state=seed).fit_transform(z)
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # Small maps gain nothing from OpenMP threads, and on a busy machine their spin-waiting makes
    # t-SNE of 100 points take 10-30 s instead of 0.3 s.
    with threadpool_limits(limits=1 if n <= 2000 else None, user_api="openmp"):
        xy = tsne.fit_transform(z)
    return xy, f"t-SNE 1 (perplexity {perplexity:.3g})", "t-SNE 2"


def _label_colours(names: Sequence[str]) -> list:
    """tab10 / tab20 colours minus their greys (grey means "unlabelled"); tab20's dark shades come
    first so neighbouring labels never share a hue; beyond 18 labels, evenly spaced turbo colours."""
    if len(names) <= 9:
        return [colormaps["tab10"](i) for i in range(10) if i != 7][: len(names)]
    if len(names) <= 18:
        order = [i for i in [*range(0, 20, 2), *range(1, 20, 2)] if i not in (14, 15)]
        return [colormaps["tab20"](i) for i in order[: len(names)]]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, len(names))]


def plot_latent(z: np.ndarray, labels: Sequence[str | None] | None = None, path: str | os.PathLike = "latent.png",
                *, method: str = "auto", title: str | None = None, seed: int = 0, max_points: int = 5000) -> Path:
    """2-D map of embeddings z (n, d), coloured by label, to see whether classes form clusters.

    d == 2 is drawn as is, d == 1 against random vertical jitter, d > 2 projected with "pca" or
    "tsne" ("auto": t-SNE when n <= max_points, else PCA). More than max_points points are
    subsampled with a seeded rng. labels: one str/None per row (None = unlabelled, small grey).
    """
    if method not in METHODS:
        raise SiameseError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 1:
        raise SiameseError(f"max_points must be a positive integer; got {max_points!r}")
    z = _array(z, "z")
    if z.ndim != 2:
        raise SiameseError(f"z must be a 2-D array (n, d) of embeddings; got shape {z.shape}")
    if z.size == 0:
        raise SiameseError(f"z is empty (shape {z.shape}); pass at least one embedding with d >= 1")
    _finite(z, "z")
    n_all, d = z.shape
    labels = _labels(labels, n_all)
    _check_path(path)

    rng = np.random.default_rng(seed)
    if n_all > max_points:
        keep = np.sort(rng.choice(n_all, size=max_points, replace=False))
        z = z[keep]
        labels = None if labels is None else [labels[i] for i in keep]
        logger.info("plotting a random subsample of %d of %d embeddings (seed %d)", max_points, n_all, seed)
    n = len(z)

    if d == 1:
        xy = np.column_stack([z[:, 0], rng.uniform(-1.0, 1.0, n)])
        xlabel, ylabel, used = "z[0]", "random jitter (no meaning)", "drawn against random jitter"
    elif d == 2:
        xy, xlabel, ylabel, used = z, "z[0]", "z[1]", "drawn as is"
    else:
        used = method if method != "auto" else ("tsne" if n_all <= max_points else "pca")
        logger.info("projecting %d %d-D embeddings to 2-D with %s", n, d, used)
        xy, xlabel, ylabel = project_2d(z, used, seed)
        used = {"pca": "PCA", "tsne": "t-SNE"}[used]

    fig = Figure(figsize=(8.0, 3.6 if d == 1 else 6.0), layout="constrained")
    ax = fig.add_subplot()
    size = float(np.clip(4000 / n, 4, 40))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, color="tab:blue", alpha=0.75, linewidths=0)
    else:
        known = np.array([label is not None for label in labels], dtype=bool)
        handles = []
        if (~known).any():
            ax.scatter(xy[~known, 0], xy[~known, 1], s=size * 0.4, color="0.65", alpha=0.6, linewidths=0)
            handles.append(Line2D([], [], ls="", marker="o", color="0.65", label=f"unlabelled ({int((~known).sum())})"))
        names = _sorted_labels([label for label in labels if label is not None])
        if names:
            colours = dict(zip(names, _label_colours(names)))
            order = rng.permutation(np.flatnonzero(known))  # no class is always painted on top
            ax.scatter(xy[order, 0], xy[order, 1], s=size, c=[colours[labels[i]] for i in order], alpha=0.85,
                       linewidths=0)
            counts = {name: 0 for name in names}
            for i in np.flatnonzero(known):
                counts[labels[i]] += 1
            handles += [Line2D([], [], ls="", marker="o", color=colours[name],
                               label=f"{_short(name, 24)} ({counts[name]})") for name in names]
        if len(handles) <= 40:
            ax.legend(handles=handles, title="label", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                      title_fontsize=9, ncols=1 if len(handles) <= 20 else 2, frameon=False)
        else:
            logger.info("%d labels: legend omitted", len(handles))
            ax.text(1.01, 1.0, f"{len(handles)} labels\n(legend omitted)", transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if d == 1:
        ax.set_yticks([])
    points = f"{n} of {n_all} points (random subsample)" if n < n_all else f"{n} points"
    ax.set_title(title if title is not None else f"Embeddings: {points}, {d}-D, {used}", fontsize=11)
    ax.grid(True, alpha=0.25)
    return _save(fig, path)


# ---------------------------------------------------------------- training curves


def _read_history(history_csv: str | os.PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
    source = Path(history_csv)
    if not source.is_file():
        raise SiameseError(f"history file {source} does not exist; train with an output folder to get history.csv")
    with open(source, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise SiameseError(f"history file {source} is empty (no epochs); train for at least one epoch first")
    columns = [c for c in rows[0] if c is not None]
    if "train_loss" not in columns:
        raise SiameseError(f"history file {source} has no train_loss column (columns: {', '.join(columns)}); "
                           "pass a history.csv written by training")
    values: dict[str, np.ndarray] = {}
    for column in columns:
        parsed = []
        for line, row in enumerate(rows, start=2):
            cell = (row.get(column) or "").strip()
            try:
                parsed.append(float(cell) if cell else math.nan)
            except ValueError:
                if column in ("epoch", "train_loss", "val_loss"):
                    raise SiameseError(f"{source} line {line}: {column} is {cell!r}, not a number; "
                                       "fix or delete that row") from None
                parsed = None
                break
        if parsed is not None:
            values[column] = np.array(parsed)
    return columns, values


def plot_curves(history_csv: str | os.PathLike, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Training curves from a history.csv: train/val loss per epoch, and the loss parts
    (recon, kl, metric, ... but not lr/seconds/items_per_second) in a second panel if any."""
    columns, values = _read_history(history_csv)
    _check_path(path)
    n = len(values["train_loss"])
    epoch = values.get("epoch")
    if epoch is None or np.isnan(epoch).any():
        epoch = np.arange(1, n + 1, dtype=float)
    parts = [c for c in columns if c in values and c not in NOT_LOSSES and not np.isnan(values[c]).all()]
    marker = "o" if n <= 40 else None

    fig = Figure(figsize=(11.0 if parts else 6.5, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if parts else 1, squeeze=False)[0]
    main = axes[0]
    for column, colour in (("train_loss", "tab:blue"), ("val_loss", "tab:orange")):
        if column in values and not np.isnan(values[column]).all():
            main.plot(epoch, values[column], marker=marker, ms=3, color=colour, label=column.replace("_", " "))
    main.set_ylabel("loss")
    if parts:
        main.set_title("loss")
    curves = [(main, [values[c] for c in ("train_loss", "val_loss") if c in values])]
    if parts:
        side = axes[1]
        for column in parts:
            side.plot(epoch, values[column], marker=marker, ms=3, label=column)
        side.set_title("loss parts (epoch means)")
        side.set_ylabel("value")
        curves.append((side, [values[c] for c in parts]))
    for ax, series in curves:
        finite = np.concatenate([s[np.isfinite(s)] for s in series])
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if n <= 20:
            ax.set_xticks(epoch)
    fig.suptitle(title if title is not None else f"Training curves ({n} epochs, {Path(history_csv).name})")
    return _save(fig, path)


# ---------------------------------------------------------------- anomaly scores and ROC


def plot_score_histogram(scores: np.ndarray, path: str | os.PathLike, *, is_anomaly: np.ndarray | None = None,
                         threshold: float | None = None, title: str | None = None, score_name: str = "score") -> Path:
    """Histogram of anomaly scores (n,); with is_anomaly (n,) bool, normal and anomalous items are
    overlaid as shares of their own group (so a rare class stays visible); threshold = dashed line."""
    scores = _scores(scores, "scores")
    if is_anomaly is not None:
        is_anomaly = _bool_array(is_anomaly, "is_anomaly", len(scores), "score")
    threshold = _optional_number(threshold, "threshold")
    _check_path(path)

    # sqrt rule, clipped: numpy's "auto" can ask for millions of bins when most scores are equal
    edges = np.histogram_bin_edges(scores, bins=int(np.clip(np.sqrt(len(scores)), 10, 60)))
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    if is_anomaly is None:
        ax.hist(scores, bins=edges, color="tab:blue", alpha=0.85)
        ax.set_ylabel("items")
    else:
        for mask, name, colour in ((~is_anomaly, "normal", "tab:blue"), (is_anomaly, "anomaly", "tab:red")):
            group = scores[mask]
            if group.size:
                ax.hist(group, bins=edges, weights=np.full(group.size, 1.0 / group.size), color=colour, alpha=0.55,
                        label=f"{name} ({group.size})", histtype="stepfilled", edgecolor=colour)
        ax.set_ylabel("share of group")
    if threshold is not None:
        above = int((scores >= threshold).sum())
        ax.axvline(threshold, color="black", ls="--", lw=1.2,
                   label=f"threshold {threshold:.3g} ({above} of {len(scores)} at or above)")
    if is_anomaly is not None or threshold is not None:
        ax.legend(fontsize=8)
    ax.set_xlabel(score_name)
    ax.grid(True, alpha=0.25)
    ax.set_title(title if title is not None else f"{score_name} of {len(scores)} items")
    return _save(fig, path)


def plot_roc(distances_or_scores: np.ndarray, is_positive: np.ndarray, path: str | os.PathLike, *,
             threshold: float | None = None, title: str | None = None, higher_is_positive: bool = False) -> Path:
    """ROC curve with its AUC; by default a lower value (a distance) means "more likely positive",
    set higher_is_positive=True for scores. threshold marks that operating point (TPR, FPR).

    distances_or_scores (n,) floats; is_positive (n,) bool with both classes present.
    """
    from sklearn.metrics import auc, roc_curve

    values = _scores(distances_or_scores, "distances_or_scores")
    positive = _bool_array(is_positive, "is_positive", len(values), "score")
    if positive.all() or not positive.any():
        raise SiameseError(f"is_positive must contain both positives and negatives for a ROC curve; "
                           f"got {int(positive.sum())} positives of {len(positive)}")
    threshold = _optional_number(threshold, "threshold")
    _check_path(path)

    fpr, tpr, _ = roc_curve(positive, values if higher_is_positive else -values)
    area = float(auc(fpr, tpr))
    logger.info("ROC AUC %.4f over %d items (%d positive)", area, len(values), int(positive.sum()))
    fig = Figure(figsize=(5.6, 5.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color="tab:blue", lw=2, label=f"ROC (AUC = {area:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance (AUC = 0.5)")
    if threshold is not None:
        predicted = values >= threshold if higher_is_positive else values <= threshold
        point_tpr, point_fpr = predicted[positive].mean(), predicted[~positive].mean()
        ax.plot([point_fpr], [point_tpr], "o", ms=8, color="tab:red", mec="black",
                label=f"threshold {threshold:.3g}: TPR {point_tpr:.2f}, FPR {point_fpr:.2f}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    rule = "higher score = positive" if higher_is_positive else "lower distance = positive"
    ax.set_title(title if title is not None else f"ROC over {len(values)} items ({rule})", fontsize=11)
    return _save(fig, path)
