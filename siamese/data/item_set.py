"""ItemSet: normalised items (n, C, H, W) or (n, D) with unique keys and optional string labels."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..errors import SiameseError
from .labels import check_known_keys, label_str
from .normalization import Normalization
from .preprocessing import DEFAULT_RESIZE, Preprocessing

_INT = re.compile(r"^[+-]?\d+$")


@dataclass
class ItemSet:
    """Normalised items with keys and optional labels; x is (n, C, H, W) for images or (n, D) for vectors."""

    x: torch.Tensor
    keys: list[str]
    labels: list[str | None] | None
    normalization: Normalization
    source: str
    resize: str = DEFAULT_RESIZE  # how images were brought to their size (see preprocessing.py)

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dtype != torch.float32 or self.x.ndim < 2:
            got = getattr(self.x, "dtype", type(self.x).__name__)
            raise SiameseError(f"ItemSet.x must be a float32 tensor (n, ...), got {got} with shape "
                               f"{tuple(getattr(self.x, 'shape', ()))}; convert it first")
        n = self.x.shape[0]
        if len(self.keys) != n:
            raise SiameseError(f"{self.source}: {len(self.keys)} keys for {n} items; pass one key per item")
        check_unique_keys(self.keys, self.source)
        if self.labels is not None and len(self.labels) != n:
            raise SiameseError(f"labels length mismatch in {self.source}: {len(self.labels)} labels for {n} items; "
                               "pass one label (or None) per item")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def preprocessing(self) -> Preprocessing:
        """The pipeline that made these items: what a model trained on them records and applies later."""
        return Preprocessing.for_input(self.item_shape, self.normalization, self.resize)

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and any(label is not None for label in self.labels)

    def subset(self, indices: Any) -> ItemSet:
        """Items at int positions (any order, no negatives) or where a bool mask of length n is True."""
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise SiameseError(f"bool mask of shape {idx.shape} for {len(self)} items; pass one flag per item")
            idx = np.flatnonzero(idx)
        if idx.size and idx.dtype.kind not in "iu":
            raise SiameseError(f"subset indices must be ints or a bool mask, got dtype {idx.dtype}")
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise SiameseError(f"subset indices must lie in 0..{len(self) - 1}, got {idx.min()}..{idx.max()}")
        keys = [self.keys[i] for i in idx.tolist()]
        labels = None if self.labels is None else [self.labels[i] for i in idx.tolist()]
        return replace(self, x=self.x[torch.from_numpy(idx)], keys=keys, labels=labels)

    def labelled_mask(self) -> np.ndarray:
        """(n,) bool: True where the item has a label."""
        if self.labels is None:
            return np.zeros(len(self), dtype=bool)
        return np.fromiter((label is not None for label in self.labels), dtype=bool, count=len(self))

    def label_codes(self) -> tuple[np.ndarray, list[str]]:
        """(n,) int64 codes into the sorted class list, -1 for unlabelled; integer labels sort numerically."""
        if self.labels is None:
            return np.full(len(self), -1, dtype=np.int64), []
        classes = sorted({label for label in self.labels if label is not None}, key=_class_sort_key(self.labels))
        index = {c: i for i, c in enumerate(classes)}
        codes = np.fromiter((index.get(label, -1) if label is not None else -1 for label in self.labels),
                            dtype=np.int64, count=len(self))
        return codes, classes

    def with_labels(self, mapping: Mapping[str, str | int], *, strict: bool = True) -> ItemSet:
        """Labels from key -> label (e.g. LABELS.csv); keys not in mapping get None. strict: unknown keys raise."""
        if strict:
            check_known_keys(mapping, self.keys, self.source)
        labels = [label_str(mapping[k]) if k in mapping else None for k in self.keys]
        return replace(self, labels=labels)


def _class_sort_key(labels: Sequence[str | None]) -> Any:
    if all(_INT.match(label) for label in labels if label is not None):
        return lambda c: (int(c), c)
    return lambda c: c


def check_unique_keys(keys: Sequence[str], where: str) -> None:
    """Keys name items in indexes, label files and results, so two items may never share one."""
    if len(set(keys)) != len(keys):
        dup, count = next((k, c) for k, c in Counter(keys).items() if c > 1)
        raise SiameseError(f"duplicate keys in {where}: {dup!r} appears {count} times; every item needs a unique key")

