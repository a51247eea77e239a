"""The one inference path: items -> float32 embeddings of shape (n, d), in batches."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import SiameseError
from ..models.autoencoder import Autoencoder
from ..models.model_input import as_model_input


def embed(model: Autoencoder, items, *, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """Encode items (ItemSet, array or tensor of shape (n, *input_shape)) into z.

    Runs in eval mode under `torch.inference_mode`, batch by batch, and returns a C-contiguous
    float32 ndarray of shape (n, latent_dim) ready for `index.VectorIndex`. Items given as an
    ItemSet are first mapped into the model's normalisation.
    """
    return map_batches(model, items, model.encode, batch_size, progress, "embed")


def reconstruct(model: Autoencoder, items, *, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """Reconstructions in the normalised [0, 1] space, shape (n, *input_shape)."""
    return map_batches(model, items, model.reconstruct, batch_size, progress, "reconstruct")


def map_batches(model: Autoencoder, items, fn, batch_size: int, progress: bool, desc: str) -> np.ndarray:
    """Apply `fn` (a model method) to the items batch by batch in eval/inference mode."""
    if batch_size <= 0:
        raise SiameseError(f"batch_size must be positive, got {batch_size}")
    x = as_model_input(model, items)
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None  # filled in place: no list of batches plus a concatenated copy
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(x), batch_size), desc=desc, disable=None if progress else True, leave=False):
                batch = fn(x[start:start + batch_size]).float().cpu().numpy()
                if out is None:
                    out = np.empty((len(x), *batch.shape[1:]), dtype=np.float32)
                out[start:start + len(batch)] = batch
    finally:
        model.train(was_training)
    if out is None:
        raise SiameseError("no items to process: the input is empty")
    return out
