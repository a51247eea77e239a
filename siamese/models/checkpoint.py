"""Reading a model directory back, as untrusted input: every field of config.json that decides an
allocation is type-checked and bounded, and checked against the safetensors header, before anything
is allocated; the weights and config are then checked against the fingerprint (models/fingerprint.py).
Writing one is models/saving.py.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from index import safe_json
from index.atomic import read_consistently

from ..data.normalization import Normalization
from ..data.preprocessing import Preprocessing
from ..errors import SiameseError
from .autoencoder import Autoencoder, AutoencoderConfig
from .fingerprint import matches_fingerprint, weights_digest
from .metrics import METRICS
from .networks import NetworkConfig
from .saving import CONFIG_FILE, FORMAT, FORMAT_VERSION, WEIGHTS_FILE

# Values of one input item (C x H x W). A conv model's weights fix C but not H and W, so a config
# could otherwise claim inputs of any size and make every embed or decode allocate that much.
MAX_INPUT_VALUES = 4096 * 4096 * 4
MAX_STAGES = 32  # hidden layers (mlp) or conv stages listed in `widths` (the defaults have 2 and 3)
_DAMAGED = "the model directory is damaged: restore it from a good copy or train the model again"


def read_model_config(directory: str | Path) -> dict:
    """config.json, bounded and shape-checked: format, fingerprint, and the sections as objects."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        what = "is a file, not a model directory" if directory.exists() else "does not exist"
        raise SiameseError(f"model directory {directory} {what}; train one with `siamese pretrain`")
    try:
        record = safe_json.read_json(path, str(path), _DAMAGED, error=SiameseError)
    except FileNotFoundError:
        raise SiameseError(f"{path} is missing: {directory} is not a siamese model directory") from None
    if record.get("format") != FORMAT:
        raise SiameseError(f"{path} is not a siamese model config (expected format {FORMAT!r})")
    version = record.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise SiameseError(f"{path} has format_version {str(version)[:20]}, this library reads "
                           f"{FORMAT_VERSION}; upgrade siamese or re-save the model")
    if not isinstance(record.get("fingerprint"), str):
        raise SiameseError(f"{path} has no valid fingerprint; {_DAMAGED}")
    for section in ("autoencoder", "network", "info"):
        if not isinstance(record.get(section, {}), dict):
            raise SiameseError(f"{path} field {section!r} must be an object, got "
                               f"{type(record[section]).__name__}; {_DAMAGED}")
    _check_info(record.get("info", {}), path)
    return record


def _check_info(info: dict, path: Path) -> None:
    """The BEHAVIOUR_INFO fields hold what the code reading them expects."""
    if "metric" in info and info["metric"] not in METRICS:
        raise SiameseError(f"{path} has info metric {str(info['metric'])[:20]!r}, not one of {', '.join(METRICS)}; "
                           f"{_DAMAGED}")
    if "normalization" in info:
        try:
            Normalization.from_dict(info["normalization"])
        except SiameseError as exc:
            raise SiameseError(f"{path} has an invalid info normalization ({str(exc)[:80]}); {_DAMAGED}") from None
    if "preprocessing" in info:
        try:
            Preprocessing.from_dict(info["preprocessing"])
        except SiameseError as exc:
            raise SiameseError(f"{path} has an invalid info preprocessing ({str(exc)[:80]}); {_DAMAGED}") from None
    threshold = info.get("threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise SiameseError(f"{path} has info threshold {str(threshold)[:20]}, not a finite number; {_DAMAGED}")


_FIELD_TYPES = {  # annotation of a config dataclass field -> (check of the JSON value, what it must be)
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v)),
              "a finite number"),
    "bool | None": (lambda v: v is None or isinstance(v, bool), "true, false or null"),
    "tuple[int, ...]": (lambda v: isinstance(v, list) and len(v) <= MAX_STAGES
                        and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
                        f"a list of at most {MAX_STAGES} integers"),
}


def _check_fields(cls: type, data: dict, section: str, path: Path) -> None:
    """Each known field of a config section has its dataclass field's JSON type (unknown or
    missing fields are left to the dataclass, which refuses them)."""
    for field in dataclasses.fields(cls):
        check, wanted = _FIELD_TYPES.get(str(field.type), (lambda v: True, ""))
        if field.name in data:
            if not check(data[field.name]):
                raise SiameseError(f"{path} field {section}.{field.name} must be {wanted}, got "
                                   f"{str(data[field.name])[:40]}; {_DAMAGED}")


def _describe_network(record: dict, config_path: Path) -> tuple[AutoencoderConfig, NetworkConfig]:
    """The architecture in config.json, checked by building it on the meta device (no memory),
    so a damaged or hostile config cannot allocate huge layers or crash deep in torch."""
    _check_fields(AutoencoderConfig, record.get("autoencoder", {}), "autoencoder", config_path)
    _check_fields(NetworkConfig, record.get("network", {}), "network", config_path)
    shape = record.get("network", {}).get("input_shape", [])
    if not 1 <= len(shape) <= 3 or math.prod(shape) > MAX_INPUT_VALUES:
        raise SiameseError(f"{config_path} has input shape {str(shape)[:40]}: items must have 1 to 3 dimensions and "
                           f"at most {MAX_INPUT_VALUES} values; {_DAMAGED}")
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
    model.info = dict(record.get("info", {}))
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
    _ = model.preprocessing  # a record that contradicts the architecture is refused here, not at first use
    if verify and not matches_fingerprint(model, record["fingerprint"]):
        if weights_digest(model).hexdigest() == record["fingerprint"]:
            raise SiameseError(
                f"{directory} was saved by siamese 0.1, whose fingerprint covered the weights but not config.json, "
                f"so its metric and normalisation cannot be checked; if you trust it, re-save it once with "
                f"siamese.load_model(DIR, verify=False).save(NEW_DIR) and re-embed its indexes (siamese index rebuild)")
        raise SiameseError(f"{weights} does not match the fingerprint in config.json: the file was changed "
                           "or damaged; re-save or re-train the model")
    return model


def load_model(directory: str | Path, *, verify: bool = True) -> Autoencoder:
    """Rebuild the exact model saved in `directory` (eval mode); checks the weights' fingerprint.

    A save by another process while loading is waited out (old model or new, never a mix)."""
    directory = Path(directory)
    return read_consistently(directory, lambda: _load_once(directory, verify), (SiameseError,))
