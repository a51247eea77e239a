"""How good is an embedding? kNN accuracy, PML retrieval metrics, clustering agreement.

All functions take float32 embeddings (n, d) and string labels (None = unlabelled, skipped), so
the same code scores raw pixels, PCA and any encoder side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from index import KNNClassifier, VectorIndex, kmeans

from ..errors import SiameseError

RETRIEVAL_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


@dataclass
class Scores:
    """One row of an evaluation table (fractions in [0, 1])."""

    knn_accuracy: float
    precision_at_1: float
    r_precision: float
    map_at_r: float
    nmi: float
    ari: float

    def to_dict(self) -> dict:
        return asdict(self)


def _labelled(z: np.ndarray, labels: Sequence | None) -> tuple[np.ndarray, np.ndarray]:
    if labels is None:
        raise SiameseError("no labelled items to evaluate against: the items have no labels; give them labels "
                           "(load_items(..., labels=...); CLI: --labels LABELS.csv or one sub-folder per class)")
    labels = np.asarray([None if label is None else str(label) for label in labels], dtype=object)
    if len(labels) != len(z):
        raise SiameseError(f"got {len(z)} embeddings but {len(labels)} labels")
    keep = np.array([label is not None for label in labels], dtype=bool)
    if not keep.any():
        raise SiameseError("no labelled items to evaluate against; give them labels (load_items(..., labels=...); "
                           "CLI: --labels LABELS.csv or one sub-folder per class)")
    return np.ascontiguousarray(z[keep], dtype=np.float32), labels[keep]


def _prepare(z: np.ndarray, metric: str) -> np.ndarray:
    z = np.ascontiguousarray(z, dtype=np.float32)
    if metric == "cosine":
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return z


def knn_accuracy(reference: np.ndarray, reference_labels: Sequence, queries: np.ndarray, query_labels: Sequence,
                 *, k: int = 5, metric: str = "l2") -> float:
    """Share of labelled queries whose majority label among the k nearest references is right."""
    reference, reference_labels = _labelled(reference, reference_labels)
    queries, query_labels = _labelled(queries, query_labels)
    index = VectorIndex.build(reference, labels=list(reference_labels), metric=metric, kind="flat")
    predicted = KNNClassifier(index, k=k).predict(queries)
    return float(np.mean(predicted.astype(str) == query_labels.astype(str)))


def retrieval_metrics(reference: np.ndarray, reference_labels: Sequence, queries: np.ndarray | None = None,
                      query_labels: Sequence | None = None, *, metric: str = "l2") -> dict[str, float]:
    """PML AccuracyCalculator: precision@1, R-precision and MAP@R of queries against references
    (the references themselves, leave-one-out, when no queries are given)."""
    reference, reference_labels = _labelled(reference, reference_labels)
    same = queries is None
    if same:
        queries, query_labels = reference, reference_labels
    else:
        queries, query_labels = _labelled(queries, query_labels)
    classes = {c: i for i, c in enumerate(sorted(set(reference_labels) | set(query_labels)))}
    codes = lambda labels: torch.tensor([classes[c] for c in labels])  # noqa: E731
    calculator = AccuracyCalculator(include=RETRIEVAL_METRICS, k="max_bin_count", device=torch.device("cpu"))
    result = calculator.get_accuracy(
        torch.from_numpy(_prepare(queries, metric)), codes(query_labels),
        torch.from_numpy(_prepare(reference, metric)), codes(reference_labels), ref_includes_query=same,
    )
    return {name: float(result[name]) for name in RETRIEVAL_METRICS}


def cluster_agreement(z: np.ndarray, labels: Sequence, *, metric: str = "l2", seed: int = 0) -> dict[str, float]:
    """NMI and ARI between faiss k-means clusters (k = number of classes) and the labels."""
    z, labels = _labelled(z, labels)
    n_clusters = len(set(labels))
    assignments, _ = kmeans(_prepare(z, metric), n_clusters, seed=seed)
    return {"nmi": float(normalized_mutual_info_score(labels, assignments)),
            "ari": float(adjusted_rand_score(labels, assignments))}


def score_embeddings(reference: np.ndarray, reference_labels: Sequence, queries: np.ndarray,
                     query_labels: Sequence, *, k: int = 5, metric: str = "l2", seed: int = 0) -> Scores:
    """The full row: kNN accuracy and retrieval metrics of queries vs references, NMI/ARI on the references."""
    retrieval = retrieval_metrics(reference, reference_labels, queries, query_labels, metric=metric)
    clusters = cluster_agreement(reference, reference_labels, metric=metric, seed=seed)
    return Scores(
        knn_accuracy=knn_accuracy(reference, reference_labels, queries, query_labels, k=k, metric=metric),
        precision_at_1=retrieval["precision_at_1"], r_precision=retrieval["r_precision"],
        map_at_r=retrieval["mean_average_precision_at_r"], nmi=clusters["nmi"], ari=clusters["ari"],
    )


def evaluate_model(model, reference, queries=None, *, k: int = 5, seed: int = 0) -> Scores:
    """Embed labelled ItemSets with `model` and score them (queries default to a leave-one-out on
    the reference items)."""
    from ..inference.embed import embed

    z_ref = embed(model, reference)
    if queries is None:
        return _leave_one_out(z_ref, reference.labels, k=k, metric=model.metric, seed=seed)
    return score_embeddings(z_ref, reference.labels, embed(model, queries), queries.labels, k=k,
                            metric=model.metric, seed=seed)


def _leave_one_out(z: np.ndarray, labels, *, k: int, metric: str, seed: int) -> Scores:
    z_l, labels_l = _labelled(z, labels)
    index = VectorIndex.build(z_l, labels=list(labels_l), metric=metric, kind="flat")
    votes = index.search(z_l, min(k + 1, len(index))).labels[:, 1:]
    predicted = [max(sorted(set(row)), key=list(row).count) for row in votes]
    retrieval = retrieval_metrics(z_l, labels_l, metric=metric)
    clusters = cluster_agreement(z_l, labels_l, metric=metric, seed=seed)
    return Scores(float(np.mean(np.asarray(predicted) == labels_l)), retrieval["precision_at_1"],
                  retrieval["r_precision"], retrieval["mean_average_precision_at_r"], clusters["nmi"], clusters["ari"])
