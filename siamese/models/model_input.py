"""The hand-off from data to models: validate items against a model and map them into its space."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.preprocessing import resize_images
from ..data.sources.image_decode import to_channels
from ..errors import SiameseError

if TYPE_CHECKING:
    from ..data.loading import ItemChunks


def model_normalization(model):
    """The Normalization the model was trained with (identity if none was recorded)."""
    return model.preprocessing.normalization


def as_model_input(model, items) -> torch.Tensor:
    """ItemSet / ndarray / tensor -> float32 tensor of shape (n, *model input shape).

    An ItemSet normalised differently from the training data is re-normalised with the model's
    own transform, so queries land in the same space as the indexed items. Raw arrays are taken
    as already normalised.
    """
    from ..data.loading import ItemSet

    expected = tuple(model.network.input_shape)
    if isinstance(items, ItemSet):
        x = items.x
        pipeline = model.preprocessing
        if items.normalization != pipeline.normalization:
            x = pipeline.normalization.apply(items.normalization.invert(x))
        if items.is_image and pipeline.image_size is not None and tuple(x.shape[1:]) != expected:
            x = resize_images(to_channels(x, pipeline.channels), pipeline.image_size, pipeline.resize)
    elif isinstance(items, (np.ndarray, torch.Tensor)):
        if isinstance(items, np.ndarray) and items.dtype.kind not in "biuf":
            raise SiameseError(f"items must be numeric, got dtype {items.dtype}")
        x = torch.as_tensor(np.asarray(items) if isinstance(items, np.ndarray) else items)
        if not (x.dtype.is_floating_point or x.dtype in (torch.uint8, torch.int32, torch.int64)):
            raise SiameseError(f"items must be numeric, got dtype {x.dtype}")
        x = x.float()
        if x.shape == expected:
            x = x.unsqueeze(0)
    else:
        raise SiameseError(f"items must be an ItemSet, ndarray or tensor, got {type(items).__name__}; "
                           "use siamese.load_items(...) for files and folders")
    if tuple(x.shape[1:]) != expected:
        if x.ndim >= 2 and int(np.prod(x.shape[1:])) == int(np.prod(expected)):
            x = x.reshape(len(x), *expected)
        else:
            raise SiameseError(f"items have shape {tuple(x.shape[1:])} but the model expects {expected}; "
                               "resize them (image_size=... / --image-size) or use a model trained on such items")
    if len(x) == 0:
        raise SiameseError("no items given: the item set is empty")
    if not torch.isfinite(x).all():
        raise SiameseError(f"items contain {int((~torch.isfinite(x)).sum())} NaN/inf values; clean the data first")
    return x.contiguous()


CHUNK_ITEMS = 65536  # items embedded at a time by chunked work (index build, embed --chunk): bounds memory
CHUNK_BYTES = "256MiB"  # the command line's --chunk-size: memory a chunk of items may take while it is embedded


def chunk_items(model, budget_bytes: int) -> int:
    """Items per chunk that keep one chunk (its float32 inputs and their embeddings) within budget_bytes."""
    per_item = 4 * (math.prod(model.network.input_shape) + model.latent_dim)
    return max(1, int(budget_bytes) // per_item)


def model_chunks(model, source, chunk_size: int, data_options: dict) -> ItemChunks:
    """ItemSets of <= chunk_size items from any source, already in the model's normalisation;
    `.total` says how many items to expect."""
    from ..data.loading import ItemChunks, ItemSet, iter_item_chunks

    if isinstance(source, ItemSet):
        parts = (source.subset(range(start, min(len(source), start + chunk_size)))
                 for start in range(0, len(source), chunk_size))
        return ItemChunks(parts, len(source))
    options = {"preprocessing": model.preprocessing, **data_options}
    skip = options.pop("skip", 0)
    chunks = iter_item_chunks(source, chunk_size, **options)
    return ItemChunks(skip_items(chunks, skip), max(0, chunks.total - skip))


def skip_items(chunks, skip: int):
    """The chunks without their first `skip` items."""
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        yield chunk.subset(range(skip, len(chunk))) if skip else chunk
        skip = 0
