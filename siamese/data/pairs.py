"""Labelled pairs g(xi, xj) in {0, 1}: from a PAIRS.csv, from labels, or from a few labels per class.

Pairs are held as item positions (int64) so the training step can gather them; files speak in
item keys. Positives are pairs labelled 1 (same/similar), negatives 0 (different).
"""

from __future__ import annotations

import csv
import logging
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import SiameseError, reason
from .labels import check_field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pairs:
    """Arrays of shape (n_pairs,): item positions `a`, `b` and `label` (1 = same, 0 = different)."""

    a: np.ndarray
    b: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    @property
    def n_positive(self) -> int:
        return int(self.label.sum())

    @property
    def n_negative(self) -> int:
        return len(self) - self.n_positive

    def items(self) -> np.ndarray:
        """Sorted unique item positions that take part in some pair."""
        return np.unique(np.concatenate([self.a, self.b]))


def make_pairs(a, b, label) -> Pairs:
    """Validate and canonicalise pairs: no self-pairs, no contradictions, duplicates dropped."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    label = np.asarray(label, dtype=np.int64)
    if not (a.shape == b.shape == label.shape) or a.ndim != 1:
        raise SiameseError(f"pairs need 1-D a, b, label of equal length, got {a.shape}, {b.shape}, {label.shape}")
    if len(a) == 0:
        raise SiameseError("no pairs given; a PAIRS.csv needs at least one row `a,b,label`")
    if not np.isin(label, (0, 1)).all():
        raise SiameseError(f"pair labels must be 0 or 1, got {sorted(set(label.tolist()) - {0, 1})[:5]}")
    if (a == b).any():
        raise SiameseError(f"{int((a == b).sum())} pair(s) join an item with itself (first at row {int(np.argmax(a == b))}); "
                           "remove self-pairs")
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    table = np.stack([lo, hi, label], 1)
    unique = np.unique(table, axis=0)
    keys, counts = np.unique(unique[:, :2], axis=0, return_counts=True)
    if (counts > 1).any():
        bad = keys[counts > 1][0]
        raise SiameseError(f"{int((counts > 1).sum())} pair(s) are labelled both 1 and 0 (e.g. items {bad[0]} and "
                           f"{bad[1]}); fix the contradictory rows")
    if len(unique) < len(table):
        logger.warning("dropped %d duplicate pair(s)", len(table) - len(unique))
    pairs = Pairs(unique[:, 0], unique[:, 1], unique[:, 2])
    if pairs.n_positive == 0 or pairs.n_negative == 0:
        kind = "positive (1)" if pairs.n_negative == 0 else "negative (0)"
        logger.warning("all %d pairs are %s; the contrastive loss only %s", len(pairs), kind,
                    "pulls items together" if pairs.n_negative == 0 else "pushes items apart")
    return pairs


def iter_pairs_csv(path: str | Path) -> Iterator[tuple[int, str, str, str]]:
    """(line number, a, b, label text) per row of a PAIRS.csv with header `a,b,label`, checked row by row
    (field lengths, encoding, CSV syntax) so a hostile file costs what one row costs."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            check_field(path, 1, reader.fieldnames or [])
            missing = {"a", "b", "label"} - set(reader.fieldnames or [])
            if missing:
                raise SiameseError(f"{path} needs the header `a,b,label`; missing column(s): {', '.join(sorted(missing))}")
            for row in reader:
                cells = (row["a"], row["b"], row["label"])
                check_field(path, reader.line_num, cells)
                yield reader.line_num, *cells  # type: ignore[misc]
    except FileNotFoundError:
        raise SiameseError(f"pairs file {path} does not exist") from None
    except UnicodeDecodeError:
        raise SiameseError(f"{path} is not UTF-8 text; save the pairs file as UTF-8 CSV") from None
    except csv.Error as exc:
        raise SiameseError(f"cannot read pairs file {path}: {reason(exc)}; use a CSV with header a,b,label") from exc


def pair_label(text: str | None) -> int | None:
    """0 or 1 from a PAIRS.csv label cell; None for anything else."""
    try:
        value = int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if value in (0, 1) else None


def read_pairs_csv(path: str | Path, keys: Sequence[str]) -> Pairs:
    """PAIRS.csv with header `a,b,label` over item keys -> Pairs over item positions. Read row by row into
    int64 arrays, so memory follows the number of pairs, not the Python objects of every row."""
    position = {key: i for i, key in enumerate(keys)}
    a, b, labels = array("q"), array("q"), array("q")
    unknown: list[str | None] = []
    n_unknown, bad_label = 0, None
    for line, *cells in iter_pairs_csv(path):
        ends = [position.get(cells[0], -1), position.get(cells[1], -1)]
        for cell, at in zip(cells, ends):
            if at < 0:
                n_unknown += 1
                unknown += [cell] if len(unknown) < 3 else []
        label = pair_label(cells[2])
        if label is None:
            bad_label = bad_label or line
        labels.append(label or 0)
        a.append(ends[0])
        b.append(ends[1])
    if n_unknown:
        raise SiameseError(f"{path}: {n_unknown} key(s) not among the items, e.g. {unknown}; "
                           "pair keys must match the item keys of DATA")
    if bad_label:
        raise SiameseError(f"{path}: every label must be 0 or 1 (line {bad_label} is not)")
    return make_pairs(np.frombuffer(a, np.int64), np.frombuffer(b, np.int64), np.frombuffer(labels, np.int64))


def write_pairs_csv(path: str | Path, pairs: Pairs, keys: Sequence[str]) -> None:
    from index.atomic import atomic_file

    with atomic_file(path, "w", suffixes=(".csv",)) as fh:
        writer = csv.writer(fh)
        writer.writerow(["a", "b", "label"])
        writer.writerows((keys[a], keys[b], int(y)) for a, b, y in zip(pairs.a, pairs.b, pairs.label))


def pairs_from_labels(codes: np.ndarray, n_pairs: int | None = None, seed: int = 0) -> Pairs:
    """Balanced pairs among labelled items (codes >= 0; -1 = unlabelled, never used).

    All positive pairs up to n_pairs/2, and as many negatives drawn at random.
    """
    codes = np.asarray(codes)
    labelled = np.flatnonzero(codes >= 0)
    if len(labelled) < 2:
        raise SiameseError("need at least two labelled items to build pairs")
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(len(labelled), k=1)
    a, b = labelled[i], labelled[j]
    same = codes[a] == codes[b]
    pos, neg = np.flatnonzero(same), np.flatnonzero(~same)
    half = min(len(pos), len(neg)) if n_pairs is None else min(n_pairs // 2, len(pos), len(neg))
    if half == 0:
        raise SiameseError("labels give no positive or no negative pairs; label at least two items of one class "
                           "and two classes")
    chosen = np.concatenate([rng.choice(pos, half, replace=False), rng.choice(neg, half, replace=False)])
    return Pairs(a[chosen], b[chosen], same[chosen].astype(np.int64))


def select_per_class(codes: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Bool mask keeping `per_class` randomly chosen labelled items of each class (seeded)."""
    if per_class <= 0:
        raise SiameseError(f"labels per class must be positive, got {per_class}")
    codes = np.asarray(codes)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(codes), dtype=bool)
    for cls in np.unique(codes[codes >= 0]):
        members = np.flatnonzero(codes == cls)
        if len(members) < per_class:
            logger.warning("class %s has only %d labelled items (< %d); using all", cls, len(members), per_class)
        mask[rng.choice(members, min(per_class, len(members)), replace=False)] = True
    return mask


def sample_pair_batch(pairs: Pairs, size: int, generator: torch.Generator) -> tuple[np.ndarray, tuple]:
    """Draw up to `size` pairs, half positive and half negative where both exist.

    Returns (item positions to embed, PML indices_tuple (a1, p, a2, n) into that list).
    """
    pos, neg = np.flatnonzero(pairs.label == 1), np.flatnonzero(pairs.label == 0)
    want_pos = min(len(pos), size // 2 if len(neg) else size)
    want_neg = min(len(neg), size - want_pos)
    pick = [torch.randperm(len(group), generator=generator)[:want].numpy()
            for group, want in ((pos, want_pos), (neg, want_neg))]
    p_rows, n_rows = pos[pick[0]], neg[pick[1]]
    items, inverse = np.unique(np.concatenate([pairs.a[p_rows], pairs.b[p_rows], pairs.a[n_rows], pairs.b[n_rows]]),
                               return_inverse=True)
    k, m = len(p_rows), len(n_rows)
    idx = torch.as_tensor(inverse, dtype=torch.long)
    return items, (idx[:k], idx[k:2 * k], idx[2 * k:2 * k + m], idx[2 * k + m:])
