"""Calling faiss safely when other libraries have patched it."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import faiss

_reads = threading.Lock()  # faiss's limit is one global setting


@contextlib.contextmanager
def bounded_faiss_reads(file_bytes: int) -> Iterator[None]:
    """While faiss parses a file of `file_bytes`, refuse any array it declares larger than the file.

    faiss allocates each serialized array at the size its header claims before reading it (up to
    1 TB by default), so a 72 KB file claiming 2^29 codes took 2 GB before failing; no honest array
    is larger than the file that holds it.
    """
    with _reads:
        before = faiss.get_deserialization_vector_byte_limit()
        faiss.set_deserialization_vector_byte_limit(int(file_bytes) + 64)  # faiss compares with "<" per element
        try:
            yield
        finally:
            faiss.set_deserialization_vector_byte_limit(before)


def faiss_call(faiss_index, name: str, *args, **kwargs):
    """Call faiss's own numpy method `name` on `faiss_index`.

    `faiss.contrib.torch_utils` (imported by pytorch-metric-learning) replaces Index.search, add,
    reconstruct... with wrappers that return torch tensors and drop arguments such as `params`;
    faiss keeps the originals as `<name>_numpy`, so use those whenever they exist.
    """
    method = getattr(faiss_index, f"{name}_numpy", None) or getattr(faiss_index, name)
    return method(*args, **kwargs)
