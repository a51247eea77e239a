"""Load items (images or vectors) from folders, files, datasets or arrays into normalised float32 ItemSets.

Every model stores the Normalization of its training data, so queries passed through
``load_items(..., normalization=model_norm)`` land in the same space. Source readers live in
siamese.data.sources; this module holds the public API, validation and the loading plan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SiameseError
from . import sources
from .item_set import ItemSet, check_unique_keys
from .labels import check_known_keys, read_labels_csv
from .limits import MAX_IMAGE_SIDE, MAX_PIXELS
from .normalization import Normalization
from .preprocessing import DEFAULT_RESIZE, Preprocessing, check_resize, resize_images
from .sources import open_reader as _open_reader
from .sources.arrays import RowKeys

log = logging.getLogger(__name__)

__all__ = ["Normalization", "Preprocessing", "ItemSet", "ItemChunks", "load_items", "iter_item_chunks",
           "read_labels_csv", "describe_source"]


def describe_source(source: Any) -> str:
    """Short human description (for logs and model metadata); raises SiameseError for unusable sources."""
    if isinstance(source, ItemSet):
        return source.source
    kind, detail = sources.classify(source)
    if kind == "array":
        return f"in-memory array of shape {tuple(np.shape(detail))}"
    if kind == "files":
        return f"image file {detail[0]}" if len(detail) == 1 else f"{len(detail)} image files ({detail[0]}, ...)"
    return {"folder": "image folder {}", "image": "image file {}", "npy": "npy file {}", "npz": "npz file {}",
            "csv": "csv file {}", "mnist-idx": "MNIST idx files in {}", "torchvision": "torchvision {}",
            "sklearn": "sklearn {} (1797 8x8 images)"}[kind].format(detail)


def _image_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else \
        tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                 and 0 < s <= MAX_IMAGE_SIDE for s in size):
        raise SiameseError(f"--image-size {image_size!r}: expected N or H W, integers in 1..{MAX_IMAGE_SIDE}")
    return int(size[0]), int(size[1])


def _labels_override(reader: sources.Reader, labels: Any) -> None:
    """labels: LABELS.csv path, key->label mapping, or one label per item (before limit)."""
    if labels is None:
        return
    if isinstance(labels, (str, Path)):
        labels = read_labels_csv(labels)
    if isinstance(labels, Mapping):
        check_known_keys(labels, reader.keys, reader.description)
        reader.labels = [sources.label_str(labels[k]) if k in labels else None for k in reader.keys]
    else:
        reader.labels = sources.labels_to_strings(labels, len(reader.keys), reader.description)


def _target_shape(shape: tuple[int, ...], channels: int | None, size: tuple[int, int] | None,
                  what: str) -> tuple[int, ...]:
    """Item shape after channel conversion / resizing; vectors accept neither."""
    if len(shape) != 3:
        if channels is not None or size is not None:
            raise SiameseError(f"{what} holds vectors of shape {shape}; --channels and --image-size only apply "
                               "to images")
        return shape
    c = shape[0] if channels is None else channels
    without_alpha = shape[0] - 1 if shape[0] in (2, 4) else shape[0]
    if channels is not None and shape[0] != channels and without_alpha not in (1, 3):
        raise SiameseError(f"{what} has {shape[0]}-channel images; cannot convert them to --channels {channels}")
    return (c, *(size or shape[1:]))


def _infer_normalization(lo: float, hi: float) -> Normalization:
    """Global min-max to [0, 1]; data already in [0, 1] is left alone."""
    if lo >= 0.0 and hi <= 1.0:
        return Normalization(0.0, 1.0)
    return Normalization(lo, hi - lo if hi > lo else 1.0)


def _take(keys, positions: np.ndarray) -> list[str]:
    """keys[positions] as a list; default row keys are made here, one chunk at a time."""
    if isinstance(keys, RowKeys):
        return keys.take(positions)
    return [keys[i] for i in positions.tolist()]


@dataclass
class _Plan:
    reader: sources.Reader
    normalization: Normalization
    shape: tuple[int, ...]
    channels: int | None
    size: tuple[int, int] | None
    resize: str

    def chunk(self, start: int, stop: int) -> ItemSet:
        x, kept = self.reader.read(start, stop)
        if x.ndim == 4 and tuple(x.shape[1:]) != self.shape:
            x = sources.to_channels(x, self.channels)
            if self.size is not None:
                x = resize_images(x, self.size, self.resize)
        keys = _take(self.reader.keys, kept)
        labels = None if self.reader.labels is None else [self.reader.labels[i] for i in kept.tolist()]
        x = self.normalization.apply(x).contiguous()
        return ItemSet(x, keys, labels, self.normalization, self.reader.description, self.resize)


def _plan(source: Any, labels: Any, image_size: Any, channels: int | None, normalization: Any, on_error: str,
          root: str | Path | None, download: bool, split: str | None, limit: int | None, max_pixels: int,
          resize: str) -> _Plan:
    check_resize(resize)
    if on_error not in ("raise", "skip"):
        raise SiameseError(f"--on-error {on_error!r}: expected raise or skip")
    if channels not in (None, 1, 3):
        raise SiameseError(f"--channels {channels!r}: expected 1 (grayscale) or 3 (RGB); leave it out to infer")
    if split not in (None, "train", "test"):
        raise SiameseError(f"split={split!r}; expected 'train', 'test' or None (both)")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise SiameseError(f"--limit {limit!r}: expected a positive number of items")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise SiameseError(f"max_pixels={max_pixels!r} (--max-pixels); expected a positive number of pixels")
    if isinstance(normalization, Mapping):
        normalization = Normalization.from_dict(normalization)
    size = _image_size(image_size)
    reader = _open_reader(source, root, download, split, max_pixels=int(max_pixels),
                          limit=None if limit is None else int(limit))
    _labels_override(reader, labels)
    if limit is not None:
        reader.limit(int(limit))
    if not isinstance(reader.keys, RowKeys):  # row numbers are unique by construction
        check_unique_keys(reader.keys, reader.description)
    reader.prepare(channels, size, on_error, resize)
    shape = _target_shape(reader.item_shape, channels, size, reader.description)
    if normalization is None:
        fixed = reader.fixed_norm
        normalization = Normalization(*fixed) if fixed else _infer_normalization(*reader.value_range())
    return _Plan(reader, normalization, shape, channels, size, resize)


def _reuse(items: ItemSet, labels: Any, image_size: Any, channels: int | None, normalization: Any,
           limit: int | None, resize: str) -> ItemSet:
    """An existing ItemSet, trimmed/relabelled/reshaped and re-normalised only where asked."""
    if limit is not None:
        items = items.subset(np.arange(min(int(limit), len(items))))
    if labels is not None:
        if isinstance(labels, (str, Path)):
            labels = read_labels_csv(labels)
        items = items.with_labels(labels) if isinstance(labels, Mapping) else \
            replace(items, labels=sources.labels_to_strings(labels, len(items), items.source))
    if isinstance(normalization, Mapping):
        normalization = Normalization.from_dict(normalization)
    size = _image_size(image_size)
    shape = _target_shape(items.item_shape, channels, size, items.source)
    x = items.x
    if normalization is not None and normalization != items.normalization:
        x = normalization.apply(items.normalization.invert(x))
    if shape != items.item_shape:  # resizing and gray/RGB are affine-safe in normalised space
        x = sources.to_channels(x, channels)
        x = resize_images(x, shape[1:], check_resize(resize))
    if x is items.x:
        return items
    resized = shape[1:] != items.item_shape[1:]
    return replace(items, x=x.contiguous(), normalization=normalization or items.normalization,
                   resize=resize if resized else items.resize)


def _pipeline(preprocessing: Preprocessing | None, image_size: Any, channels: int | None, resize: str | None,
              normalization: Any) -> tuple[Any, int | None, str, Any]:
    """(image_size, channels, resize, normalization): the explicit options, else the preprocessing's."""
    if preprocessing is None:
        return image_size, channels, resize or DEFAULT_RESIZE, normalization
    if not isinstance(preprocessing, Preprocessing):
        raise SiameseError(f"preprocessing must be a Preprocessing (model.preprocessing), got "
                           f"{type(preprocessing).__name__}")
    size = _image_size(image_size)
    if preprocessing.image_size is not None and size not in (None, preprocessing.image_size):
        raise SiameseError(f"--image-size {size[0]} {size[1]} does not fit the model, which takes "
                           f"{preprocessing.describe()} images; leave --image-size out to use the model's own")
    if preprocessing.channels is not None and channels not in (None, preprocessing.channels):
        raise SiameseError(f"--channels {channels} does not fit the model, which takes {preprocessing.describe()} "
                           "images; leave --channels out to use the model's own")
    if resize is not None and resize != preprocessing.resize:
        log.warning("--resize %s overrides the model's %s", resize, preprocessing.resize)
    return (image_size if image_size is not None else preprocessing.image_size,
            channels if channels is not None else preprocessing.channels, resize or preprocessing.resize,
            normalization if normalization is not None else preprocessing.normalization)


def _log_skipped(reader: sources.Reader) -> None:
    if reader.skipped:
        key, reason = reader.skipped[0]
        log.warning("skipped %d unreadable image files in %s (first: %s: %s)",
                    len(reader.skipped), reader.description, key, reason)


class ItemChunks(Iterator[ItemSet]):
    """ItemSets of one source, chunk by chunk, plus `total`: how many items the source lists, known
    before the first chunk is read (an upper bound when unreadable files get skipped), so a consumer
    can size its storage once instead of growing it."""

    def __init__(self, chunks: Iterator[ItemSet], total: int) -> None:
        self._chunks, self.total = chunks, int(total)

    def __iter__(self) -> "ItemChunks":
        return self

    def __next__(self) -> ItemSet:
        return next(self._chunks)


def iter_item_chunks(source: Any, chunk_size: int, *, labels: Any = None,
                     image_size: int | tuple[int, int] | None = None, channels: int | None = None,
                     normalization: Normalization | Mapping | None = None, resize: str | None = None,
                     preprocessing: Preprocessing | None = None, on_error: str = "raise",
                     root: str | Path | None = None, download: bool = False, split: str | None = None,
                     limit: int | None = None, max_pixels: int = MAX_PIXELS) -> ItemChunks:
    """ItemSets of <= chunk_size items in source order; memory is bounded by the chunk (files decode per chunk,
    .npy is read by range). All chunks share one Normalization, inferred up front if not given.
    Arguments are validated (and the source opened) on the call, not on the first next()."""
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise SiameseError(f"--chunk-size {chunk_size!r}: expected a positive number of items")
    image_size, channels, resize, normalization = _pipeline(preprocessing, image_size, channels, resize, normalization)
    if isinstance(source, ItemSet):
        items = _reuse(source, labels, image_size, channels, normalization, limit, resize)
        parts = (items.subset(np.arange(i, min(i + chunk_size, len(items)))) for i in range(0, len(items), chunk_size))
        return ItemChunks(parts, len(items))
    plan = _plan(source, labels, image_size, channels, normalization, on_error, root, download, split, limit,
                 max_pixels, resize)
    return ItemChunks(_chunks(plan, int(chunk_size)), len(plan.reader.keys))


def _chunks(plan: _Plan, chunk_size: int) -> Iterator[ItemSet]:
    total = 0
    for start in range(0, len(plan.reader.keys), chunk_size):
        part = plan.chunk(start, min(start + chunk_size, len(plan.reader.keys)))
        total += len(part)
        if len(part):
            yield part
    _log_skipped(plan.reader)
    if total == 0:
        raise SiameseError(f"no readable items in {plan.reader.description} ({len(plan.reader.skipped)} skipped)")


def load_items(source: Any, *, labels: Any = None, image_size: int | tuple[int, int] | None = None,
               channels: int | None = None, normalization: Normalization | Mapping | None = None,
               resize: str | None = None, preprocessing: Preprocessing | None = None, on_error: str = "raise",
               root: str | Path | None = None, download: bool = False, split: str | None = None,
               limit: int | None = None, max_pixels: int = MAX_PIXELS) -> ItemSet:
    """Load a whole source into one ItemSet (see module docs for the accepted sources).

    labels: LABELS.csv path, {key: label} mapping, or one label per item; overrides labels from the source.
    normalization: apply this one (e.g. a trained model's) instead of the source default / inferred min-max.
    resize: how images are brought to image_size: "stretch" (default) or "crop" (keep the aspect ratio).
    preprocessing: a model's whole input pipeline (`model.preprocessing`): size, resize, channels and
    normalisation at once; an explicit resize or normalization overrides its part, an image_size or
    channels the model cannot take is refused.
    max_pixels: images whose header claims more pixels are refused before they are decoded.
    """
    image_size, channels, resize, normalization = _pipeline(preprocessing, image_size, channels, resize, normalization)
    if isinstance(source, ItemSet):
        return _reuse(source, labels, image_size, channels, normalization, limit, resize)
    plan = _plan(source, labels, image_size, channels, normalization, on_error, root, download, split, limit,
                 max_pixels, resize)
    items = plan.chunk(0, len(plan.reader.keys))
    _log_skipped(plan.reader)
    if len(items) == 0:
        raise SiameseError(f"no readable items in {plan.reader.description} ({len(plan.reader.skipped)} skipped)")
    log.info("loaded %d items of shape %s from %s (%s)", len(items), items.item_shape, items.source,
             f"{len(items.label_codes()[1])} classes" if items.has_labels else "unlabelled")
    return items
