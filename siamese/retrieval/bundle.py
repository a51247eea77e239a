"""One self-describing directory with everything needed to answer queries elsewhere.

    bundle/
      bundle.json        format + version, fingerprints, library versions, sha256 of every file
      model/             config.json + model.safetensors (the encoder and its normalisation)
      index/             the saved VectorIndex (its own manifest and checksums)
      calibration.json   the same/different threshold, when the model was calibrated

Written atomically (a crash leaves the old bundle or the new one). `load_bundle` checks the
manifest and every checksum before reading anything, reads only files bundle.json lists (an
unlisted calibration.json is refused, not used), and refuses a stale index (built by other
weights than the bundled model's): re-embed it with `siamese index rebuild INDEX MODEL DATA`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index import KNNClassifier, SearchResult, VectorIndex
from index.atomic import atomic_directory
from index.safe_json import read_json
from index.storage import file_entry, sha256_file

from ..errors import SiameseError
from ..models.autoencoder import Autoencoder
from ..models.checkpoint import load_model
from ..models.saving import CONFIG_FILE, WEIGHTS_FILE, library_versions
from .calibration import CALIBRATION_FILE, Calibration, calibration_with_index, load_calibration

logger = logging.getLogger(__name__)

FORMAT = "siamese-bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.json"
MODEL_DIR, INDEX_DIR = "model", "index"
_EXPORT_AGAIN = "export the bundle again"


def check_fresh(index: VectorIndex, model: Autoencoder, where: str = "the index") -> None:
    """Refuse an index whose vectors another model produced (a stale index)."""
    fingerprint = model.fingerprint()
    if index.model_fingerprint != fingerprint or index.dim != model.latent_dim:
        raise SiameseError(f"stale index: {where} was built by model {str(index.model_fingerprint)[:12]} but the "
                           f"model is {fingerprint[:12]}; re-embed it with `siamese index rebuild INDEX MODEL DATA`")


def export_bundle(model_dir: str | Path, index_dir: str | Path, out: str | Path, *, overwrite: bool = False,
                  untrusted_index: bool = False) -> Path:
    """Copy the model, its index and calibration into `out` with a checksummed bundle.json."""
    model_dir, index_dir, out = Path(model_dir), Path(index_dir), Path(out)
    model = load_model(model_dir)
    index = VectorIndex.load(index_dir, untrusted=untrusted_index)
    check_fresh(index, model, str(index_dir))
    calibration = calibration_with_index(model_dir, model, index, str(index_dir))
    with atomic_directory(out, "bundle", overwrite=overwrite) as tmp:
        (tmp / MODEL_DIR).mkdir()
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copy2(model_dir / name, tmp / MODEL_DIR / name)
        index.save(tmp / INDEX_DIR)  # a fresh consistent copy, whatever happens to index_dir meanwhile
        if calibration is not None:
            (tmp / CALIBRATION_FILE).write_text(json.dumps(calibration.to_dict(), indent=2))
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model_fingerprint": model.fingerprint(), "index_model_fingerprint": index.model_fingerprint,
            "metric": index.metric, "dim": index.dim, "count": len(index), "kind": index.kind,
            "calibrated": calibration is not None, "versions": library_versions(),
            "files": {name: file_entry(tmp / name) for name in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    logger.info("exported bundle %s (%d items, %d files)", out, len(index), len(manifest["files"]))
    return out


def read_bundle_manifest(path: str | Path) -> dict[str, Any]:
    """bundle.json, validated, with every listed file checked against its sha256."""
    path = Path(path)
    if not path.is_dir():
        raise SiameseError(f"bundle {path} does not exist; create one with `siamese export MODEL INDEX --out DIR`")
    try:
        manifest = read_json(path / MANIFEST, str(path / MANIFEST), _EXPORT_AGAIN, error=SiameseError)
    except FileNotFoundError:
        raise SiameseError(f"{path} has no {MANIFEST}: it is not a siamese bundle") from None
    if manifest.get("format") != FORMAT:
        raise SiameseError(f"{path / MANIFEST} is not a siamese bundle manifest (expected format {FORMAT!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise SiameseError(f"{path / MANIFEST} has format_version {str(version)[:20]}; this library "
                           f"reads {FORMAT_VERSION}: upgrade siamese or export the bundle again")
    files = manifest.get("files")
    required = {f"{MODEL_DIR}/{CONFIG_FILE}", f"{MODEL_DIR}/{WEIGHTS_FILE}", f"{INDEX_DIR}/manifest.json"}
    if not isinstance(files, dict) or not required <= set(files):
        raise SiameseError(f"{path / MANIFEST} does not list the model and index files; export the bundle again")
    for name, entry in files.items():
        shown = name[:60] if name[:60].isprintable() else repr(name[:60])
        try:
            target = (path / name).resolve()
            inside = "\0" not in name and target.is_relative_to(path.resolve())
            present = inside and target.is_file()
        except (OSError, ValueError):  # a name the file system refuses (too long, NUL, ...)
            inside = present = False
        if not inside or not isinstance(entry, dict):
            raise SiameseError(f"{path / MANIFEST} lists an invalid entry {shown}; {_EXPORT_AGAIN}")
        if not present:
            raise SiameseError(f"bundle file {shown} is missing; copy the whole bundle directory")
        if target.stat().st_size != entry.get("bytes") or sha256_file(target) != entry.get("sha256"):
            raise SiameseError(f"bundle file {shown} does not match its checksum in {MANIFEST}: it was changed "
                               f"or damaged; {_EXPORT_AGAIN}")
    return manifest


@dataclass
class Bundle:
    """A loaded bundle: the model, its index, the calibration (None if uncalibrated), the manifest."""

    model: Autoencoder
    index: VectorIndex
    calibration: Calibration | None
    manifest: dict[str, Any]
    path: Path

    def embed(self, items) -> np.ndarray:
        """Embeddings (n, d) of an ItemSet, an array (n, *input_shape) or a load_items source
        (paths, folder, file), read through the model's own preprocessing."""
        from ..data.loading import ItemSet, load_items
        from ..inference.embed import embed

        if not isinstance(items, (ItemSet, np.ndarray)) and not hasattr(items, "shape"):
            items = load_items(items, preprocessing=self.model.preprocessing)
        return embed(self.model, items)

    def search(self, items, k: int = 9) -> SearchResult:
        """The k nearest indexed items of each query item: SearchResult arrays of shape (n, k)."""
        return self.index.search(self.embed(items), k)

    def classify(self, items, k: int = 5, *, open_set: bool = False) -> np.ndarray:
        """kNN labels (n,); open_set=True answers "unknown" beyond the calibrated threshold."""
        max_distance = None
        if open_set:
            if self.calibration is None:
                raise SiameseError("this bundle has no calibration; run `siamese calibrate` and export again")
            max_distance = self.calibration.threshold
        return KNNClassifier(self.index, k=k, max_distance=max_distance).predict(self.embed(items))


def load_bundle(path: str | Path, *, untrusted_index: bool = False) -> Bundle:
    """Validate bundle.json and every checksum, then load the model, index and calibration."""
    path = Path(path)
    manifest = read_bundle_manifest(path)
    model = load_model(path / MODEL_DIR)
    if model.fingerprint() != manifest.get("model_fingerprint"):
        raise SiameseError(f"the bundled model does not match the fingerprint in {MANIFEST}; export the bundle again")
    index = VectorIndex.load(path / INDEX_DIR, untrusted=untrusted_index)
    check_fresh(index, model, f"the index in {path}")
    listed = CALIBRATION_FILE in manifest["files"]  # and so checked against its sha256 above
    if not listed and (path / CALIBRATION_FILE).exists():
        raise SiameseError(f"{path / CALIBRATION_FILE} is not listed in {MANIFEST}, so it cannot be trusted; "
                           f"delete it or {_EXPORT_AGAIN}")
    calibration = load_calibration(path, model) if listed else None
    return Bundle(model=model, index=index, calibration=calibration, manifest=manifest, path=path)
