"""Embedding search for the siamese toolkit: FAISS indexes with keys, labels and safe persistence.

Imports only numpy, faiss and the standard library (never torch or `siamese`), so a search
service can load an index without the training stack.
"""

from .cluster import kmeans
from .errors import VectorIndexError
from .knn import KNNClassifier
from .propagation import propagate_labels, propagated_index
from .vector_index import SearchResult, VectorIndex

__all__ = [
    "VectorIndex", "SearchResult", "KNNClassifier", "kmeans", "VectorIndexError", "propagate_labels", "propagated_index",
]
