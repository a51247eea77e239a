"""Image grids: nearest neighbours, reconstructions, VAE samples and decoded latent manifolds.

Images are floats in [0, 1] shaped (n, C, H, W) with C = 1 (gray) or 3 (RGB); items that are plain
vectors, shaped (n, D), are drawn as a square when D is a perfect square and as a 1 x D strip
otherwise. Each function writes one PNG atomically and returns its Path.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import SiameseError
from .common import DPI, _array, _check_path, _items, _labels, _save, _short

logger = logging.getLogger(__name__)

_STRIP_ASPECT = 0.2  # height / width of the cell that shows a 1 x D vector strip
_TITLE_PT = 7.0  # font size of per-cell titles
_LINE_IN = _TITLE_PT / 72 * 1.35  # height of one title line, inches
_GAP_IN = 0.08
_MAX_WIDTH_IN = 15.0


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
        logger.info("values span [%.3g, %.3g], outside [0, 1]; scaling the colours to that range", lo, hi)
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
