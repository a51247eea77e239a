"""The Reader protocol every source implements: n items with keys, optional labels and raw values read by range.

Readers return *raw* float32 values (pixels 0..255, sklearn digits too, vectors as stored); siamese.data.loading chooses
the Normalization, applies it and wraps the result in ItemSets. Image items are (C, H, W); vector items are (D,).
"""

from __future__ import annotations

import numpy as np
import torch

from ..preprocessing import DEFAULT_RESIZE


class Reader:
    """n items with keys and optional labels; read(start, stop) returns raw values and the positions kept."""

    description: str
    keys: list[str]
    labels: list[str | None] | None
    fixed_norm: tuple[float, float] | None = None  # (offset, scale) dictated by the source; None = infer
    skipped: list[tuple[str, str]]  # (key, reason) of unreadable items dropped with on_error="skip"

    def limit(self, n: int) -> None:
        self.keys = self.keys[:n]
        self.labels = None if self.labels is None else self.labels[:n]

    def prepare(self, channels: int | None, image_size: tuple[int, int] | None, on_error: str,
                resize: str = DEFAULT_RESIZE) -> None:
        """Validate and settle the item shape before any chunk is read."""

    @property
    def item_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def value_range(self) -> tuple[float, float]:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, np.ndarray]:
        raise NotImplementedError
