"""`SavedMetadata`: a loaded index's keys, labels and attrs, read from its meta.sqlite per hit.

Loading an index does not copy its metadata. The saved file is opened read-only (`open_saved`:
exact schema, immutable) and each call reads only the rows it needs: the ids a search returned,
the keys asked for. Every row's columns are checked as they are read (types and sizes, the checks
a copy makes), and every statement runs under a work budget, so a hostile file costs an error,
never a hang or an allocation out of proportion. RAM holds nothing per item until a caller asks
for every id (`ids`: 8 B per item, then kept) or every label (`labelled`: not kept).

The first add or remove turns the index's metadata into a `MetadataStore` working copy
(`working_copy`: every row copied and checked), so the write path is the one new indexes use.
One lock serialises the statements: the connection and its budget are shared by threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import safe_json
from .errors import VectorIndexError
from .metadata import (RESTORE, UNKNOWN_KEYS_REMEDY, MetadataStore, scratch_database, unknown_ids_error,
                       unknown_keys_error, write_standalone)
from .saved_metadata import (ROW_BOUNDS, VALID_ATTRS, VALID_ID, VALID_KEY, VALID_LABEL, VALID_ROW, bounded,
                             first_bad_row, load_problem, open_saved)

_BATCH = 32768  # ids or keys per lookup statement (one JSON array, unpacked by SQLite's json_each)
_SCAN_BATCH = 16384  # rows per statement of a scan in id order
# Budget of SQLite VM steps per row a statement reads, and per statement; a statement that runs past
# is stopped. Measured on an honest file: about 110 steps per row of a lookup by id, 65 by key, 25
# per row of a scan of ids, 70 per row of the full row check.
_STEPS_PER_ROW = 2000
_STEPS_FIXED = 1_000_000
_CHECKS = {"key": VALID_KEY, "label": VALID_LABEL}
_IN_IDS = "id IN (SELECT value FROM json_each(:ids))"


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class SavedMetadata:
    """Read-only metadata of a loaded index, in its saved file (see the module docs)."""

    def __init__(self, path: Path, count: int, display_name: str) -> None:
        self._name = display_name
        self._count = count
        try:
            self._conn = open_saved(path)
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise self._invalid(exc) from None
        self._lock = threading.Lock()
        self._ids: np.ndarray | None = None
        self._has_labels: bool | None = None

    def _invalid(self, exc: BaseException) -> VectorIndexError:
        return VectorIndexError(f"{self._name} is not a valid metadata database ({load_problem(exc)}); {RESTORE}")

    def _query(self, sql: str, params: dict[str, Any], rows: int) -> list[tuple]:
        """All result rows of one statement, budgeted for reading about `rows` rows."""
        with self._lock:
            try:
                with bounded(self._conn, _STEPS_FIXED + _STEPS_PER_ROW * rows):
                    return self._conn.execute(sql, {**ROW_BOUNDS, **params}).fetchall()
            except (sqlite3.Error, ValueError) as exc:
                raise self._invalid(exc) from None

    def _bad_row(self, where: str, params: dict[str, Any]) -> VectorIndexError:
        """The error for a statement that met a row failing its checks (the row named)."""
        with self._lock:
            try:
                with bounded(self._conn, _STEPS_FIXED + _STEPS_PER_ROW * _SCAN_BATCH):
                    reason = first_bad_row(self._conn, "items", where, params)
            except (sqlite3.Error, ValueError) as exc:
                return self._invalid(exc)
        return VectorIndexError(f"{self._name} is not a valid metadata database ({reason}); {RESTORE}")

    # -- construction / persistence ----------------------------------------------------------------

    def working_copy(self) -> MetadataStore:
        """A changeable store holding every row, copied and checked: what add and remove change. It is
        copied from the open file, the version this index was loaded from, even if a save has put a
        newer one at the path since (saving the change over it is then refused, not a lost update)."""
        conn = scratch_database()
        try:
            with self._lock:
                self._conn.backup(conn)  # page by page; the schema was checked on open
            with bounded(conn, _STEPS_FIXED + _STEPS_PER_ROW * self._count):
                bad = conn.execute(f"SELECT EXISTS (SELECT 1 FROM items WHERE ({VALID_ROW}) IS NOT 1)",
                                   ROW_BOUNDS).fetchone()[0]
                if bad:
                    raise sqlite3.DatabaseError(first_bad_row(conn, "items"))
                conn.execute("REINDEX items")  # the keys' index rebuilt from the rows: unique keys enforced
            return MetadataStore(conn)
        except (sqlite3.Error, ValueError) as exc:
            conn.close()
            raise self._invalid(exc) from None

    def save(self, path: str | Path) -> None:
        """Write a standalone SQLite file (WAL journal mode) at `path`: the saved rows, page by page."""
        with self._lock:
            write_standalone(self._conn, path)

    def close(self) -> None:
        self._conn.close()

    # -- size / whole columns ----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def _scan(self, last: int, labels: bool) -> tuple[int | None, list[int], list]:
        """One batch of rows after id `last`, in id order, checked: (largest id, None when done;
        the ids, or with `labels` the ids of the labelled rows; their labels, or [])."""
        if labels:
            check, picked = f"{VALID_ID} AND {VALID_LABEL}", (
                "json_group_array(id) FILTER (WHERE label IS NOT NULL), "
                "json_group_array(CASE WHEN ok THEN label END) FILTER (WHERE label IS NOT NULL)")
        else:
            check, picked = VALID_ID, "json_group_array(id), '[]'"
        sql = (f"SELECT max(id), sum(ok IS NOT 1), {picked} FROM (SELECT id, label, ({check}) AS ok "
               f"FROM items WHERE id > :last ORDER BY id LIMIT {_SCAN_BATCH})")
        top, bad, ids, values = self._query(sql, {"last": last}, _SCAN_BATCH)[0]
        if bad:
            raise self._bad_row(f"id > {int(last)}", {})
        return top, json.loads(ids), json.loads(values)

    def _batches(self, labels: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, labels) per batch of `_scan`, in id order."""
        last = -1
        while True:
            top, ids, values = self._scan(last, labels)
            if top is None:
                return
            yield np.asarray(ids, dtype=np.int64), _objects(values)
            last = top

    def _scan_all(self, labels: bool) -> tuple[np.ndarray, np.ndarray]:
        batches = list(self._batches(labels))
        if not batches:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=object)
        return np.concatenate([ids for ids, _ in batches]), np.concatenate([values for _, values in batches])

    def iter_ids(self) -> Iterator[np.ndarray]:
        """Sorted int64 ids of every row, a batch at a time (a check that holds none of them all)."""
        return (ids for ids, _ in self._batches(labels=False))

    def all_ids(self) -> np.ndarray:
        """Sorted int64 ids of every row, read now (`ids` keeps them)."""
        return self._scan_all(labels=False)[0]

    @property
    def ids(self) -> np.ndarray:
        """Sorted int64 ids of all items (read on first use, then kept: 8 B per item)."""
        if self._ids is None:
            ids = self.all_ids()
            if ids.size != self._count:
                raise VectorIndexError(f"{self._name} has {ids.size} items but manifest.json says {self._count}; "
                                       f"{RESTORE}")
            ids.flags.writeable = False
            self._ids = ids
        return self._ids

    @property
    def has_labels(self) -> bool:
        if self._has_labels is None:
            rows = self._query("SELECT EXISTS (SELECT 1 FROM items WHERE label IS NOT NULL)", {}, self._count)
            self._has_labels = bool(rows[0][0])
        return self._has_labels

    def labelled(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (m,), labels object (m,)) of the items that have a label, sorted by id (a scan)."""
        return self._scan_all(labels=True)

    def largest_id(self) -> int | None:
        """The largest id (a b-tree descent, not a scan); None when there are no rows."""
        value = self._query("SELECT max(id) FROM items", {}, 1)[0][0]
        if value is not None and not isinstance(value, int):
            raise VectorIndexError(f"{self._name} has a {type(value).__name__} id; {RESTORE}")
        return value

    def count_rows(self) -> int:
        """Row count straight from SQLite."""
        return int(self._query("SELECT COUNT(*) FROM items", {}, self._count)[0][0])

    def check_rows(self) -> int:
        """Check every row as a copy into a fresh database would (types, sizes, attrs JSON, unique
        keys) and the file's own structure (SQLite's integrity check: b-trees, and the keys' index
        against the rows, which key lookups read); returns the row count."""
        count, bad = self._query(f"SELECT COUNT(*), sum(({VALID_ROW}) IS NOT 1) FROM items", {}, self._count)[0]
        if bad:
            raise self._bad_row("1", {})
        problems = [str(row[0])[:160] for row in self._query("PRAGMA integrity_check(1)", {}, self._count)]
        if problems != ["ok"]:
            raise self._invalid(sqlite3.DatabaseError(f"its integrity check fails: {problems[0]}"))
        return int(count)

    # -- lookups -----------------------------------------------------------------------------------

    def _rows(self, wanted: np.ndarray, columns: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(found ids sorted, one object array per column aligned with them) for sorted unique ids."""
        found, values = [], [[] for _ in columns]
        check = " AND ".join(_CHECKS[c] for c in columns)
        picked = "".join(f", json_group_array(CASE WHEN ok THEN {c} END)" for c in columns)
        sql = (f"SELECT sum(ok IS NOT 1), json_group_array(id){picked} FROM "
               f"(SELECT id, {', '.join(columns)}, ({check}) AS ok FROM items WHERE {_IN_IDS})")
        for start in range(0, wanted.size, _BATCH):
            batch = {"ids": json.dumps(wanted[start:start + _BATCH].tolist())}
            bad, ids, *columns_json = self._query(sql, batch, min(_BATCH, wanted.size - start))[0]
            if bad:
                raise self._bad_row(_IN_IDS, batch)
            found.extend(json.loads(ids))
            for column, text in zip(values, columns_json):
                column.extend(json.loads(text))
        ids = np.asarray(found, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        return ids[order], [_objects(column)[order] for column in values]

    def _at(self, ids: np.ndarray, columns: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(found mask, per column an object array shaped like `ids`, None where not found)."""
        flat = ids.ravel()
        found_ids, values = self._rows(np.unique(flat[flat >= 0]), columns)
        pos = np.minimum(np.searchsorted(found_ids, flat), max(found_ids.size - 1, 0))
        found = (flat >= 0) & (found_ids[pos] == flat) if found_ids.size else np.zeros(flat.shape, dtype=bool)
        out = []
        for column in values:
            full = np.full(flat.shape, None, dtype=object)
            full[found] = column[pos[found]]
            out.append(full.reshape(ids.shape))
        return found.reshape(ids.shape), out

    def lookup(self, ids: np.ndarray, *, defer_row_keys: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(keys, labels) object arrays shaped like `ids`; None where the id is -1 or unknown."""
        _, (keys, labels) = self._at(ids, ("key", "label"))
        return keys, labels

    def _required(self, ids: np.ndarray, column: str, name: str) -> np.ndarray:
        found, (values,) = self._at(ids, (column,))
        if not found.all():
            raise unknown_ids_error(ids[~found], name)
        return values

    def keys_for_ids(self, ids: np.ndarray, name: str = "ids") -> np.ndarray:
        """object (n,) keys for ids; every id must exist."""
        return self._required(ids, "key", name)

    def labels_for_ids(self, ids: np.ndarray, name: str = "ids") -> np.ndarray:
        """object (n,) labels (None = unlabeled) for ids; every id must exist."""
        return self._required(ids, "label", name)

    def ids_for_keys(self, keys: Sequence[str], name: str = "keys", remedy: str = UNKNOWN_KEYS_REMEDY) -> np.ndarray:
        """int64 (n,) ids for keys, found through the keys' unique index; every key must exist."""
        where = "key IN (SELECT value FROM json_each(:keys))"
        sql = (f"SELECT sum(ok IS NOT 1), json_group_array(CASE WHEN ok THEN key END), json_group_array(id) "
               f"FROM (SELECT id, key, ({VALID_ID} AND {VALID_KEY}) AS ok FROM items WHERE {where})")
        found: dict[str, int] = {}
        for start in range(0, len(keys), _BATCH):
            batch = {"keys": json.dumps(list(keys[start:start + _BATCH]))}
            bad, found_keys, ids = self._query(sql, batch, min(_BATCH, len(keys) - start))[0]
            if bad:
                raise self._bad_row(where, batch)
            found.update(zip(json.loads(found_keys), json.loads(ids)))
        missing = [key for key in keys if key not in found]
        if missing:
            raise unknown_keys_error(missing, name, remedy)
        return np.fromiter((found[key] for key in keys), dtype=np.int64, count=len(keys))

    def attrs_for_ids(self, ids: np.ndarray, name: str = "ids") -> list[dict[str, Any] | None]:
        """attrs dicts (or None) for ids; every id must exist."""
        unique = np.unique(ids)
        found: dict[int, str | None] = {}
        sql = (f"SELECT id, CASE WHEN ok THEN attrs END, ok FROM "
               f"(SELECT id, attrs, ({VALID_ATTRS}) AS ok FROM items WHERE {_IN_IDS})")
        for start in range(0, unique.size, _BATCH):
            batch = {"ids": json.dumps(unique[start:start + _BATCH].tolist())}
            rows = self._query(sql, batch, min(_BATCH, unique.size - start))
            if any(ok != 1 for _, _, ok in rows):
                raise self._bad_row(_IN_IDS, batch)
            found.update((row_id, text) for row_id, text, _ in rows)
        missing = np.asarray([i for i in unique.tolist() if i not in found], dtype=np.int64)
        if missing.size:
            raise unknown_ids_error(missing, name)
        return [None if found[i] is None else safe_json.loads(found[i], f"the attrs of item {i}", RESTORE)
                for i in ids.tolist()]
