"""Writing a model directory: `config.json` + `model.safetensors` (+ `history.csv`, `checkpoint/`,
`calibration.json`), atomically and only over an earlier model (index.atomic). No pickle anywhere:
weights are safetensors, everything else JSON/CSV. Reading one back, as untrusted input, is
models/checkpoint.py."""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from index import safe_json
from index.atomic import atomic_directory

from ..errors import SiameseError
from .fingerprint import fingerprint

if TYPE_CHECKING:
    from .autoencoder import Autoencoder

FORMAT = "siamese-model"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
HISTORY_FILE, CHECKPOINT_DIR = "history.csv", "checkpoint"
CALIBRATION_FILE = "calibration.json"  # written by `siamese calibrate` beside the weights it was made for


def library_versions() -> dict[str, str]:
    import faiss
    import numpy
    import pytorch_metric_learning

    from ..version import __version__

    return {"siamese": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "faiss": getattr(faiss, "__version__", "unknown"),
            "pytorch_metric_learning": pytorch_metric_learning.__version__, "python": platform.python_version()}


def model_record(model: Autoencoder) -> dict:
    """Everything config.json holds; also copied into indexes built with the model."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint(model),
        "autoencoder": model.config.to_dict(),
        "network": model.network.to_dict(),
        "info": model.info,
        "versions": library_versions(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def save_model(model: Autoencoder, directory: str | Path, *, keep_extras_from: str | Path | None = None,
               overwrite: bool = False) -> Path:
    """Write the model directory atomically; history.csv and checkpoint/ are carried over from
    `keep_extras_from` (default: the directory being replaced), and so is calibration.json when it
    was made for these very weights (for other weights it would be stale)."""
    directory = Path(directory)
    extras_dir = Path(keep_extras_from) if keep_extras_from is not None else directory
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    record = model_record(model)
    with atomic_directory(directory, "model", overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"fingerprint": record["fingerprint"]})
        text = safe_json.dumps(record, f"the model's {CONFIG_FILE}", "keep model.info small and shallow",
                               error=SiameseError, indent=2)
        (tmp / CONFIG_FILE).write_text(text)
        if (extras_dir / HISTORY_FILE).is_file():
            shutil.copy2(extras_dir / HISTORY_FILE, tmp / HISTORY_FILE)
        if (extras_dir / CHECKPOINT_DIR).is_dir():
            shutil.copytree(extras_dir / CHECKPOINT_DIR, tmp / CHECKPOINT_DIR)
        if _calibrated_for(extras_dir / CALIBRATION_FILE, record["fingerprint"]):
            shutil.copy2(extras_dir / CALIBRATION_FILE, tmp / CALIBRATION_FILE)
    return directory


def _calibrated_for(path: Path, fingerprint: str) -> bool:
    """`path` is a calibration file made for the model with this fingerprint."""
    try:
        return safe_json.read_json(path, str(path), "").get("model_fingerprint") == fingerprint
    except (OSError, ValueError):  # missing or unreadable: nothing to keep
        return False
