"""Figures for looking at what a model learned: latent maps, nearest neighbours, reconstructions,
image grids, training curves, anomaly-score histograms and ROC curves.

Everything is drawn with matplotlib's object API (`Figure` + `FigureCanvasAgg`), so this module
never touches pyplot or the global backend and is safe on headless machines and inside notebooks
that already chose another backend. Inputs are numpy arrays (convert tensors with
`.detach().cpu().numpy()`). Images are floats in [0, 1] shaped (n, C, H, W) with C = 1 (gray) or
3 (RGB); items that are plain vectors, shaped (n, D), are drawn as a square when D is a perfect
square and as a 1 x D strip otherwise. Each function writes one PNG atomically (a crash never
leaves half a file) and returns its Path.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from index.atomic import atomic_file

from .errors import SiameseError

LOG = logging.getLogger(__name__)

DPI = 110
METHODS = ("auto", "pca", "tsne")
# history.csv columns that are bookkeeping, not losses
NOT_LOSSES = frozenset({"epoch", "train_loss", "val_loss", "lr", "seconds", "items_per_second"})

_STRIP_ASPECT = 0.2  # height / width of the cell that shows a 1 x D vector strip
_TITLE_PT = 7.0  # font size of per-cell titles
_LINE_IN = _TITLE_PT / 72 * 1.35  # height of one title line, inches
_GAP_IN = 0.08
_MAX_WIDTH_IN = 15.0


# ---------------------------------------------------------------- saving


def _check_path(path: str | os.PathLike) -> Path:
    """Fail early (before any expensive projection) if `path` can never be written."""
    target = Path(path)
    if target.is_dir():
        raise SiameseError(f"path {target} is a directory; give a file name such as {target / 'plot.png'}")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SiameseError(f"cannot write {target}: {parent} is a file, not a folder; choose another path")
            break
    return target


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Render `fig` to a PNG at `path` via a temp file + rename, creating folders; frees the figure."""
    target = _check_path(path)
    if target.suffix.lower() != ".png":
        LOG.warning("writing PNG data to %s (name does not end in .png)", target)
    try:
        FigureCanvasAgg(fig)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, "wb") as fh:
            fig.savefig(fh, format="png", dpi=DPI)
    except OSError as error:
        raise SiameseError(f"cannot write {target}: {error.strerror or error}; choose a writable path") from None
    finally:
        fig.clear()
    LOG.info("wrote %s", target)
    return target


# ---------------------------------------------------------------- input checks


def _array(values, name: str, *, dtype=float) -> np.ndarray:
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as error:
        raise SiameseError(f"{name} must be a numeric numpy array (convert tensors with "
                           f".detach().cpu().numpy()); could not convert it: {error}") from None


def _finite(a: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        raise SiameseError(f"{name} contains {int(bad.sum())} NaN/inf values out of {a.size}; "
                           "drop or fix those entries before plotting")


def _items(values, name: str, batch_dims: int) -> np.ndarray:
    """Check a batch of items: shape (*batch, C, H, W) with C in {1, 3} or (*batch, D)."""
    a = _array(values, name)
    batch = "q, k" if batch_dims == 2 else "n"
    expected = f"({batch}, C, H, W) images or ({batch}, D) vectors"
    if a.ndim - batch_dims not in (1, 3):
        raise SiameseError(f"{name} must have shape {expected}; got shape {a.shape}")
    if a.size == 0:
        raise SiameseError(f"{name} is empty (shape {a.shape}); pass at least one item")
    if a.ndim - batch_dims == 3 and a.shape[batch_dims] not in (1, 3):
        raise SiameseError(f"{name} has {a.shape[batch_dims]} channels (shape {a.shape}); "
                           "expected 1 (gray) or 3 (RGB) in (C, H, W) order")
    _finite(a, name)
    return a


def _bool_array(values, name: str, n: int, n_name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or len(a) != n:
        raise SiameseError(f"{name} must be a 1-D array with one entry per {n_name} ({n}); got shape {a.shape}")
    if a.dtype.kind not in "biu":
        raise SiameseError(f"{name} must hold booleans (or 0/1); got dtype {a.dtype}")
    return a.astype(bool)


def _scores(values, name: str) -> np.ndarray:
    a = _array(values, name)
    if a.ndim != 1:
        raise SiameseError(f"{name} must be a 1-D array (n,); got shape {a.shape}")
    if a.size == 0:
        raise SiameseError(f"{name} is empty; pass at least one score")
    _finite(a, name)
    return a


def _optional_number(value, name: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SiameseError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise SiameseError(f"{name} must be finite; got {number}")
    return number


def _labels(labels, n: int, name: str = "labels") -> list[str | None] | None:
    """Sequence of str/None (None or NaN = unlabelled) -> list of str/None, one per item."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)):
        raise SiameseError(f"{name} must be a sequence with one label per item, not a single string")
    out = []
    for label in labels:
        if label is None or (isinstance(label, float) and math.isnan(label)):
            out.append(None)
        else:
            out.append(str(label))
    if len(out) != n:
        raise SiameseError(f"got {n} items but {len(out)} {name}; pass one label (or None) per item")
    return out


def _sorted_labels(labels: Sequence[str]) -> list[str]:
    """Unique labels in numeric-aware order: "2" before "10", "class2" before "class10"."""
    unique = set(labels)
    try:
        return sorted(unique, key=lambda s: (float(s), s))
    except ValueError:
        pass

    def natural(s: str):
        parts = re.split(r"(\d+)", s)
        return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in parts if part]

    return sorted(unique, key=lambda s: (natural(s), s))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


# ---------------------------------------------------------------- image cells


def _as_displayable(item: np.ndarray) -> tuple[np.ndarray, str | None]:
    """One item -> (array for imshow, cmap).

    (1, H, W) -> (H, W) gray; (3, H, W) -> (H, W, 3) RGB; (D,) -> (s, s) gray when D = s*s,
    else a (1, D) strip.
    """
    item = np.asarray(item, dtype=float)
    if item.ndim == 3 and item.shape[0] == 1:
        return item[0], "gray"
    if item.ndim == 3 and item.shape[0] == 3:
        return np.transpose(item, (1, 2, 0)), None
    if item.ndim == 1:
        side = math.isqrt(item.size)
        if side * side == item.size:
            return item.reshape(side, side), "gray"
        return item.reshape(1, -1), "gray"
    raise SiameseError(f"cannot display an item of shape {item.shape}; expected (1|3, H, W) or (D,)")


def _value_range(*arrays: np.ndarray) -> tuple[float, float]:
    """[0, 1] for proper images, widened to cover data outside it (e.g. standardised features)."""
    lo = min(0.0, *(float(a.min()) for a in arrays))
    hi = max(1.0, *(float(a.max()) for a in arrays))
    if lo < 0.0 or hi > 1.0:
        LOG.info("values span [%.3g, %.3g], outside [0, 1]; scaling the colours to that range", lo, hi)
    return lo, hi


@dataclass
class _Cell:
    item: np.ndarray
    title: str = ""
    highlight: bool = False


def _draw_cells(rows: list[list[_Cell | None]], *, title: str | None, value_range: tuple[float, float],
                row_labels: Sequence[str] | None = None, split_after_first: bool = False) -> Figure:
    """Lay out a grid of items with exact inch geometry.

    One invisible Axes spans the figure in inch coordinates and every item is an image placed by
    `extent`: no layout engine and no Axes per cell, so a 20 x 20 manifold draws in about a second.
    """
    ncols = max(len(row) for row in rows)
    first = next(cell for row in rows for cell in row if cell is not None)
    shown, _ = _as_displayable(first.item)
    strip = shown.shape[0] == 1 and shown.ndim == 2 and shown.shape[1] > 1
    aspect = _STRIP_ASPECT if strip else min(2.0, max(0.25, shown.shape[0] / shown.shape[1]))
    split = 3 * _GAP_IN if split_after_first else 0.0
    cell_w = min(1.6 if strip else 1.3, max(0.55, (_MAX_WIDTH_IN - split) / ncols - _GAP_IN))
    cell_h = cell_w * aspect
    # item pixels shown at least twice as large: keep them crisp; otherwise let matplotlib antialias
    interpolation = "nearest" if cell_w * DPI >= 2 * shown.shape[1] else None
    chars = max(6, int(cell_w * 72 / (_TITLE_PT * 0.6)))
    titles = [[_short_lines(c.title, chars) if c is not None else "" for c in row] for row in rows]
    title_h = [max((t.count("\n") + 1) * _LINE_IN + 0.04 if t else 0.0 for t in row) for row in titles]
    label_w = max((len(label) for label in row_labels), default=0) * 8 * 0.6 / 72 + 0.12 if row_labels else 0.0
    left = 0.1 + label_w
    top = 0.12 + (0.4 if title else 0.0)
    fig_w = left + ncols * cell_w + (ncols - 1) * _GAP_IN + split + 0.1
    fig_h = top + sum(title_h) + len(rows) * cell_h + (len(rows) - 1) * _GAP_IN + 0.1
    fig = Figure(figsize=(fig_w, fig_h))
    if title:
        fig.suptitle(title, y=1 - 0.12 / fig_h, va="top", fontsize=11)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    lo, hi = value_range
    y = fig_h - top
    for r, row in enumerate(rows):
        y -= title_h[r] + cell_h
        for c, cell in enumerate(row):
            if cell is None:
                continue
            x = left + c * (cell_w + _GAP_IN) + (split if c > 0 else 0.0)
            shown, cmap = _as_displayable(cell.item)
            extent = (x, x + cell_w, y, y + cell_h)
            if cmap is None:
                ax.imshow(np.clip((shown - lo) / (hi - lo), 0.0, 1.0), extent=extent, aspect="auto",
                          interpolation=interpolation)
            else:
                ax.imshow(shown, cmap=cmap, vmin=lo, vmax=hi, extent=extent, aspect="auto", interpolation=interpolation)
            if cell.highlight:
                ax.add_patch(Rectangle((x, y), cell_w, cell_h, fill=False, edgecolor="tab:red", linewidth=2.5))
            if titles[r][c]:
                ax.text(x + cell_w / 2, y + cell_h + 0.03, titles[r][c], ha="center", va="bottom",
                        fontsize=_TITLE_PT, color="tab:red" if cell.highlight else "black",
                        fontweight="bold" if cell.highlight else "normal")
        if row_labels:
            ax.text(left - 0.1, y + cell_h / 2, row_labels[r], ha="right", va="center", fontsize=8)
        y -= _GAP_IN
    ax.set_xlim(0.0, fig_w)
    ax.set_ylim(0.0, fig_h)
    return fig


def _short_lines(text: str, width: int) -> str:
    return "\n".join(_short(line, width) for line in text.split("\n")) if text else ""


# ---------------------------------------------------------------- latent map


def _project(z: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str, str]:
    """(n, d) -> ((n, 2) coordinates, x label, y label) for d > 2 with "pca" or "tsne"."""
    n, d = z.shape
    if method == "tsne" and n < 4:
        LOG.warning("t-SNE needs at least 4 points (got %d); using PCA instead", n)
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

        LOG.info("reducing %d-D embeddings to 50-D with PCA before t-SNE", d)
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
        LOG.info("plotting a random subsample of %d of %d embeddings (seed %d)", max_points, n_all, seed)
    n = len(z)

    if d == 1:
        xy = np.column_stack([z[:, 0], rng.uniform(-1.0, 1.0, n)])
        xlabel, ylabel, used = "z[0]", "random jitter (no meaning)", "drawn against random jitter"
    elif d == 2:
        xy, xlabel, ylabel, used = z, "z[0]", "z[1]", "drawn as is"
    else:
        used = method if method != "auto" else ("tsne" if n_all <= max_points else "pca")
        LOG.info("projecting %d %d-D embeddings to 2-D with %s", n, d, used)
        xy, xlabel, ylabel = _project(z, used, seed)
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
            LOG.info("%d labels: legend omitted", len(handles))
            ax.text(1.01, 1.0, f"{len(handles)} labels\n(legend omitted)", transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if d == 1:
        ax.set_yticks([])
    points = f"{n} of {n_all} points (random subsample)" if n < n_all else f"{n} points"
    ax.set_title(title if title is not None else f"Embeddings: {points}, {d}-D, {used}", fontsize=11)
    ax.grid(True, alpha=0.25)
    return _save(fig, path)


# ---------------------------------------------------------------- neighbours, reconstructions, grids


def plot_neighbors(query_images: np.ndarray, neighbor_images: np.ndarray, path: str | os.PathLike, *,
                   distances: np.ndarray | None = None,
                   neighbor_labels: Sequence[Sequence[str | None]] | None = None,
                   query_labels: Sequence[str | None] | None = None, title: str | None = None) -> Path:
    """One row per query: the query (red frame) and then its k nearest neighbours, nearest first.

    query_images (q, C, H, W) or (q, D); neighbor_images (q, k, C, H, W) or (q, k, D);
    distances (q, k), shown with 3 significant digits (non-finite shows as "n/a", e.g. a missing
    neighbour); neighbor_labels q lists of k labels; query_labels q labels.
    """
    queries = _items(query_images, "query_images", 1)
    neighbours = _items(neighbor_images, "neighbor_images", 2)
    q, k = neighbours.shape[:2]
    if len(queries) != q:
        raise SiameseError(f"query_images holds {len(queries)} queries but neighbor_images holds {q} rows; "
                           "pass one row of neighbours per query")
    if queries.shape[1:] != neighbours.shape[2:]:
        raise SiameseError(f"query items have shape {queries.shape[1:]} but neighbour items {neighbours.shape[2:]}; "
                           "they must be the same kind of item")
    if distances is not None:
        distances = _array(distances, "distances")
        if distances.shape != (q, k):
            raise SiameseError(f"distances must have shape (q, k) = ({q}, {k}); got {distances.shape}")
    if neighbor_labels is not None:
        if isinstance(neighbor_labels, (str, bytes)) or len(neighbor_labels) != q:
            raise SiameseError(f"neighbor_labels must hold one list of {k} labels per query ({q})")
        neighbor_labels = [_labels(row, k, "neighbor_labels in a row") for row in neighbor_labels]
    query_labels = _labels(query_labels, q, "query_labels")
    _check_path(path)

    rows = []
    for i in range(q):
        head = "query" + (f"\n{query_labels[i]}" if query_labels and query_labels[i] is not None else "")
        row = [_Cell(queries[i], head, highlight=True)]
        for j in range(k):
            parts = []
            if distances is not None:
                value = distances[i, j]
                parts.append(f"d={value:.3g}" if math.isfinite(value) else "d=n/a")
            if neighbor_labels is not None and neighbor_labels[i][j] is not None:
                parts.append(neighbor_labels[i][j])
            row.append(_Cell(neighbours[i, j], "\n".join(parts)))
        rows.append(row)
    heading = title if title is not None else f"{q} {'query' if q == 1 else 'queries'} and their {k} nearest neighbours"
    fig = _draw_cells(rows, title=heading, value_range=_value_range(queries, neighbours), split_after_first=True)
    return _save(fig, path)


def plot_reconstructions(inputs: np.ndarray, reconstructions: np.ndarray, path: str | os.PathLike, *,
                         n: int = 16, title: str | None = None) -> Path:
    """Inputs (top row) above their reconstructions (bottom row, titled with per-item MSE).

    inputs and reconstructions: same shape, (N, C, H, W) or (N, D); the first n items are shown.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SiameseError(f"n must be a positive integer (items to show); got {n!r}")
    inputs = _items(inputs, "inputs", 1)
    reconstructions = _items(reconstructions, "reconstructions", 1)
    if inputs.shape != reconstructions.shape:
        raise SiameseError(f"inputs have shape {inputs.shape} but reconstructions {reconstructions.shape}; "
                           "pass the model's reconstruction of each input")
    _check_path(path)
    inputs, reconstructions = inputs[:n], reconstructions[:n]
    errors = ((inputs - reconstructions) ** 2).reshape(len(inputs), -1).mean(axis=1)
    rows = [[_Cell(x) for x in inputs], [_Cell(r, f"mse {e:.2g}") for r, e in zip(reconstructions, errors)]]
    heading = title if title is not None else f"Reconstructions of {len(inputs)} items (mean mse {errors.mean():.3g})"
    fig = _draw_cells(rows, title=heading, value_range=_value_range(inputs, reconstructions),
                      row_labels=["input", "reconstruction"])
    return _save(fig, path)


def plot_image_grid(images: np.ndarray, path: str | os.PathLike, *, ncols: int | None = None,
                    titles: Sequence[str] | None = None, title: str | None = None) -> Path:
    """A plain grid of items, row by row (VAE samples, a decoded latent manifold).

    images (n, C, H, W) or (n, D); ncols defaults to ceil(sqrt(n)); titles: one per item.
    """
    images = _items(images, "images", 1)
    count = len(images)
    if ncols is None:
        ncols = math.ceil(math.sqrt(count))
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise SiameseError(f"ncols must be a positive integer; got {ncols!r}")
    if titles is not None:
        if isinstance(titles, (str, bytes)) or len(titles) != count:
            raise SiameseError(f"got {count} images but {1 if isinstance(titles, (str, bytes)) else len(titles)} "
                               "titles; pass one title per image")
    _check_path(path)
    cells = [_Cell(image, "" if titles is None or titles[i] is None else str(titles[i]))
             for i, image in enumerate(images)]
    rows = [cells[i:i + ncols] for i in range(0, count, ncols)]
    fig = _draw_cells(rows, title=title, value_range=_value_range(images))
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
    LOG.info("ROC AUC %.4f over %d items (%d positive)", area, len(values), int(positive.sum()))
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


__all__ = ["plot_curves", "plot_image_grid", "plot_latent", "plot_neighbors", "plot_reconstructions", "plot_roc",
           "plot_score_histogram"]
