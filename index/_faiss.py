"""Calling faiss safely when other libraries have patched it."""

from __future__ import annotations

from ._flat_search import flat_search  # noqa: F401  (re-exported: searching.py imports it from here)


def faiss_call(faiss_index, name: str, *args, **kwargs):
    """Call faiss's own numpy method `name` on `faiss_index`.

    `faiss.contrib.torch_utils` (imported by pytorch-metric-learning) replaces Index.search, add,
    reconstruct... with wrappers that return torch tensors and drop arguments such as `params`;
    faiss keeps the originals as `<name>_numpy`, so use those whenever they exist.
    """
    method = getattr(faiss_index, f"{name}_numpy", None) or getattr(faiss_index, name)
    return method(*args, **kwargs)
