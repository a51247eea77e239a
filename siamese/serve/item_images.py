"""Indexed items as PNG, read back from the source the index recorded (never from a client path),
through the model's preprocessing: the page shows what the model sees.

Sources read whole (a .npy, an MNIST file, a dataset) are kept after the first read when they are
small enough; image folders are read one file per item. Rendered PNGs are kept in an LRU cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch
from torchvision.io import encode_png

from ..errors import SiameseError
from ..retrieval.item_sources import read_indexed_items
from .errors import NotFound

MAX_CACHED_IMAGES = 4096
MAX_KEPT_SOURCE_BYTES = 512 * 2**20


def to_png(item: np.ndarray) -> bytes:
    """(C, H, W) values of any range -> 8-bit PNG bytes, each image stretched to its own min..max."""
    lo, hi = float(item.min()), float(item.max())
    scaled = (item - lo) / (hi - lo) if hi > lo else np.full_like(item, 0.5)
    pixels = torch.from_numpy(np.ascontiguousarray(np.clip(scaled * 255 + 0.5, 0, 255).astype(np.uint8)))
    return bytes(encode_png(pixels).numpy())


class ItemImages:
    """PNG bytes of indexed items by id, for models whose items are images (C, H, W)."""

    def __init__(self, index, preprocessing, item_shape: tuple[int, ...]) -> None:
        self._index = index
        self._preprocessing = preprocessing
        self.problem = None if len(item_shape) == 3 and item_shape[0] in (1, 3) else \
            "the indexed items are vectors, not images: there is nothing to draw"
        self._sources: dict = {}
        self._pngs: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.problem is None

    def check(self, item_id: int, key: str) -> None:
        """Draw one item now: a source that moved or cannot be read is reported once at start-up
        (and images are then off), not on every request."""
        if self.available:
            try:
                self.png(item_id, key)
            except SiameseError as exc:
                self.problem = f"item images are off: {exc}"

    def png(self, item_id: int, key: str) -> bytes:
        """The item `item_id` (whose key is `key`) as PNG."""
        if self.problem is not None:
            raise NotFound(self.problem)
        with self._lock:
            if item_id in self._pngs:
                self._pngs.move_to_end(item_id)
                return self._pngs[item_id]
            found = read_indexed_items(self._index, [key], loaded=self._sources, preprocessing=self._preprocessing)
            items, position = found[key]
            data = to_png(items.x[position].numpy())
            for source, (kept, _) in list(self._sources.items()):
                if kept.x.element_size() * kept.x.nelement() > MAX_KEPT_SOURCE_BYTES:
                    del self._sources[source]  # read again next time rather than hold it twice
            self._pngs[item_id] = data
            while len(self._pngs) > MAX_CACHED_IMAGES:
                self._pngs.popitem(last=False)
            return data
