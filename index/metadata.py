"""Item metadata (key, label, JSON attrs) keyed by the int64 id faiss returns.

SQLite table `items(id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, label TEXT NULL, attrs TEXT
NULL)` is the persisted form (`meta.sqlite`). The working copy lives in memory; `save` writes a
standalone file in WAL mode (readers of a saved index never block on a writer). Hot-path lookups
(ids -> keys/labels for every search hit, keys -> ids) use numpy arrays cached alongside SQLite
and aligned with the sorted ids, so they are vectorised and need no SQL round trip.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._checks import duplicates, preview
from .errors import VectorIndexError

logger = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, label TEXT NULL, attrs TEXT NULL)"
)
_COLUMNS = [("id", "INTEGER"), ("key", "TEXT"), ("label", "TEXT"), ("attrs", "TEXT")]
_SQL_BATCH = 500  # ids per `IN (...)` query, well below SQLite's variable limit


class MetadataStore:
    """Keys, labels and attrs of the items of one index.

    Cached arrays (all aligned, sorted by id): `ids` int64 (n,), keys object (n,), labels object
    (n,) with None for unlabeled items. attrs are read from SQLite on demand.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        rows = conn.execute("SELECT id, key, label FROM items ORDER BY id").fetchall()
        self._ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        self._keys = np.empty(len(rows), dtype=object)
        self._labels = np.empty(len(rows), dtype=object)
        if rows:
            self._keys[:] = [r[1] for r in rows]
            self._labels[:] = [r[2] for r in rows]
        self._key_to_id: dict[str, int] | None = None

    # -- construction / persistence -------------------------------------------------------------

    @classmethod
    def in_memory(cls) -> "MetadataStore":
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute(SCHEMA)
        conn.commit()
        return cls(conn)

    @classmethod
    def load(cls, path: str | Path, display_name: str = "meta.sqlite") -> "MetadataStore":
        """Copy a saved store into memory (the file is opened read-only and immutable, so loading
        never writes -wal/-shm files next to it). Raises VectorIndexError naming the file."""
        path = Path(path)
        uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            src = sqlite3.connect(uri, uri=True)
            try:
                src.backup(conn)
            finally:
                src.close()
            check = conn.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            columns = [(r[1], r[2].upper()) for r in conn.execute("PRAGMA table_info(items)").fetchall()]
            if columns != _COLUMNS:
                raise sqlite3.DatabaseError(f"table items has columns {columns}, expected {_COLUMNS}")
            return cls(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise VectorIndexError(
                f"{display_name} is not a valid metadata database ({exc}); restore the index directory from a good copy"
            ) from None

    def save(self, path: str | Path) -> None:
        """Write a standalone SQLite file (WAL journal mode) at `path`."""
        dst = sqlite3.connect(str(path))
        try:
            self._conn.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
            dst.commit()
        finally:
            dst.close()

    def close(self) -> None:
        self._conn.close()

    # -- size / arrays -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._ids.size)

    @property
    def ids(self) -> np.ndarray:
        """Sorted int64 ids of all items (read-only view)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    @property
    def has_labels(self) -> bool:
        return bool(np.any(self._labels != None))  # noqa: E711 (elementwise on object array)

    def labelled(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (m,), labels object (m,)) of the items that have a label, sorted by id."""
        mask = self._labels != None  # noqa: E711
        return self._ids[mask], self._labels[mask]

    def _key_map(self) -> dict[str, int]:
        if self._key_to_id is None:
            self._key_to_id = dict(zip(self._keys.tolist(), self._ids.tolist()))
        return self._key_to_id

    # -- validation ------------------------------------------------------------------------------

    def check_new_keys(self, keys: Sequence[str], name: str = "keys") -> None:
        """Refuse keys repeated within the batch or already present (nothing is written)."""
        dup = duplicates(keys)
        if dup:
            raise VectorIndexError(
                f"{name} contains {len(dup)} duplicated key(s) {preview(dup)}; keys must be unique, de-duplicate them"
            )
        existing = self._key_map()
        clash = [k for k in keys if k in existing]
        if clash:
            raise VectorIndexError(
                f"{name} has {len(clash)} key(s) already in the index {preview(clash)}; "
                f"remove those items first or use new keys"
            )

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions into the cached arrays, found mask) for any-shaped int64 ids."""
        pos = np.searchsorted(self._ids, ids)
        pos_clipped = np.minimum(pos, max(self._ids.size - 1, 0))
        found = (pos < self._ids.size) & (ids >= 0)
        if self._ids.size:
            found &= self._ids[pos_clipped] == ids
        return pos_clipped, found

    def unknown_ids(self, ids: np.ndarray) -> np.ndarray:
        _, found = self.positions(ids)
        return ids[~found]

    def _require_ids(self, ids: np.ndarray, name: str) -> np.ndarray:
        pos, found = self.positions(ids)
        if not np.all(found):
            missing = ids[~found]
            raise VectorIndexError(
                f"{name} has {missing.size} id(s) not in the index {preview(missing.tolist())}; "
                f"use ids returned by add() or search()"
            )
        return pos

    # -- lookups ---------------------------------------------------------------------------------

    def ids_for_keys(self, keys: Sequence[str], name: str = "keys") -> np.ndarray:
        """int64 (n,) ids for keys; every key must exist."""
        mapping = self._key_map()
        missing = [k for k in keys if k not in mapping]
        if missing:
            raise VectorIndexError(
                f"{name} has {len(missing)} key(s) not in the index {preview(missing)}; "
                f"check spelling or add them first"
            )
        return np.fromiter((mapping[k] for k in keys), dtype=np.int64, count=len(keys))

    def keys_for_ids(self, ids: np.ndarray, name: str = "ids") -> np.ndarray:
        """object (n,) keys for ids; every id must exist."""
        return self._keys[self._require_ids(ids, name)]

    def labels_for_ids(self, ids: np.ndarray, name: str = "ids") -> np.ndarray:
        """object (n,) labels (None = unlabeled) for ids; every id must exist."""
        return self._labels[self._require_ids(ids, name)]

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keys, labels) object arrays shaped like `ids`; None where the id is -1 (faiss's
        "no result") or unknown. Vectorised: one searchsorted, no SQL."""
        pos, found = self.positions(ids)
        keys = np.where(found, self._keys[pos] if self._ids.size else None, None)
        labels = np.where(found, self._labels[pos] if self._ids.size else None, None)
        return keys.astype(object, copy=False), labels.astype(object, copy=False)

    def attrs_for_ids(self, ids: np.ndarray, name: str = "ids") -> list[dict[str, Any] | None]:
        """attrs dicts (or None) for ids, read from SQLite in batches."""
        self._require_ids(ids, name)
        found: dict[int, str | None] = {}
        unique = np.unique(ids).tolist()
        for start in range(0, len(unique), _SQL_BATCH):
            batch = unique[start : start + _SQL_BATCH]
            marks = ",".join("?" * len(batch))
            for row_id, text in self._conn.execute(f"SELECT id, attrs FROM items WHERE id IN ({marks})", batch):
                found[row_id] = text
        return [None if found[i] is None else json.loads(found[i]) for i in ids.tolist()]

    # -- mutation ------------------------------------------------------------------------------

    def add(
        self,
        ids: np.ndarray,
        keys: Sequence[str],
        labels: Sequence[str | None] | None = None,
        attrs: Sequence[str | None] | None = None,
    ) -> None:
        """Insert rows; ids must be larger than every existing id (keeps the caches sorted).
        attrs are JSON text. Callers validate keys first with `check_new_keys`."""
        n = len(ids)
        if self._ids.size and n and int(ids[0]) <= int(self._ids[-1]):
            raise RuntimeError("metadata ids must increase")  # internal invariant, not user input
        labels = list(labels) if labels is not None else [None] * n
        attrs = list(attrs) if attrs is not None else [None] * n
        rows = zip(ids.tolist(), keys, labels, attrs)
        with self._conn:
            self._conn.executemany("INSERT INTO items (id, key, label, attrs) VALUES (?, ?, ?, ?)", rows)
        new_keys = np.empty(n, dtype=object)
        new_keys[:] = list(keys)
        new_labels = np.empty(n, dtype=object)
        new_labels[:] = labels
        self._ids = np.concatenate([self._ids, ids.astype(np.int64)])
        self._keys = np.concatenate([self._keys, new_keys])
        self._labels = np.concatenate([self._labels, new_labels])
        if self._key_to_id is not None:
            self._key_to_id.update(zip(keys, ids.tolist()))

    def remove(self, ids: np.ndarray) -> None:
        """Delete rows by id (callers check that they exist)."""
        with self._conn:
            self._conn.executemany("DELETE FROM items WHERE id = ?", ((i,) for i in ids.tolist()))
        drop = np.isin(self._ids, ids)
        if self._key_to_id is not None:
            for key in self._keys[drop].tolist():
                self._key_to_id.pop(key, None)
        keep = ~drop
        self._ids, self._keys, self._labels = self._ids[keep], self._keys[keep], self._labels[keep]

    def count_rows(self) -> int:
        """Row count straight from SQLite (used to cross-check a loaded index)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
