"""Where an index's items came from, and reading them back (neighbour plots, open-set quantiles).

Every `build_index` and `add_items` over a named source (a folder, a file, `sklearn:digits`...)
appends one range `{"source": S, "first_id": a, "last_id": b}` to the index's `info["sources"]`:
one record per call whatever its size, and ids only grow, so ranges never overlap and removing
items leaves them right. Indexes written before these records hold only `info["source"]`, the
build's source; it answers for every id no range covers.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SiameseError

SOURCES = "sources"  # index info key: the ranges
LEGACY_SOURCE = "source"  # index info key: the build's source alone


def source_record(source: Any) -> str | None:
    """How `source` is recorded: an existing path made absolute, a dataset name (`sklearn:digits`) as
    given; None for what cannot be read again by name (an ItemSet, an array, a list of files)."""
    if not isinstance(source, (str, Path)):
        return None
    path = Path(source)
    return str(path.resolve()) if path.exists() else str(source)


def record_source(index, source: Any, first_id: int, stop_id: int) -> None:
    """Note in `index.info` that ids first_id..stop_id - 1 came from `source` (nothing for unnamed
    sources or no items); a range continuing the last one from the same source extends it."""
    record = source_record(source)
    if record is None or stop_id <= first_id:
        return
    ranges = [dict(r) for r in index.info.get(SOURCES) or []]
    if ranges and ranges[-1].get("source") == record and ranges[-1].get("last_id") == first_id - 1:
        ranges[-1]["last_id"] = int(stop_id) - 1
    else:
        ranges.append({"source": record, "first_id": int(first_id), "last_id": int(stop_id) - 1})
    legacy = {} if LEGACY_SOURCE in index.info else {LEGACY_SOURCE: record}
    index.info = {**index.info, **legacy, SOURCES: ranges}


def renumbered_sources(info: dict, old_ids: np.ndarray) -> list[dict]:
    """The ranges of `info` after the items with sorted `old_ids` were renumbered 0..n-1 in order."""
    out = []
    for source, first, last in _ranges(info):
        start, stop = np.searchsorted(old_ids, first), np.searchsorted(old_ids, last, side="right")
        if stop > start:
            out.append({"source": source, "first_id": int(start), "last_id": int(stop) - 1})
    return out


def _ranges(info: dict) -> list[tuple[str, int, int]]:
    """(source, first id, last id) of every recorded range, checked (an index's info is input too)."""
    ranges = info.get(SOURCES) or []
    out = []
    for record in ranges if isinstance(ranges, list) else [None]:
        fields = [record.get(name) if isinstance(record, dict) else None for name in ("source", "first_id", "last_id")]
        if not isinstance(fields[0], str) or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                     for v in fields[1:]):
            raise SiameseError(f"the index's info[{SOURCES!r}] is malformed ({str(record)[:80]}); expected a list of "
                               "{source, first_id, last_id} records")
        out.append((fields[0], int(fields[1]), int(fields[2])))
    return out


def sources_of_ids(info: dict, ids: np.ndarray) -> list[str | None]:
    """The recorded source of each id (n,); None where nothing is recorded."""
    legacy = info.get(LEGACY_SOURCE)
    owner: list[str | None] = [legacy if isinstance(legacy, str) and legacy else None] * len(ids)
    for source, first, last in _ranges(info):
        for i in np.flatnonzero((ids >= first) & (ids <= last)).tolist():
            owner[i] = source
    return owner


def read_indexed_items(index, keys: list[str], *, loaded: dict[str, Any] | None = None,
                       **load_options) -> dict[str, Any]:
    """{key: (ItemSet holding it, its position)} for indexed `keys`, each read from its own recorded
    source, every source read once. load_options go to load_items (normalisation, channels, size...).
    loaded: a cache {source: (ItemSet, {key: position})} of the sources read whole (files, datasets)
    that the caller keeps across calls; folders are always read file by file."""
    from ..data.loading import load_items

    unique = list(dict.fromkeys(keys))
    owners = sources_of_ids(index.info, index.ids_for_keys(unique))
    missing = [k for k, s in zip(unique, owners) if s is None]
    if missing:
        raise SiameseError(f"the index does not record where {len(missing)} of its items came from (e.g. "
                           f"{missing[0]!r}); index them with `siamese index build` or `siamese index add` "
                           "to read them back")
    by_source: dict[str, list[str]] = {}
    for key, source in zip(unique, owners):
        by_source.setdefault(source, []).append(key)
    options = {**load_options, "limit": None, "on_error": "raise"}
    found: dict[str, Any] = {}
    for source, wanted in by_source.items():
        if Path(source).is_dir():  # only the files needed, named by their keys
            items = load_items([str(_inside(Path(source), k)) for k in wanted], **options)
            found.update((k, (items, i)) for i, k in enumerate(wanted))
            continue
        cached = loaded.get(source) if loaded is not None else None
        if cached is None:
            items = load_items(source, **options)
            cached = (items, {key: i for i, key in enumerate(items.keys)})
            if loaded is not None:
                loaded[source] = cached
        items, position = cached
        gone = [k for k in wanted if k not in position]
        if gone:
            raise SiameseError(f"{len(gone)} indexed item(s) are no longer in {source} (e.g. {gone[0]!r}); "
                               "give the data they were indexed from")
        found.update((k, (items, position[k])) for k in wanted)
    return found


def _inside(folder: Path, key: str) -> Path:
    """folder / key, refused when the key (from an index that may come from elsewhere) leads outside it."""
    path = folder / key
    if not path.resolve().is_relative_to(folder.resolve()):
        raise SiameseError(f"indexed key {key[:80]!r} points outside its source folder {folder}; the index is "
                           "damaged or hostile: rebuild it from your data")
    return path


def item_arrays(index, keys: np.ndarray, **load_options) -> np.ndarray:
    """The items of indexed `keys` (any shape; None = no item, drawn blank) as a float32 array of
    shape keys.shape + item shape, read from their sources (see read_indexed_items)."""
    flat = keys.ravel().tolist()
    found = read_indexed_items(index, [k for k in flat if k is not None], **load_options)
    if not found:
        raise SiameseError("no items to read back: every slot is empty")
    shape = next(iter(found.values()))[0].item_shape
    out = np.zeros((len(flat), *shape), dtype=np.float32)
    for row, key in enumerate(flat):
        if key is not None:
            items, i = found[str(key)]
            out[row] = items.x[i].numpy()
    return out.reshape(*keys.shape, *shape)


def indexed_item_sets(index, **load_options) -> list:
    """Every indexed item, as one ItemSet per recorded source (for statistics over the index)."""
    keys = [str(k) for k in index.keys_for_ids(index.ids)]
    parts: dict[int, tuple[Any, list[int]]] = {}
    for items, i in read_indexed_items(index, keys, **load_options).values():
        parts.setdefault(id(items), (items, []))[1].append(i)
    return [items.subset(rows) for items, rows in parts.values()]
