"""A calibrated "same or different" threshold on embedding distances, learned from labelled pairs.

Two items are called *same* when the distance between their embeddings is at most `threshold`
(distances in the index's units: 1 - cosine similarity for metric "cosine", Euclidean for "l2",
so the same number works as a kNN `max_distance`). The threshold is picked from the pairs' ROC
and precision-recall curves (sklearn.metrics) for a target:

- ``f1`` (default): the threshold maximising F1 of the "same" class;
- ``eer``: where the false positive rate equals the false negative rate;
- ``precision=P``: the largest recall whose precision is at least P;
- ``recall=R``: the best precision whose recall is at least R.

Chosen thresholds sit midway between the last distance called *same* and the next larger one,
so an unseen pair at either boundary distance is classified as on the labelled pairs.

Confidence is P(same | distance) from a logistic regression fitted on the same 1-D distances
(sklearn LogisticRegression); its coefficient and intercept are stored, so the confidence is
`1 / (1 + exp(-(coef * distance + intercept)))`. It is a calibration of the distance scale, not
a guarantee: pairs unlike the calibration pairs get confidences as trustworthy as those pairs.

Saved as `calibration.json` in the model directory (atomic write); loading checks every field.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import SiameseError
from ..models.metrics import METRICS, pair_distances
from ..models.saving import CALIBRATION_FILE

logger = logging.getLogger(__name__)

FORMAT = "siamese-calibration"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """A same/different threshold and its quality on the calibration pairs (fractions in [0, 1])."""

    threshold: float  # distance <= threshold -> same
    metric: str  # distance the threshold applies to: "cosine" (1 - cos) or "l2"
    target: str  # "f1", "eer", "precision=P" or "recall=R"
    auc: float  # ROC AUC of -distance as a "same" score
    average_precision: float  # area under the precision-recall curve (sklearn average_precision_score)
    eer: float  # equal error rate
    precision: float  # at the threshold
    recall: float
    f1: float
    false_positive_rate: float
    n_pairs: int
    n_positive: int
    model_fingerprint: str | None  # the model whose distances were calibrated
    confidence_coef: float  # logistic P(same) = sigmoid(coef * distance + intercept)
    confidence_intercept: float
    created_at: str = ""

    def is_same(self, distance) -> np.ndarray:
        """Bool array (n,) (or a bool for a scalar): distance <= threshold."""
        result = np.asarray(distance, dtype=np.float64) <= self.threshold
        return bool(result) if result.ndim == 0 else result

    def confidence(self, distance) -> np.ndarray:
        """P(same) per distance from the fitted logistic curve, same shape as `distance`."""
        z = self.confidence_coef * np.asarray(distance, dtype=np.float64) + self.confidence_intercept
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # numerically stable sigmoid
        return float(p) if p.ndim == 0 else p

    def to_dict(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, record: dict, where: str = "calibration") -> "Calibration":
        """Validate a stored record (format, every field present and of the right type)."""
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise SiameseError(f"{where} is not a siamese calibration (expected format {FORMAT!r})")
        if record.get("format_version") != FORMAT_VERSION:
            raise SiameseError(f"{where} has format_version {record.get('format_version')!r}, this library reads "
                               f"{FORMAT_VERSION}; run `siamese calibrate` again")
        values = {}
        for field in fields(cls):
            if field.name not in record:
                if field.name == "created_at":
                    continue
                raise SiameseError(f"{where} lacks the field {field.name!r}; run `siamese calibrate` again")
            values[field.name] = _check_field(field.name, record[field.name], where)
        calibration = cls(**values)
        if calibration.metric not in METRICS:
            raise SiameseError(f"{where} has metric {calibration.metric!r}; expected one of {', '.join(METRICS)}")
        parse_target(calibration.target)
        return calibration

    def report(self) -> str:
        """Human-readable summary, one fact per line."""
        return "\n".join([
            f"pairs: {self.n_pairs} ({self.n_positive} same, {self.n_pairs - self.n_positive} different), "
            f"distance {self.metric}",
            f"ROC AUC {self.auc:.4f}   average precision {self.average_precision:.4f}   EER {100 * self.eer:.2f}%",
            f"threshold ({self.target}): {self.threshold:.6g}   same if distance <= threshold",
            f"at the threshold: precision {100 * self.precision:.2f}%, recall {100 * self.recall:.2f}%, "
            f"F1 {100 * self.f1:.2f}%, false positive rate {100 * self.false_positive_rate:.2f}%",
        ])


_FLOATS = {"threshold", "auc", "average_precision", "eer", "precision", "recall", "f1", "false_positive_rate",
           "confidence_coef", "confidence_intercept"}


def _check_field(name: str, value, where: str):
    if name in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SiameseError(f"{where} field {name!r} must be a finite number, got {value!r}")
        return float(value)
    if name in ("n_pairs", "n_positive"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SiameseError(f"{where} field {name!r} must be a non-negative int, got {value!r}")
        return value
    if name == "model_fingerprint" and value is None:
        return None
    if not isinstance(value, str):
        raise SiameseError(f"{where} field {name!r} must be a string, got {value!r}")
    return value


def parse_target(target: str) -> tuple[str, float | None]:
    """"f1" | "eer" | "precision=P" | "recall=R" -> (kind, value); P, R in (0, 1]."""
    if target in ("f1", "eer"):
        return target, None
    kind, _, number = str(target).partition("=")
    if kind in ("precision", "recall"):
        try:
            value = float(number)
        except ValueError:
            value = float("nan")
        if 0 < value <= 1:
            return kind, value
    raise SiameseError(f"unknown calibration target {target!r}; use f1, eer, precision=P or recall=R "
                       "with P, R in (0, 1], e.g. precision=0.99")


def _midpoint(distances: np.ndarray, cut: float) -> float:
    """Halfway between `cut` and the next larger distance (cut itself when none is larger)."""
    above = distances[distances > cut]
    return float((cut + above.min()) / 2) if above.size else float(cut)


def choose_threshold(distances: np.ndarray, same: np.ndarray, target: str = "f1") -> float:
    """The distance threshold meeting `target` on labelled pairs (see the module docstring)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    kind, value = parse_target(target)
    if kind == "eer":
        fpr, tpr, thresholds = roc_curve(same, -distances)
        fnr = 1.0 - tpr
        finite = np.isfinite(thresholds)
        best = np.flatnonzero(finite)[np.argmin(np.abs(fnr - fpr)[finite])]
        return _midpoint(distances, -float(thresholds[best]))
    precision, recall, thresholds = precision_recall_curve(same, -distances)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    if kind == "f1":
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                       where=(precision + recall) > 0)
        best = int(np.argmax(f1))
    elif kind == "precision":
        ok = np.flatnonzero(precision >= value - 1e-12)
        if not ok.size:
            raise SiameseError(f"no threshold reaches precision {value} on these pairs (best "
                               f"{precision.max():.4f}); lower the target or calibrate on better-separated pairs")
        best = int(ok[np.argmax(recall[ok])])
    else:
        ok = np.flatnonzero(recall >= value - 1e-12)
        best = int(ok[np.argmax(precision[ok])])
    return _midpoint(distances, -float(thresholds[best]))


def calibrate_distances(distances, same, *, metric: str, target: str = "f1",
                        model_fingerprint: str | None = None) -> Calibration:
    """Calibrate on distances (n,) of labelled pairs, same (n,) bool / 0-1 (1 = same)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import auc, average_precision_score, roc_curve

    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(same)
    if d.ndim != 1 or y.shape != d.shape:
        raise SiameseError(f"distances and same must be 1-D of equal length, got {d.shape} and {y.shape}")
    if not np.isfinite(d).all():
        raise SiameseError("distances contain NaN/inf; check the embeddings")
    if not np.isin(y, (0, 1)).all():
        raise SiameseError("same must hold 0/1 (or bool) per pair")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise SiameseError(f"calibration needs both same (1) and different (0) pairs; got {int(y.sum())} same of "
                           f"{len(y)}")
    if metric not in METRICS:
        raise SiameseError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    parse_target(target)
    fpr, tpr, _ = roc_curve(y, -d)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    eer = float((fpr[i] + fnr[i]) / 2)
    threshold = choose_threshold(d, y, target)
    predicted = d <= threshold
    tp, fp = int((predicted & y).sum()), int((predicted & ~y).sum())
    fn = int((~predicted & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    logistic = LogisticRegression(C=1e4).fit(d[:, None], y)
    calibration = Calibration(
        threshold=float(threshold), metric=metric, target=str(target), auc=float(auc(fpr, tpr)),
        average_precision=float(average_precision_score(y, -d)), eer=eer, precision=float(precision),
        recall=float(recall), f1=float(f1), false_positive_rate=fp / int((~y).sum()), n_pairs=int(len(d)),
        n_positive=int(y.sum()), model_fingerprint=model_fingerprint,
        confidence_coef=float(logistic.coef_[0, 0]), confidence_intercept=float(logistic.intercept_[0]),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    logger.info("calibrated threshold %.4g (%s) on %d pairs: AUC %.4f, F1 %.4f", threshold, target, len(d),
             calibration.auc, calibration.f1)
    return calibration


def model_pair_distances(model, items, pairs) -> np.ndarray:
    """Distances (n_pairs,) in the model's metric between the embeddings of each pair's items."""
    from ..inference.embed import embed

    used = pairs.items()
    z = np.zeros((len(items), model.latent_dim), dtype=np.float32)
    z[used] = embed(model, items.subset(used))
    return pair_distances(z[pairs.a], z[pairs.b], _metric_of(model))


def _metric_of(model) -> str:
    metric = model.metric
    if metric not in METRICS:
        raise SiameseError(f"model metric {metric!r} cannot be calibrated; expected one of {', '.join(METRICS)}")
    return metric


def calibrate(model, items, pairs, *, target: str = "f1") -> Calibration:
    """Calibrate `model` on labelled pairs (Pairs over item positions, or a PAIRS.csv over keys)."""
    from ..data.pairs import read_pairs_csv

    if isinstance(pairs, (str, Path)):
        pairs = read_pairs_csv(pairs, items.keys)
    distances = model_pair_distances(model, items, pairs)
    return calibrate_distances(distances, pairs.label, metric=_metric_of(model), target=target,
                               model_fingerprint=model.fingerprint())


def save_calibration(calibration: Calibration, model_dir: str | Path) -> Path:
    """Write `calibration.json` into the model directory atomically, under the directory's writer lock
    (a model save running at the same time carries the file over or not, never half of it)."""
    from index.atomic import atomic_file
    from index.locking import write_lock

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise SiameseError(f"model directory {model_dir} does not exist")
    path = model_dir / CALIBRATION_FILE
    with write_lock(model_dir), atomic_file(path, "w") as fh:
        fh.write(json.dumps(calibration.to_dict(), indent=2))
    return path


def load_calibration(model_dir: str | Path, model=None) -> Calibration:
    """Read and validate `calibration.json`; with `model`, refuse a calibration made for other weights."""
    from index.safe_json import read_json

    path = Path(model_dir) / CALIBRATION_FILE
    try:
        record = read_json(path, str(path), "run `siamese calibrate` again", error=SiameseError)
    except FileNotFoundError:
        raise SiameseError(f"{model_dir} is not calibrated ({CALIBRATION_FILE} is missing); run "
                           "`siamese calibrate MODEL DATA --pairs PAIRS.csv` first") from None
    calibration = Calibration.from_dict(record, str(path))
    if model is not None:
        check_calibration(calibration, model, str(path))
    return calibration


def find_calibration(model_dir: str | Path, model=None) -> Calibration | None:
    """The model directory's calibration, or None when it has none."""
    if not (Path(model_dir) / CALIBRATION_FILE).is_file():
        return None
    return load_calibration(model_dir, model)


def calibration_with_index(model_dir: str | Path, model, index, where: str = "the index") -> Calibration | None:
    """The model directory's calibration, else the one `index` carries in info["calibration"] (both
    checked against `model`); None when neither exists."""
    calibration = find_calibration(model_dir, model)
    if calibration is None and "calibration" in index.info:
        calibration = Calibration.from_dict(index.info["calibration"], f"{where} info['calibration']")
        check_calibration(calibration, model, f"the calibration stored in {where}")
    return calibration


def check_calibration(calibration: Calibration, model, where: str = "the calibration") -> None:
    """Refuse a calibration whose model fingerprint or metric differs from `model`'s."""
    fingerprint = model.fingerprint()
    if calibration.model_fingerprint != fingerprint:
        raise SiameseError(f"{where} was made for model {str(calibration.model_fingerprint)[:12]}, not "
                           f"{fingerprint[:12]}; run `siamese calibrate` with this model")
    if calibration.metric != model.metric:
        raise SiameseError(f"{where} uses metric {calibration.metric!r} but the model uses {model.metric!r}; "
                           "run `siamese calibrate` again")


def plot_calibration(distances, same, calibration: Calibration, path: str | Path) -> Path:
    """ROC and precision-recall curves side by side with the chosen threshold marked (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_curve, roc_curve

    from index.atomic import atomic_file

    d, y = np.asarray(distances, dtype=np.float64), np.asarray(same).astype(bool)
    predicted = d <= calibration.threshold
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    roc, pr = fig.subplots(1, 2)
    fpr, tpr, _ = roc_curve(y, -d)
    roc.plot(fpr, tpr, lw=2, label=f"ROC (AUC {calibration.auc:.3f})")
    roc.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
    roc.plot([predicted[~y].mean()], [predicted[y].mean()], "o", color="tab:red", mec="black",
             label=f"threshold {calibration.threshold:.3g}")
    roc.plot([calibration.eer], [1 - calibration.eer], "s", color="tab:green", mec="black",
             label=f"EER {100 * calibration.eer:.1f}%")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    precision, recall, _ = precision_recall_curve(y, -d)
    pr.plot(recall, precision, lw=2, label=f"PR (AP {calibration.average_precision:.3f})")
    pr.plot([calibration.recall], [calibration.precision], "o", color="tab:red", mec="black",
            label=f"threshold: P {calibration.precision:.2f}, R {calibration.recall:.2f}")
    pr.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    for ax in (roc, pr):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left" if ax is pr else "lower right", fontsize=8)
    fig.suptitle(f"same/different on {calibration.n_pairs} pairs ({calibration.metric} distance, "
                 f"target {calibration.target})")
    path = Path(path)
    with atomic_file(path, suffixes=(".png",)) as fh:
        fig.savefig(fh, format="png", dpi=110)
    return path
