"""siamese: metric learning on unlabeled data.

Pretrain an encoder as an autoencoder, fine-tune it as a Siamese network on a few same/different
pairs, and search, classify and score items with a FAISS index (the `index` package).

The public names load on first use, so `siamese --help` and torch-free tools do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "ItemSet": ".data.loading",
    "Normalization": ".data.loading",
    "load_items": ".data.loading",
    "SiameseError": ".errors",
    "load_codes": ".inference.codes",
    "save_codes": ".inference.codes",
    "write_codes": ".inference.codes",
    "embed": ".inference.embed",
    "reconstruct": ".inference.embed",
    "latent_manifold": ".inference.generate",
    "sample": ".inference.generate",
    "reconstruct_to_dir": ".inference.reconstruct",
    "VARIANTS": ".models.autoencoder",
    "Autoencoder": ".models.autoencoder",
    "AutoencoderConfig": ".models.autoencoder",
    "load_model": ".models.checkpoint",
    "NetworkConfig": ".models.networks",
    "save_model": ".models.saving",
    "Bundle": ".retrieval.bundle",
    "export_bundle": ".retrieval.bundle",
    "load_bundle": ".retrieval.bundle",
    "Calibration": ".retrieval.calibration",
    "calibrate": ".retrieval.calibration",
    "load_calibration": ".retrieval.calibration",
    "save_calibration": ".retrieval.calibration",
    "add_items": ".retrieval.indexing",
    "build_index": ".retrieval.indexing",
    "open_index": ".retrieval.indexing",
    "rebuild_index": ".retrieval.indexing",
    "FinetuneConfig": ".training.finetune",
    "finetune": ".training.finetune",
    "TrainConfig": ".training.loop",
    "pretrain": ".training.pretrain",
    "__version__": ".version",
}

__all__ = [
    "VARIANTS",
    "Autoencoder",
    "AutoencoderConfig",
    "Bundle",
    "Calibration",
    "FinetuneConfig",
    "ItemSet",
    "NetworkConfig",
    "Normalization",
    "SiameseError",
    "TrainConfig",
    "__version__",
    "add_items",
    "build_index",
    "calibrate",
    "embed",
    "export_bundle",
    "finetune",
    "latent_manifold",
    "load_bundle",
    "load_calibration",
    "load_codes",
    "load_items",
    "load_model",
    "open_index",
    "pretrain",
    "rebuild_index",
    "reconstruct",
    "reconstruct_to_dir",
    "sample",
    "save_calibration",
    "save_codes",
    "save_model",
    "write_codes",
]

if TYPE_CHECKING:
    from .data.loading import ItemSet, Normalization, load_items
    from .errors import SiameseError
    from .inference.codes import load_codes, save_codes, write_codes
    from .inference.embed import embed, reconstruct
    from .inference.generate import latent_manifold, sample
    from .inference.reconstruct import reconstruct_to_dir
    from .models.autoencoder import VARIANTS, Autoencoder, AutoencoderConfig
    from .models.checkpoint import load_model
    from .models.networks import NetworkConfig
    from .models.saving import save_model
    from .retrieval.bundle import Bundle, export_bundle, load_bundle
    from .retrieval.calibration import (
        Calibration,
        calibrate,
        load_calibration,
        save_calibration,
    )
    from .retrieval.indexing import add_items, build_index, open_index, rebuild_index
    from .training.finetune import FinetuneConfig, finetune
    from .training.loop import TrainConfig
    from .training.pretrain import pretrain
    from .version import __version__


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'siamese' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
