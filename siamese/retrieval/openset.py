"""Open-set classification: answer "unknown" instead of forcing one of the known classes.

Two independent rules, both off by default:

- distance: the nearest labelled indexed item is farther than `max_distance` (for instance the
  calibrated same/different threshold: no known item would be called "the same");
- reconstruction: the autoencoder reconstructs the item worse than `recon_threshold`, e.g. the
  `quantile` of the reconstruction errors of the indexed (known) items.

An item is unknown when either rule fires. The kNN side lives in `index.KNNClassifier`
(max_distance=); this module adds the reconstruction rule, which needs the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SiameseError
from ..inference.anomaly import reconstruction_scores


@dataclass
class OpenSetPrediction:
    """Per item (n,): the answer, the kNN label it overrides, both scores and which rule fired."""

    labels: np.ndarray  # object (n,): a class or the unknown label
    closed_set: np.ndarray  # object (n,): the kNN vote ignoring both rules
    nearest_distance: np.ndarray  # float64 (n,)
    reconstruction_error: np.ndarray | None  # float64 (n,), None when the rule is off
    unknown_by_distance: np.ndarray  # bool (n,)
    unknown_by_reconstruction: np.ndarray  # bool (n,)

    @property
    def unknown(self) -> np.ndarray:
        return self.unknown_by_distance | self.unknown_by_reconstruction


def reconstruction_threshold(model, reference, quantile: float, *, progress: bool = False) -> float:
    """The `quantile` (in (0, 1]) of the reconstruction errors of `reference` items (known data): an
    ItemSet or a list of them (items indexed from several sources)."""
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile <= 1:
        raise SiameseError(f"the reconstruction quantile must lie in (0, 1], got {quantile!r}")
    parts = reference if isinstance(reference, (list, tuple)) else [reference]
    errors = np.concatenate([reconstruction_scores(model, part, progress=progress) for part in parts])
    return float(np.quantile(errors, quantile))


def predict_open_set(classifier, model, items, *, z: np.ndarray | None = None, recon_threshold: float | None = None,
                     progress: bool = False) -> OpenSetPrediction:
    """Classify `items` with `classifier` (an index.KNNClassifier, whose max_distance and unknown
    label set the distance rule) and apply the reconstruction rule when recon_threshold is given.

    z: the items' embeddings when already computed (n, d).
    """
    from ..inference.embed import embed

    if recon_threshold is not None and not np.isfinite(recon_threshold):
        raise SiameseError(f"recon_threshold must be a finite number, got {recon_threshold!r}")
    z = embed(model, items, progress=progress) if z is None else z
    nearest = classifier.nearest_distance(z)
    proba = classifier.predict_proba(z)
    closed = np.asarray(classifier.classes_, dtype=object)[np.argmax(proba, axis=1)]
    if classifier.unknown in set(classifier.classes_):
        raise SiameseError(f"the index has a class named {classifier.unknown!r}; choose another unknown label")
    by_distance = (nearest > classifier.max_distance) if classifier.max_distance is not None \
        else np.zeros(len(z), dtype=bool)
    recon = None
    by_recon = np.zeros(len(z), dtype=bool)
    if recon_threshold is not None:
        recon = reconstruction_scores(model, items, progress=progress)
        by_recon = recon > recon_threshold
    labels = closed.copy()
    labels[by_distance | by_recon] = classifier.unknown
    return OpenSetPrediction(labels, closed, nearest, recon, by_distance, by_recon)


def index_distance_quantile(index, quantile: float) -> float:
    """The `quantile` of the labelled indexed items' distances to their nearest *other* labelled
    item: a distance threshold on the scale of nearest-neighbour distances (a pair threshold
    calibrated on random same/different pairs is usually far larger)."""
    from index import KNNClassifier

    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile <= 1:
        raise SiameseError(f"the distance quantile must lie in (0, 1], got {quantile!r}")
    classifier = KNNClassifier(index, k=2)
    nearest = []
    for ids, vectors in index.iter_vectors():
        keep = np.array([label is not None for label in index.labels_for_ids(ids)], dtype=bool)
        if keep.any():
            nearest.append(classifier.kneighbors(vectors[keep]).distances[:, 1])
    return float(np.quantile(np.concatenate(nearest), quantile))
