"""What the scikit-learn estimators accept: 2-D numeric X scaled into the autoencoder's [0, 1] range,
y with -1 for unlabelled items (scikit-learn's semi-supervised convention), and random_state."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

UNLABELLED = -1  # the label of an unlabelled item, as in sklearn.semi_supervised


def check_X(estimator, X, *, reset: bool) -> np.ndarray:
    """X as a 2-D float array (float32 kept, anything else float64); NaN, inf, complex, sparse, 1-D
    and fewer than 2 rows at fit time are refused with ValueError / TypeError."""
    return validate_data(estimator, X, reset=reset, dtype=(np.float64, np.float32),
                         ensure_min_samples=2 if reset else 1)


def check_X_y(estimator, X, y) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) as check_X, y 1-D with one entry per row (a column vector is raveled with a warning)."""
    return validate_data(estimator, X, y, dtype=(np.float64, np.float32), ensure_min_samples=2)


def fit_scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (offset, scale), float64 (n_features,), that map the training rows into [0, 1]:
    the autoencoder's reconstruction loss (binary cross-entropy) wants targets there. Constant
    features get scale 1."""
    low, high = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    span = high - low
    return low, np.where(span > 0, span, 1.0)


def scale(X: np.ndarray, offset: np.ndarray, scale_: np.ndarray) -> np.ndarray:
    """(X - offset) / scale as a C-contiguous float32 (n, n_features) array (a new one: X is never
    modified and may be read-only)."""
    out = np.ascontiguousarray((X - offset) / scale_, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError("X holds values too large for float32 after scaling; rescale X first "
                         "(for instance with sklearn.preprocessing.StandardScaler)")
    return out


def unlabelled_mask(y: np.ndarray) -> np.ndarray:
    """(n,) bool, True where y is -1 (numeric or object arrays; string arrays have no -1)."""
    if y.dtype.kind in "iuf":
        return y == UNLABELLED
    if y.dtype.kind == "O":
        return np.fromiter((not isinstance(v, (str, bytes)) and isinstance(v, numbers.Number) and v == UNLABELLED
                            for v in y), dtype=bool, count=len(y))
    return np.zeros(len(y), dtype=bool)


def label_codes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes int64 (n,) into classes, -1 for unlabelled; classes (n_classes,) sorted, y's dtype).

    Raises ValueError for targets that are not class labels (continuous, multi-output)."""
    unlabelled = unlabelled_mask(y)
    labelled = y[~unlabelled]
    if len(labelled):
        check_classification_targets(labelled)
    classes, inverse = np.unique(labelled, return_inverse=True)
    codes = np.full(len(y), UNLABELLED, dtype=np.int64)
    codes[~unlabelled] = inverse.ravel()
    return codes, classes


def require_two_classes(codes: np.ndarray, estimator: str, what: str) -> None:
    """ValueError unless labelled items of at least two classes are present."""
    n_classes = len(np.unique(codes[codes >= 0]))
    if n_classes < 2:
        raise ValueError(f"{estimator} needs labelled items of at least two classes to {what}; y holds "
                         f"{n_classes} class{'es' if n_classes != 1 else ''} (-1 marks an unlabelled item)")


def seed_of(random_state) -> int:
    """The library's int seed: an int random_state is the seed itself (random_state=0 trains what
    TrainConfig(seed=0) trains); None or a RandomState draws one."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"random_state must be in [0, 2**32 - 1], got {random_state}")
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))
