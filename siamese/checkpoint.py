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
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from index.atomic import atomic_directory, read_consistently

from .autoencoders import Autoencoder, AutoencoderConfig
from .calibration import CALIBRATION_FILE
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
        (tmp / CONFIG_FILE).write_text(json.dumps(record, indent=2))
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
        return json.loads(path.read_text(encoding="utf-8")).get("model_fingerprint") == fingerprint
    except (OSError, ValueError, AttributeError):
        return False


def read_model_config(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        what = "is a file, not a model directory" if directory.exists() else "does not exist"
        raise SiameseError(f"model directory {directory} {what}; train one with `siamese pretrain`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiameseError(f"{path} is missing: {directory} is not a siamese model directory") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiameseError(f"{path} is not valid JSON ({exc}); the model directory is damaged") from None
    except OSError as exc:
        raise SiameseError(f"{path} cannot be read ({exc.strerror or exc}); the model directory is damaged") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SiameseError(f"{path} is not a siamese model config (expected format {FORMAT!r})")
    if record.get("format_version") != FORMAT_VERSION:
        raise SiameseError(f"{path} has format_version {record.get('format_version')}, this library reads "
                           f"{FORMAT_VERSION}; upgrade siamese or re-save the model")
    if not isinstance(record.get("fingerprint"), str):
        raise SiameseError(f"{path} has no valid fingerprint; the model directory is damaged")
    return record


def _describe_network(record: dict, config_path: Path) -> tuple[AutoencoderConfig, NetworkConfig]:
    """The architecture in config.json, checked by building it on the meta device (no memory),
    so a damaged or hostile config cannot allocate huge layers or crash deep in torch."""
    try:
        config = AutoencoderConfig.from_dict(record["autoencoder"])
        network = NetworkConfig.from_dict(record["network"])
        with torch.device("meta"):
            Autoencoder(config, network)
    except Exception as exc:  # any failure to build means a config that does not describe a model
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise SiameseError(f"{config_path} lacks a valid model description ({reason}); "
                           "the model directory is damaged") from None
    return config, network


def _weight_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header (data not read)."""
    try:
        with safe_open(str(weights), framework="pt") as fh:
            return {name: tuple(fh.get_slice(name).get_shape()) for name in fh.keys()}
    except FileNotFoundError:
        raise SiameseError(f"{weights} is missing; the model directory is incomplete") from None
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise SiameseError(f"{weights} is not a readable safetensors file ({exc})") from None


def _load_once(directory: Path, verify: bool) -> Autoencoder:
    record = read_model_config(directory)
    weights = directory / WEIGHTS_FILE
    config, network = _describe_network(record, directory / CONFIG_FILE)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Autoencoder(config, network).state_dict().items()}
    if _weight_shapes(weights) != expected:
        raise SiameseError(f"{weights} does not match the architecture in config.json (tensor names or "
                           "shapes differ); the model directory is damaged or mixed up")
    model = Autoencoder(config, network)
    model.info = dict(record.get("info") or {})
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


def load_model(directory: str | Path, *, verify: bool = True) -> Autoencoder:
    """Rebuild the exact model saved in `directory` (eval mode); checks the weights' fingerprint.

    A save by another process while loading is waited out (old model or new, never a mix)."""
    directory = Path(directory)
    return read_consistently(directory, lambda: _load_once(directory, verify), (SiameseError,))
