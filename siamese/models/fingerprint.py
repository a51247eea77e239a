"""A model's fingerprint: sha256 over its weights (names, dtypes, shapes, bytes), its architecture and
the `info` fields that change what it computes (BEHAVIOUR_INFO). Indexes record it to tell which model
made their vectors, and a model directory whose config.json was edited no longer matches it."""

from __future__ import annotations

import hashlib
import json

import torch

# `info` fields that change what the model computes or how its distances are read (fingerprinted)
BEHAVIOUR_INFO = ("metric", "normalization", "preprocessing", "threshold")
# AutoencoderConfig fields added after models were first saved -> the values that mean "as before the
# field existed": such values are not described, so the fingerprints of models saved before the field
# still match (a config.json without the field reads as its default, which must be one of them).
# neighbour_weight: None is "not chosen" (a config.json from before), 0.0 is "off" as `pretrain` records it.
LATER_FIELDS = {"view_weight": (0.0,), "view_temperature": (0.2,), "augment_strength": (1.0,),
                "neighbour_weight": (None, 0.0), "neighbour_k": (10,)}
# models saved while the view fields were always described (before augment_strength) still load
DESCRIBED_ALWAYS_BEFORE = (("view_weight", "view_temperature"),)


def fingerprint(model: torch.nn.Module, always_described: tuple[str, ...] = ()) -> str:
    """sha256 of every weight and buffer in name order and, for an Autoencoder, of its
    architecture and BEHAVIOUR_INFO: equal fingerprints <=> the same embedding and distances.
    always_described: LATER_FIELDS to describe even at their default (older saves did)."""
    digest = weights_digest(model)
    if hasattr(model, "config") and hasattr(model, "network"):  # an Autoencoder: also what it computes
        config = {key: value for key, value in model.config.to_dict().items()
                  if key not in LATER_FIELDS or key in always_described or value not in LATER_FIELDS[key]}
        described = {"autoencoder": config, "network": model.network.to_dict(),
                     "info": {key: model.info[key] for key in BEHAVIOUR_INFO if key in model.info}}
        digest.update(b"|described|" + json.dumps(described, sort_keys=True).encode())
    return digest.hexdigest()


def matches_fingerprint(model: torch.nn.Module, recorded: str) -> bool:
    """Whether `recorded` is the model's fingerprint as this or an earlier version wrote it."""
    return recorded in {fingerprint(model), *(fingerprint(model, fields) for fields in DESCRIBED_ALWAYS_BEFORE)}


def weights_digest(model: torch.nn.Module) -> "hashlib._Hash":
    """sha256 over every weight and buffer in name order (all that fingerprints covered before 0.2)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return digest
