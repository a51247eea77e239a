"""Model directories: `config.json` + `model.safetensors` (+ `history.csv`, `checkpoint/`).

No pickle anywhere: weights are safetensors, everything else JSON/CSV. The fingerprint is a
sha256 over the weights (names, dtypes, shapes, bytes), so an index can tell which model made
its vectors.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from index.atomic import atomic_directory

from .autoencoders import Autoencoder, AutoencoderConfig
from .errors import SiameseError
from .models import NetworkConfig

FORMAT = "siamese-model"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE, CHECKPOINT_DIR = "config.json", "model.safetensors", "history.csv", "checkpoint"


def fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every weight and buffer, in name order: identical weights <=> identical fingerprint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import faiss
    import numpy
    import pytorch_metric_learning

    from . import __version__

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


def save_model(model: Autoencoder, directory: str | Path, *, keep_extras_from: str | Path | None = None) -> Path:
    """Write the model directory atomically; history.csv and checkpoint/ are carried over from
    `keep_extras_from` (default: the directory being replaced)."""
    directory = Path(directory)
    extras_dir = Path(keep_extras_from) if keep_extras_from is not None else directory
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    record = model_record(model)
    with atomic_directory(directory) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"fingerprint": record["fingerprint"]})
        (tmp / CONFIG_FILE).write_text(json.dumps(record, indent=2))
        if (extras_dir / HISTORY_FILE).is_file():
            shutil.copy2(extras_dir / HISTORY_FILE, tmp / HISTORY_FILE)
        if (extras_dir / CHECKPOINT_DIR).is_dir():
            shutil.copytree(extras_dir / CHECKPOINT_DIR, tmp / CHECKPOINT_DIR)
    return directory


def read_model_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise SiameseError(f"model directory {directory} does not exist; train one with `siamese pretrain`")
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise SiameseError(f"{path} is missing: {directory} is not a siamese model directory") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiameseError(f"{path} is not valid JSON ({exc}); the model directory is damaged") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SiameseError(f"{path} is not a siamese model config (expected format {FORMAT!r})")
    if record.get("format_version") != FORMAT_VERSION:
        raise SiameseError(f"{path} has format_version {record.get('format_version')}, this library reads "
                           f"{FORMAT_VERSION}; upgrade siamese or re-save the model")
    return record


def load_model(directory: str | Path, *, verify: bool = True) -> Autoencoder:
    """Rebuild the exact model saved in `directory` (eval mode); checks the weights' fingerprint."""
    record = read_model_config(directory)
    weights = Path(directory) / WEIGHTS_FILE
    try:
        model = Autoencoder(AutoencoderConfig.from_dict(record["autoencoder"]),
                            NetworkConfig.from_dict(record["network"]))
        model.info = dict(record.get("info") or {})
    except (KeyError, TypeError) as exc:
        raise SiameseError(f"{Path(directory) / CONFIG_FILE} lacks a valid model description ({exc})") from None
    try:
        tensors = load_file(str(weights))
    except FileNotFoundError:
        raise SiameseError(f"{weights} is missing; the model directory is incomplete") from None
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise SiameseError(f"{weights} is not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise SiameseError(f"{weights} does not match the architecture in config.json ({str(exc)[:160]})") from None
    model.eval()
    if verify and fingerprint(model) != record["fingerprint"]:
        raise SiameseError(f"{weights} does not match the fingerprint in config.json: the file was changed "
                           "or damaged; re-save or re-train the model")
    return model
