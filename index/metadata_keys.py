"""The metadata store's key caches: keys that are just their ids' decimal strings (made on demand,
never stored) and key -> position lookups through sorted 64-bit key hashes (16 B per item, where
a dict would take ~70 B)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def row_key_ids(keys: Sequence[str]) -> np.ndarray:
    """int64 id each key spells in canonical decimal ("12", not "012" or "+12"); -1 for other keys."""
    out = np.full(len(keys), -1, dtype=np.int64)
    for i, key in enumerate(keys):
        if isinstance(key, str) and 0 < len(key) < 19 and key.isascii() and key.isdigit() and (key[0] != "0" or key == "0"):
            out[i] = int(key)
    return out


def row_keys(ids: np.ndarray) -> np.ndarray:
    """object array shaped like ids of str(id), None where id is -1."""
    out = np.empty(ids.size, dtype=object)
    out[:] = list(map(str, ids.ravel().tolist()))
    out = out.reshape(ids.shape)
    out[ids < 0] = None
    return out


def key_hashes(keys: Sequence[str]) -> np.ndarray:
    """int64 hash of every key (str hashes are stable within a process, which is all a cache needs)."""
    return np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))


class KeyIndex:
    """key -> position in the cached keys array, as sorted key hashes plus the positions in that
    order; a hash match is confirmed by comparing the keys, so hash collisions are harmless."""

    def __init__(self, keys: np.ndarray) -> None:
        hashes = key_hashes(keys)
        self._order = np.argsort(hashes, kind="stable")
        self.key_hashes = hashes[self._order]

    def append(self, new_keys: Sequence[str], first_position: int) -> None:
        """Index keys stored at first_position, first_position + 1, ... (merged in, O(n))."""
        hashes = key_hashes(new_keys)
        order = np.argsort(hashes, kind="stable")
        at = np.searchsorted(self.key_hashes, hashes[order], side="right")
        self.key_hashes = np.insert(self.key_hashes, at, hashes[order])
        self._order = np.insert(self._order, at, order + first_position)

    def find(self, stored: np.ndarray, keys: Sequence[str]) -> np.ndarray:
        """int64 positions into `stored` (the cached keys) of `keys`; -1 where a key is absent."""
        wanted = key_hashes(keys)
        n = self.key_hashes.size
        if n == 0 or wanted.size == 0:
            return np.full(wanted.size, -1, dtype=np.int64)
        lo = np.searchsorted(self.key_hashes, wanted, side="left")
        lo_clipped = np.minimum(lo, n - 1)
        same_hash = (lo < n) & (self.key_hashes[lo_clipped] == wanted)
        query = np.empty(len(keys), dtype=object)
        query[:] = list(keys)
        candidate = self._order[lo_clipped]
        found = same_hash & (stored[candidate] == query)
        out = np.where(found, candidate, -1).astype(np.int64)
        for i in np.flatnonzero(same_hash & ~found).tolist():  # a hash shared by several keys
            j = int(lo[i]) + 1
            while j < n and self.key_hashes[j] == wanted[i]:
                if stored[self._order[j]] == query[i]:
                    out[i] = self._order[j]
                    break
                j += 1
        return out
