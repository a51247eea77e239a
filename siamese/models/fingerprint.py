"""A model's fingerprint: sha256 over its weights (names, dtypes, shapes, bytes), its architecture and
the `info` fields that change what it computes (BEHAVIOUR_INFO). Indexes record it to tell which model
made their vectors, and a model directory whose config.json was edited no longer matches it."""

from __future__ import annotations

import hashlib
import json

import torch

# `info` fields that change what the model computes or how its distances are read (fingerprinted)
BEHAVIOUR_INFO = ("metric", "normalization", "preprocessing", "threshold")


def fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every weight and buffer in name order and, for an Autoencoder, of its
    architecture and BEHAVIOUR_INFO: equal fingerprints <=> the same embedding and distances."""
    digest = weights_digest(model)
    if hasattr(model, "config") and hasattr(model, "network"):  # an Autoencoder: also what it computes
        described = {"autoencoder": model.config.to_dict(), "network": model.network.to_dict(),
                     "info": {key: model.info[key] for key in BEHAVIOUR_INFO if key in model.info}}
        digest.update(b"|described|" + json.dumps(described, sort_keys=True).encode())
    return digest.hexdigest()


def weights_digest(model: torch.nn.Module) -> "hashlib._Hash":
    """sha256 over every weight and buffer in name order (all that fingerprints covered before 0.2)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return digest
