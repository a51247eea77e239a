"""What a saved meta.sqlite must be before its rows are used: the exact schema `save` writes, typed
and bounded rows, and a cap on the SQLite work reading it may take. `MetadataStore.load` and
`index merge` (index.shards) copy saved rows through `append_saved_rows`; a loaded index reads its
rows in place through `open_saved` (index.metadata_view), checking each row as it reads it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, label TEXT NULL, attrs TEXT NULL)"
)

MAX_TEXT_BYTES = 4096  # longest key or label, in UTF-8 bytes (keys are often file paths: Linux's PATH_MAX)
MAX_ATTRS_BYTES = 1 << 20  # longest attrs JSON text of one item

# What `save` writes, as `SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name`
# returns it: the table and the automatic index of its UNIQUE key, nothing else.
_SAVED_SCHEMA = [("index", "sqlite_autoindex_items_1", "items", None), ("table", "items", "items", SCHEMA)]
# A valid row is typed as SCHEMA says (SQLite itself stores any type in any column) and bounded;
# one condition per column, so a reader of some columns checks just those (SQL bound to ROW_BOUNDS).
VALID_ID = "typeof(id) = 'integer' AND id >= 0"
VALID_KEY = "typeof(key) = 'text' AND length(CAST(key AS BLOB)) BETWEEN 1 AND :max_text"
VALID_LABEL = "(label IS NULL OR (typeof(label) = 'text' AND length(CAST(label AS BLOB)) <= :max_text))"
VALID_ATTRS = ("(attrs IS NULL OR (typeof(attrs) = 'text' AND length(CAST(attrs AS BLOB)) <= :max_attrs"
               " AND CASE WHEN json_valid(attrs) THEN json_type(attrs) = 'object' ELSE 0 END))")
VALID_ROW = f"{VALID_ID} AND {VALID_KEY} AND {VALID_LABEL} AND {VALID_ATTRS}"
ROW_BOUNDS = {"max_text": MAX_TEXT_BYTES, "max_attrs": MAX_ATTRS_BYTES}
# Work allowed to load a file: an honest one needs 1 to 1.3 SQLite VM steps per byte (measured on
# 1M-row files: ids-as-keys without labels, custom keys, labels and attrs); a view, trigger or
# damaged b-tree that loops is stopped well after that, so a hostile file costs time in proportion
# to its size.
_LOAD_STEPS_PER_BYTE = 20
_LOAD_STEPS_FIXED = 1_000_000
_PROGRESS_INTERVAL = 10_000  # VM steps between two checks of the budget


class WorkBudget:
    """Aborts the statements of `conn` (sqlite3.OperationalError "interrupted") once about `steps`
    SQLite VM instructions have run in total: a hostile database cannot keep a load busy."""

    def __init__(self, conn: sqlite3.Connection, steps: int) -> None:
        self._conn = conn
        self._ticks_left = steps // _PROGRESS_INTERVAL + 1
        self.exceeded = False
        conn.set_progress_handler(self._tick, _PROGRESS_INTERVAL)

    def _tick(self) -> int:
        self._ticks_left -= 1
        self.exceeded = self._ticks_left < 0
        return int(self.exceeded)

    def stop(self) -> None:
        self._conn.set_progress_handler(None, 0)


def _check_saved_schema(conn: sqlite3.Connection, schema: str = "src") -> None:
    """Database `schema` of `conn` holds exactly what `save` writes (sqlite3.DatabaseError if not)."""
    rows = conn.execute(f"SELECT type, name, tbl_name, sql FROM {schema}.sqlite_master ORDER BY type, name").fetchall()
    if rows == _SAVED_SCHEMA:
        return
    table = [sql for kind, name, _, sql in rows if (kind, name) == ("table", "items")]
    if not table:
        raise sqlite3.DatabaseError("it has no table items")
    if table != [SCHEMA]:
        raise sqlite3.DatabaseError("its table items has other columns or constraints than saved indexes have")
    extra = [f"{kind} {str(name)[:40]!r}" for kind, name, table_name, sql in rows if (kind, name, table_name, sql)
             not in _SAVED_SCHEMA]
    if not extra:
        raise sqlite3.DatabaseError("its unique index on keys is missing")
    more = ", ..." if len(extra) > 5 else ""
    raise sqlite3.DatabaseError(f"it holds {', '.join(extra[:5])}{more}, which saved indexes never have")


def first_bad_row(conn: sqlite3.Connection, table: str = "src.items", among: str = "1",
                  params: dict | None = None) -> str:
    """Why the first row of `table` (among those matching the SQL condition `among`) that fails
    VALID_ROW was refused."""
    row = conn.execute(
        "SELECT id, typeof(id), typeof(key), length(CAST(key AS BLOB)), typeof(label), length(CAST(label AS BLOB)), "
        "typeof(attrs), length(CAST(attrs AS BLOB)), CASE WHEN typeof(attrs) = 'text' AND json_valid(attrs) "
        f"THEN json_type(attrs) END FROM {table} WHERE ({among}) AND ({VALID_ROW}) IS NOT 1 LIMIT 1",
        {**ROW_BOUNDS, **(params or {})}).fetchone()
    if row is None:
        return "rows changed while they were read"
    row_id, id_type, key_type, key_bytes, label_type, label_bytes, attrs_type, attrs_bytes, attrs_json = row
    if id_type != "integer" or row_id < 0:
        return f"an id is {row_id if id_type == 'integer' else id_type}, not an integer >= 0"
    where = f"item {row_id}"
    if key_type != "text":
        return f"{where} has a {key_type} key, not text"
    if not 1 <= key_bytes <= MAX_TEXT_BYTES:
        return f"{where} has a key of {key_bytes} bytes, not 1 to {MAX_TEXT_BYTES}"
    if label_type not in ("null", "text"):
        return f"{where} has a {label_type} label, not text or NULL"
    if label_type == "text" and label_bytes > MAX_TEXT_BYTES:
        return f"{where} has a label of {label_bytes} bytes, more than {MAX_TEXT_BYTES}"
    if attrs_type not in ("null", "text"):
        return f"{where} has {attrs_type} attrs, not JSON text or NULL"
    if attrs_type == "text" and attrs_bytes > MAX_ATTRS_BYTES:
        return f"{where} has attrs of {attrs_bytes} bytes, more than {MAX_ATTRS_BYTES}"
    return f"{where} has attrs that are {'a JSON ' + attrs_json if attrs_json else 'not JSON'}, not a JSON object"


class TooMuchWork(sqlite3.DatabaseError):
    """The work budget of a load ran out (a hostile view, trigger or query plan)."""


@contextlib.contextmanager
def bounded(conn: sqlite3.Connection, steps: int) -> Iterator[None]:
    """Run the block's statements on `conn` under a budget of about `steps` SQLite VM instructions;
    TooMuchWork when it runs out."""
    budget = WorkBudget(conn, steps)
    try:
        yield
    except sqlite3.OperationalError:
        if budget.exceeded:
            raise TooMuchWork() from None
        raise
    finally:
        budget.stop()


def scan_budget(path: Path) -> int:
    """VM steps an honest store of this file's size needs to be read whole."""
    return _LOAD_STEPS_FIXED + _LOAD_STEPS_PER_BYTE * path.stat().st_size


def append_saved_rows(conn: sqlite3.Connection, path: Path) -> None:
    """Copy the rows of the saved store at `path` into `conn`'s table items, as `MetadataStore.load`
    describes (read-only attach, exact schema, per-row checks, bounded work). Raises sqlite3.Error
    (IntegrityError for an id or key already in `conn`), OSError or ValueError; `load_problem` words it."""
    with bounded(conn, scan_budget(path)):
        conn.execute("ATTACH DATABASE ? AS src", (path.resolve().as_uri() + "?mode=ro&immutable=1",))
        try:
            _check_saved_schema(conn)
            total = int(conn.execute("SELECT COUNT(*) FROM src.items").fetchone()[0])
            copied = conn.execute(
                f"INSERT INTO main.items (id, key, label, attrs) SELECT id, key, label, attrs FROM src.items "
                f"WHERE {VALID_ROW}", ROW_BOUNDS).rowcount
            if copied != total:
                raise sqlite3.DatabaseError(first_bad_row(conn))
            conn.commit()
        finally:
            conn.rollback()
            conn.execute("DETACH DATABASE src")


def open_saved(path: Path) -> sqlite3.Connection:
    """A read-only connection to the saved store at `path`, its schema checked. It is opened
    immutable: SQLite writes nothing beside the file (no -wal/-shm, no locks), which holds because
    saves replace an index directory as a whole and never change its files in place. Raises
    sqlite3.Error or OSError; `load_problem` words it."""
    path.stat()  # a missing or unreadable file is an OSError, not SQLite's vaguer message
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only = 1")
        with bounded(conn, _LOAD_STEPS_FIXED):
            _check_saved_schema(conn, "main")
    except BaseException:
        conn.close()
        raise
    return conn


def load_problem(exc: BaseException) -> str:
    """The reason part of the one-line error for a failed `append_saved_rows`."""
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or exc}"
    if isinstance(exc, TooMuchWork):
        return "reading it takes far more work than a database of its size needs"
    if isinstance(exc, sqlite3.IntegrityError):
        return "a key occurs more than once"
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
