"""SiameseKNNClassifier: semi-supervised classification the way `siamese classify` does it, as a
scikit-learn classifier: embed with a SiameseEmbedder, index the training rows, spread the few
labels over the index's kNN graph, then vote among the k nearest labelled rows."""

from __future__ import annotations

import inspect
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from index import KNNClassifier, VectorIndex, propagate_labels
from index.knn import WEIGHTS

from ..training.finetune import FinetuneConfig
from . import inputs
from .embedder import SiameseEmbedder, cpu_threads

PROPAGATE = ("auto", "on", "off")  # as `siamese classify --propagate`


def _defaults(function) -> dict:
    """Keyword -> default of a function or class: each default lives in one place."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


_KNN, _PROPAGATION, _EMBEDDING = _defaults(KNNClassifier), _defaults(propagate_labels), _defaults(SiameseEmbedder)


class SiameseKNNClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour classifier in a learned embedding, for many rows and few labels.

    `fit(X, y)`, y of shape (n_samples,) with -1 for unlabelled rows (sklearn.semi_supervised's
    convention): a SiameseEmbedder pretrains on every row and fine-tunes on the labelled ones
    (`embedder_`), the embeddings of all training rows fill an `index.VectorIndex` (`index_`, the
    model's metric), and when fewer than half of them carry labels (propagate="auto"; "on" / "off"
    force it) `index.propagate_labels` spreads the labels over the index's propagate_k-nearest-
    neighbour graph, so unlabelled rows vote too: what `siamese classify --propagate auto` does.
    `predict` / `predict_proba` embed the query rows and let their `n_neighbors` nearest labelled
    training rows vote (`index.KNNClassifier`, exact; `weights` "uniform" or "distance"). At most as
    many neighbours vote as there are labelled rows.

    Labels come back as given: `classes_` holds the distinct labels of y (without -1) in sorted
    order, `predict` returns them with y's dtype and `predict_proba` has one column per class in
    `classes_` order; ties go to the class first in `classes_`.

    The embedding parameters are SiameseEmbedder's (defaults from the library's configs);
    `n_neighbors` and `weights` default to KNNClassifier's, `propagate_k` to propagate_labels'.
    Attributes: `classes_`, `n_features_in_`, `feature_names_in_` (DataFrame input only),
    `embedder_` (the fitted SiameseEmbedder: `embedder_.transform(X)` gives the embeddings),
    `model_` (its siamese.Autoencoder), `index_` (VectorIndex of the training rows; labels are class
    positions in `classes_` as str, given or propagated), `propagated_` (bool).
    """

    def __init__(self, *, n_neighbors: int = _KNN["k"], weights: str = _KNN["weights"], propagate: str = "auto",
                 propagate_k: int = _PROPAGATION["k"], variant: str = _EMBEDDING["variant"],
                 latent_dim: int = _EMBEDDING["latent_dim"], arch: str = _EMBEDDING["arch"],
                 widths: tuple[int, ...] = _EMBEDDING["widths"], image_shape: tuple[int, ...] | None = None,
                 epochs: int | None = _EMBEDDING["epochs"], finetune_epochs: int = _EMBEDDING["finetune_epochs"],
                 batch_size: int = _EMBEDDING["batch_size"], lr: float = _EMBEDDING["lr"],
                 finetune_lr: float = _EMBEDDING["finetune_lr"], finetune_config: FinetuneConfig | None = None,
                 random_state=_EMBEDDING["random_state"], n_threads: int | None = None, verbose: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.propagate = propagate
        self.propagate_k = propagate_k
        self.variant = variant
        self.latent_dim = latent_dim
        self.arch = arch
        self.widths = widths
        self.image_shape = image_shape
        self.epochs = epochs
        self.finetune_epochs = finetune_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.finetune_config = finetune_config
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    def fit(self, X, y) -> SiameseKNNClassifier:
        """Learn the embedding from X (n_samples, n_features) and y (n_samples,), -1 = unlabelled;
        index the training rows and propagate the labels. Returns self."""
        self._check_vote_params()
        X, y = inputs.check_X_y(self, X, y)
        codes, classes = inputs.label_codes(y)
        inputs.require_two_classes(codes, type(self).__name__, "classify")
        embedder = SiameseEmbedder(**{k: v for k, v in self.get_params(deep=False).items() if k in _EMBEDDING})
        with cpu_threads(self.n_threads):
            z = embedder.fit(X, codes).transform(X)
            labelled = codes >= 0
            index = _build_index(z, codes, embedder.model_)
            propagated = self.propagate == "on" or (self.propagate == "auto" and labelled.sum() < len(codes) / 2)
            if propagated:
                spread = propagate_labels(index, k=self.propagate_k)
                index = _build_index(z, _propagated_codes(spread, len(codes)), embedder.model_)
        self.classes_, self.embedder_, self.model_, self.index_ = classes, embedder, embedder.model_, index
        self.propagated_ = propagated
        self._knn = self._classifier()
        return self

    def _check_vote_params(self) -> None:
        """Refuse bad kNN / propagation settings before any training."""
        if self.propagate not in PROPAGATE:
            raise ValueError(f"propagate must be one of {', '.join(PROPAGATE)}, got {self.propagate!r}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}")
        for name in ("n_neighbors", "propagate_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def predict_proba(self, X) -> np.ndarray:
        """Vote shares of the labelled neighbours, float64 (n_samples, n_classes), columns in
        `classes_` order; rows sum to 1."""
        check_is_fitted(self)
        X = inputs.check_X(self, X, reset=False)
        z = self.embedder_.transform(X)
        with cpu_threads(self.n_threads):
            votes = self._knn.predict_proba(z)
        proba = np.zeros((len(z), len(self.classes_)))
        proba[:, self._knn.classes_.astype(np.int64)] = votes  # the index's labels: str positions in classes_
        return proba

    def predict(self, X) -> np.ndarray:
        """Predicted labels (n_samples,), of y's dtype: the class with most votes, ties to the first."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # -- the index outlives pickling as arrays ------------------------------------------------------

    def _classifier(self) -> KNNClassifier:
        """The kNN vote over `index_`: at most as many neighbours as labelled rows."""
        labelled = int(sum(label is not None for label in self.index_.labels_for_ids(self.index_.ids)))
        return KNNClassifier(self.index_, k=min(int(self.n_neighbors), labelled), weights=self.weights)

    def __getstate__(self) -> dict:
        """A VectorIndex holds faiss and SQLite handles: pickle its vectors and labels instead."""
        state = dict(super().__getstate__())
        state.pop("_knn", None)
        index = state.pop("index_", None)
        if index is not None:
            state["_index_arrays"] = (index.reconstruct(index.ids), index.labels_for_ids(index.ids).tolist(),
                                      index.metric, index.model_fingerprint)
        return state

    def __setstate__(self, state: dict) -> None:
        arrays = state.pop("_index_arrays", None)
        super().__setstate__(state)
        if arrays is not None:
            vectors, labels, metric, fingerprint = arrays
            self.index_ = VectorIndex.build(np.array(vectors, dtype=np.float32), labels=labels, metric=metric,
                                            model_fingerprint=fingerprint)
            self._knn = self._classifier()


def _build_index(z: np.ndarray, codes: np.ndarray, model) -> VectorIndex:
    """The training embeddings, labelled with their class positions as str (None = unlabelled)."""
    labels = [str(c) if c >= 0 else None for c in codes.tolist()]
    return VectorIndex.build(z, labels=labels, metric=model.metric, model_fingerprint=model.fingerprint())


def _propagated_codes(spread, n: int) -> np.ndarray:
    """Class positions per training row (ids 0..n-1) after propagation; -1 where no label reached."""
    codes = np.full(n, inputs.UNLABELLED, dtype=np.int64)
    reached = np.array([label is not None for label in spread.labels], dtype=bool)
    codes[spread.ids[reached]] = np.array([int(label) for label in spread.labels[reached]], dtype=np.int64)
    return codes
