"""Embedding search for the siamese toolkit: FAISS indexes with keys, labels and safe persistence.

Imports only numpy, faiss and the standard library (never torch or `siamese`), so a search
service can load an index without the training stack. The public names load on first use, so
`import index.locking` or `index.errors` does not pay for faiss.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "VectorIndex": "vector_index", "SearchResult": "vector_index", "KNNClassifier": "knn", "kmeans": "cluster",
    "VectorIndexError": "errors", "propagate_labels": "propagation", "propagated_index": "propagation",
}

__all__ = [
    "KNNClassifier",
    "SearchResult",
    "VectorIndex",
    "VectorIndexError",
    "kmeans",
    "propagate_labels",
    "propagated_index",
]

if TYPE_CHECKING:
    from .cluster import kmeans
    from .errors import VectorIndexError
    from .knn import KNNClassifier
    from .propagation import propagate_labels, propagated_index
    from .vector_index import SearchResult, VectorIndex


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'index' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
