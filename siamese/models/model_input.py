"""The hand-off from data to models: validate items against a model and map them into its space."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SiameseError


def model_normalization(model):
    """The Normalization the model was trained with (identity if none was recorded)."""
    from ..data.loading import Normalization

    return Normalization.from_dict(model.info["normalization"]) if "normalization" in model.info else Normalization()


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
        target = model_normalization(model)
        if items.normalization != target:
            x = target.apply(items.normalization.invert(x))
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
