"""Item metadata (key, label, JSON attrs) keyed by the int64 id faiss returns: the changeable store of
an index being built or changed (a loaded index reads its saved file instead until its first change,
see metadata_view.py).

SQLite table `items(id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, label TEXT NULL, attrs TEXT
NULL)` is the persisted form (`meta.sqlite`). The working copy is a private temporary database:
SQLite keeps a few MiB of it cached and spills the rest to an unlinked scratch file, so rows and
attrs of a large index do not sit in RAM; `save` writes a standalone file in WAL mode (readers of a
saved index never block on a writer). Hot-path lookups (ids -> keys/labels for every search hit,
keys -> ids) use numpy arrays cached alongside SQLite and aligned with the sorted ids, so they are
vectorised and need no SQL round trip. keys -> ids goes through sorted 64-bit key hashes (16 B per
item) rather than a dict (~70 B per item). While every key is its id's decimal string (the default
for items added without keys) no key is cached at all: keys are made from ids on demand.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import safe_json
from ._checks import duplicates, preview
from .errors import VectorIndexError
from .metadata_keys import KeyIndex, row_key_ids, row_keys
from .saved_metadata import MAX_ATTRS_BYTES, MAX_TEXT_BYTES, SCHEMA, append_saved_rows, load_problem

__all__ = ["MetadataStore", "SCHEMA", "MAX_TEXT_BYTES", "MAX_ATTRS_BYTES", "append_saved_rows", "load_problem"]

logger = logging.getLogger(__name__)

_SQL_BATCH = 500  # ids per `IN (...)` query, well below SQLite's variable limit
_SQL_READ_BATCH = 65536  # rows per fetch when loading the cached arrays
RESTORE = "restore the index from a good copy"


def _over(text: str, limit: int) -> bool:
    """len(text encoded as UTF-8) > limit, without encoding short strings."""
    return len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit


def _clip(text: str, length: int = 24) -> str:
    return text if len(text) <= length else text[:length] + "..."


def _check_new_values(labels: Sequence[str | None], attrs: Sequence[str | None]) -> None:
    """Refuse labels and attrs (JSON text) that `load` would refuse, before anything is written."""
    long_labels = [_clip(v) for v in labels if v is not None and _over(v, MAX_TEXT_BYTES)]
    if long_labels:
        raise VectorIndexError(
            f"labels has {len(long_labels)} label(s) longer than {MAX_TEXT_BYTES} bytes (UTF-8) "
            f"{preview(long_labels)}; shorten them"
        )
    for i, text in enumerate(attrs):
        if text is not None:
            if _over(text, MAX_ATTRS_BYTES):
                raise VectorIndexError(
                    f"attrs[{i}] is longer than {MAX_ATTRS_BYTES} bytes as JSON; store less per item"
                )
            safe_json.check_depth(text, f"attrs[{i}]", "store a flatter dict")


def _keys(n: int, name: str) -> str:
    """`3 key(s)`, naming which keys when they are not simply the ones given (`3 key(s) (default keys...)`)."""
    return f"{n} key(s)" + ("" if name == "keys" else f" ({name})")


def unknown_ids_error(missing: np.ndarray, name: str) -> VectorIndexError:
    return VectorIndexError(f"{name} has {missing.size} id(s) not in the index {preview(missing.tolist())}; "
                            f"use ids returned by add() or search()")


def unknown_keys_error(missing: list[str], name: str, remedy: str) -> VectorIndexError:
    return VectorIndexError(f"{_keys(len(missing), name)} not in the index {preview(missing)}; {remedy}")


UNKNOWN_KEYS_REMEDY = "check the keys' spelling, or add those items first"


def write_standalone(conn: sqlite3.Connection, path: str | Path) -> None:
    """Copy the database of `conn`, page by page, into a standalone SQLite file (WAL journal mode)."""
    dst = sqlite3.connect(str(path))
    try:
        conn.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")
        dst.commit()
    finally:
        dst.close()


def scratch_database() -> sqlite3.Connection:
    """A private temporary SQLite database: cached in memory up to SQLite's page-cache size, spilled
    beyond it to a scratch file that is deleted on close (or by the OS if the process dies).
    URI file names are enabled so that `load` can attach a saved file read-only."""
    return sqlite3.connect("", check_same_thread=False, uri=True)


class MetadataStore:
    """Keys, labels and attrs of the items of one index.

    Cached arrays (all aligned, sorted by id): `ids` int64 (n,), keys object (n,) or None while
    every key is str(id), labels object (n,) with None for unlabeled items. attrs are read from
    SQLite on demand.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        n = int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        custom_keys = conn.execute("SELECT EXISTS (SELECT 1 FROM items WHERE key <> CAST(id AS TEXT))").fetchone()[0]
        self._ids = np.empty(n, dtype=np.int64)
        self._labels = np.empty(n, dtype=object)
        self._keys: np.ndarray | None = np.empty(n, dtype=object) if custom_keys else None
        # Batches of rows after the last id read, each column as one JSON array (parsed in C: twice
        # as fast as a tuple per row, and no million-tuple list at once).
        columns = "json_group_array(label)" + (", json_group_array(key)" if custom_keys else "")
        query = (f"SELECT max(id), json_group_array(id), {columns} FROM "
                 f"(SELECT id, label, key FROM items WHERE id > ? ORDER BY id LIMIT {_SQL_READ_BATCH})")
        start, last = 0, -1
        while start < n:
            last, *arrays = conn.execute(query, (last,)).fetchone()
            ids, labels, *keys = map(json.loads, arrays)
            if not ids:
                raise sqlite3.DatabaseError(f"{n} rows were counted but {start} read")
            stop = start + len(ids)
            self._ids[start:stop] = ids
            self._labels[start:stop] = labels
            if self._keys is not None:
                self._keys[start:stop] = keys[0]
            start = stop
        self._key_index: KeyIndex | None = None

    # -- construction / persistence -------------------------------------------------------------

    @classmethod
    def in_memory(cls) -> "MetadataStore":
        """An empty store (a private temporary database, see the module docs)."""
        conn = scratch_database()
        conn.execute(SCHEMA)
        conn.commit()
        return cls(conn)

    @classmethod
    def load(cls, path: str | Path, display_name: str = "meta.sqlite") -> "MetadataStore":
        """Copy a saved store's rows into a fresh private database made from SCHEMA.

        The file is untrusted even when its checksum matches: it is attached read-only and
        immutable (no -wal/-shm files are written next to it), its schema must be exactly the one
        `save` writes (so no view, trigger, index or table of its own ever runs or is carried into
        the next save), every row is type- and size-checked while it is copied, the fresh schema
        enforces unique keys, and the work is capped in proportion to the file's size (a query
        that would run longer is aborted). Raises VectorIndexError naming the file."""
        conn = scratch_database()
        try:
            conn.execute(SCHEMA)
            append_saved_rows(conn, Path(path))
            return cls(conn)
        except (sqlite3.Error, OSError, ValueError) as exc:
            conn.close()
            raise VectorIndexError(
                f"{display_name} is not a valid metadata database ({load_problem(exc)}); "
                f"restore the index directory from a good copy"
            ) from None

    def working_copy(self) -> "MetadataStore":
        """This store: it is already the changeable kind (see SavedMetadata.working_copy)."""
        return self

    def save(self, path: str | Path) -> None:
        """Write a standalone SQLite file (WAL journal mode) at `path`."""
        write_standalone(self._conn, path)

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

    def _dense(self) -> bool:
        """Ids are exactly 0..n-1 (nothing removed, no reserved offset): an id is its own position."""
        n = self._ids.size
        return n > 0 and int(self._ids[0]) == 0 and int(self._ids[-1]) == n - 1

    def _key_positions(self, keys: Sequence[str]) -> np.ndarray:
        """Positions of keys in the cached arrays; -1 for keys not in the index."""
        if self._keys is None:
            pos, found = self.positions(row_key_ids(keys))
            return np.where(found, pos, -1)
        if self._key_index is None:
            self._key_index = KeyIndex(self._keys)
        return self._key_index.find(self._keys, keys)

    def _keys_at(self, pos: np.ndarray) -> np.ndarray:
        """object array of the keys at positions (any shape)."""
        return row_keys(self._ids[pos]) if self._keys is None else self._keys[pos]

    # -- validation ------------------------------------------------------------------------------

    def check_new_keys(self, keys: Sequence[str], name: str = "keys") -> None:
        """Refuse keys repeated within the batch or already present (nothing is written)."""
        bad = [_clip(k) for k in keys if not k or _over(k, MAX_TEXT_BYTES)]
        if bad:
            raise VectorIndexError(
                f"{name} has {len(bad)} empty or too long key(s) {preview(bad)}; "
                f"a key must have 1 to {MAX_TEXT_BYTES} bytes (UTF-8)"
            )
        dup = duplicates(keys)
        if dup:
            raise VectorIndexError(
                f"{name} contains {len(dup)} duplicated key(s) {preview(dup)}; keys must be unique, de-duplicate them"
            )
        clash = [keys[i] for i in np.flatnonzero(self._key_positions(keys) >= 0).tolist()]
        if clash:
            raise VectorIndexError(
                f"{_keys(len(clash), name)} already in the index {preview(clash)}: remove those items "
                f"first (siamese index remove INDEX --key KEY; index.remove(keys=...) in Python) or give the "
                f"items new keys"
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
            raise unknown_ids_error(ids[~found], name)
        return pos

    # -- lookups ---------------------------------------------------------------------------------

    def ids_for_keys(self, keys: Sequence[str], name: str = "keys",
                     remedy: str = UNKNOWN_KEYS_REMEDY) -> np.ndarray:
        """int64 (n,) ids for keys; every key must exist (else an error ending with `remedy`)."""
        pos = self._key_positions(keys)
        if np.any(pos < 0):
            raise unknown_keys_error([keys[i] for i in np.flatnonzero(pos < 0).tolist()], name, remedy)
        return self._ids[pos]

    def keys_for_ids(self, ids: np.ndarray, name: str = "ids") -> np.ndarray:
        """object (n,) keys for ids; every id must exist."""
        return self._keys_at(self._require_ids(ids, name))

    def labels_for_ids(self, ids: np.ndarray, name: str = "ids") -> np.ndarray:
        """object (n,) labels (None = unlabeled) for ids; every id must exist."""
        return self._labels[self._require_ids(ids, name)]

    def lookup(self, ids: np.ndarray, *, defer_row_keys: bool = False) -> tuple[Any, np.ndarray]:
        """(keys, labels) object arrays shaped like `ids`; None where the id is -1 (faiss's
        "no result") or unknown. Vectorised, no SQL; ids 0..n-1 index the arrays directly.
        defer_row_keys: while keys are their ids' strings, return a function that makes them
        (from the ids alone, so it stays right whatever happens to the index later)."""
        n = self._ids.size
        if n == 0:
            return np.full(ids.shape, None, dtype=object), np.full(ids.shape, None, dtype=object)
        if self._dense():
            found = (ids >= 0) & (ids < n)
            pos = ids if found.all() else np.where(found, ids, 0)
        else:
            pos, found = self.positions(ids)
        labels = self._labels[pos]
        if not found.all():
            labels[~found] = None
        if self._keys is None:
            make = functools.partial(row_keys, np.where(found, ids, -1))
            return (make if defer_row_keys else make()), labels
        keys = self._keys[pos]
        if not found.all():
            keys[~found] = None
        return keys, labels

    def attrs_for_ids(self, ids: np.ndarray, name: str = "ids") -> list[dict[str, Any] | None]:
        """attrs dicts (or None) for ids, read from SQLite in batches."""
        self._require_ids(ids, name)
        found: dict[int, str | None] = {}
        unique = np.unique(ids).tolist()
        for start in range(0, len(unique), _SQL_BATCH):
            batch = unique[start : start + _SQL_BATCH]
            marks = ",".join("?" * len(batch))
            try:
                for row_id, text in self._conn.execute(f"SELECT id, attrs FROM items WHERE id IN ({marks})", batch):
                    found[row_id] = text
            except sqlite3.OperationalError as exc:  # text that is not UTF-8 passes SQLite's own checks
                raise VectorIndexError(f"attrs of the index cannot be read ({exc}); {RESTORE}") from None
        return [None if found[i] is None else safe_json.loads(found[i], f"the attrs of item {i}", RESTORE)
                for i in ids.tolist()]

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
        _check_new_values(labels, attrs)
        rows = zip(ids.tolist(), keys, labels, attrs)
        with self._conn:
            self._conn.executemany("INSERT INTO items (id, key, label, attrs) VALUES (?, ?, ?, ?)", rows)
        new_labels = np.empty(n, dtype=object)
        new_labels[:] = labels
        if self._keys is None and not np.array_equal(row_key_ids(keys), ids):
            self._keys = row_keys(self._ids)  # the first custom key: cache them all from now on
        if self._keys is not None:
            new_keys = np.empty(n, dtype=object)
            new_keys[:] = list(keys)
            if self._key_index is not None:
                self._key_index.append(new_keys, self._ids.size)
            self._keys = np.concatenate([self._keys, new_keys])
        self._ids = np.concatenate([self._ids, ids.astype(np.int64)])
        self._labels = np.concatenate([self._labels, new_labels])

    def remove(self, ids: np.ndarray) -> None:
        """Delete rows by id (callers check that they exist)."""
        with self._conn:
            self._conn.executemany("DELETE FROM items WHERE id = ?", ((i,) for i in ids.tolist()))
        keep = ~np.isin(self._ids, ids)
        self._key_index = None  # positions shift; rebuilt on the next key lookup
        self._ids, self._labels = self._ids[keep], self._labels[keep]
        if self._keys is not None:
            self._keys = self._keys[keep]

    def count_rows(self) -> int:
        """Row count straight from SQLite (used to cross-check a loaded index)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
