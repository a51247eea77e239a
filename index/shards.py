"""Indexes built in pieces: one trained quantizer, shards filled anywhere, merged on disk.

    template = train_template(sample, kind="ivf", expected_count=n)   # empty, trained; save it
    shard = build_shard(template_dir, vectors[a:b], first_id=a, shard=(i, n_shards)); shard.save(...)
    merge_shards([shard_dir, ...], out)                                # one loadable index directory

Every shard starts from the same trained (empty) IVF / IVF-PQ index, so a vector lands in the
same inverted list with the same code wherever it is added, and shard i numbers its items by
their position in the whole collection. Shards are ordinary index directories (on other
machines if need be). `merge_shards` concatenates their inverted lists into one faiss
OnDiskInvertedLists file (faiss.contrib.ondisk.merge_ondisk reads the shards memory-mapped, so
merging holds no shard's vectors in RAM) and their metadata with SQLite INSERT ... SELECT.
The result loads with `VectorIndex.load` and searches exactly like an index built in one go
with the same quantizer; its lists are mapped read-only from lists.ivfdata, so it cannot be
added to: build another shard and merge again.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

from . import storage as _storage
from ._faiss import bounded_faiss_reads
from .atomic import atomic_directory
from .errors import VectorIndexError
from .outputs import check_output_directory
from .backends import largest_honest_array, map_lists  # noqa: F401 (index.shards.map_lists stays importable)
from .kinds import IVF_KINDS, IndexParams
from .saved_metadata import SCHEMA, append_saved_rows, load_problem
from .vector_index import VectorIndex

logger = logging.getLogger(__name__)

QUANTIZER = "quantizer"  # info key: sha256 of the template's vectors.faiss, shared by its shards
SHARD = "shard"  # info key of a shard: {"index": i, "of": n, "first_id": a, "quantizer": sha}


def shard_bounds(count: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rows [start, stop) of shard i of n over `count` items (contiguous, sizes differ by <= 1)."""
    i, n = _check_shard(shard)
    return count * i // n, count * (i + 1) // n


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise VectorIndexError(f"shard must be (i, n), got {shard!r}") from None
    if not 0 <= i < n:
        raise VectorIndexError(f"shard {i}/{n} is out of range; use i in 0..{n - 1} with n >= 1")
    return i, n


def train_template(sample: Any, *, kind: str = "ivf", expected_count: int, metric: str = "l2",
                   nlist: int | None = None, pq_m: int | None = None, seed: int = 0,
                   model_fingerprint: str | None = None, info: dict[str, Any] | None = None) -> VectorIndex:
    """An empty IVF / IVF-PQ index trained on `sample` (s, d), sized for `expected_count` items.

    Save it and give its directory to every `build_shard`: the shards then share its coarse
    quantizer (and PQ code books), which is what makes them mergeable.
    """
    if kind not in IVF_KINDS:
        raise VectorIndexError(f"sharded indexes need an IVF kind ({', '.join(IVF_KINDS)}), got {kind!r}")
    sample = np.asarray(sample)
    if sample.ndim != 2:
        raise VectorIndexError(f"sample must have shape (s, d), got {sample.shape}")
    index = VectorIndex.empty(sample.shape[1], metric=metric, kind=kind, expected_count=expected_count, nlist=nlist,
                              pq_m=pq_m, seed=seed, model_fingerprint=model_fingerprint, info=info)
    index.train(sample)
    return index


def start_shard(template: str | Path, shard: tuple[int, int], first_id: int) -> VectorIndex:
    """An empty copy of the saved trained template for shard i of n; its first item gets id
    `first_id` (the item's position in the whole collection). Add items, then save it."""
    i, n = _check_shard(shard)
    template = Path(template)
    index = VectorIndex.load(template)
    if index.kind not in IVF_KINDS or not index.is_trained or len(index) or index.next_id:
        raise VectorIndexError(f"{str(template)!r} is not an empty trained IVF index; make one with "
                               "train_template(...).save(dir) (CLI: siamese index train)")
    quantizer = _storage.read_manifest(template)["files"][_storage.FAISS_FILE]["sha256"]
    index.reserve_ids(first_id)
    index.info = {**index.info, SHARD: {"index": i, "of": n, "first_id": int(first_id), QUANTIZER: quantizer}}
    return index


def build_shard(template: str | Path, vectors: Any, *, first_id: int, shard: tuple[int, int],
                keys: Sequence[str | int] | None = None,
                labels: Sequence[str | int | None] | None = None) -> VectorIndex:
    """Shard i of n holding `vectors` (m, d) with ids first_id .. first_id + m - 1."""
    index = start_shard(template, shard, first_id)
    index.add(vectors, keys=keys, labels=labels)
    return index


# ---------------------------------------------------------------- merging


def shard_manifests(shards: Sequence[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Manifests of the shards in shard order, after checking that they belong together."""
    if not shards:
        raise VectorIndexError("merge needs at least one shard directory")
    found = []
    for path in map(Path, shards):
        manifest = _storage.read_manifest(path)
        shard = manifest["info"].get(SHARD)
        if not isinstance(shard, dict) or not {"index", "of", QUANTIZER} <= shard.keys():
            raise VectorIndexError(f"{str(path)!r} is not a shard (no info.shard in its manifest); "
                                   "build shards with build_shard / siamese index build --shard i/n --from TEMPLATE")
        found.append((path, manifest))
    found.sort(key=lambda pm: pm[1]["info"][SHARD]["index"])
    first = found[0][1]
    for path, manifest in found:
        for field in ("dim", "metric", "kind", "params", "model_fingerprint"):
            if manifest[field] != first[field]:
                raise VectorIndexError(f"shard {str(path)!r} has {field} {manifest[field]!r} but the first shard "
                                       f"{first[field]!r}; merge shards built from one template")
        if manifest["info"][SHARD][QUANTIZER] != first["info"][SHARD][QUANTIZER]:
            raise VectorIndexError(f"shard {str(path)!r} was built from another trained template than the first "
                                   "shard; merge shards of one template only")
    numbers = [m["info"][SHARD]["index"] for _, m in found]
    total = first["info"][SHARD]["of"]
    if numbers != list(range(total)):
        missing = sorted(set(range(total)) - set(numbers))
        raise VectorIndexError(f"expected shards 0..{total - 1} once each, got {numbers}"
                               + (f" (missing {missing})" if missing else "") + "; pass every shard exactly once")
    return found


def _empty_trained(faiss_file: Path, manifest: dict[str, Any]) -> faiss.Index:
    """The shards' trained index with no vectors, read without loading any inverted list."""
    params = IndexParams.from_json(manifest["params"])
    with bounded_faiss_reads(largest_honest_array(faiss_file.stat().st_size, params, manifest["dim"])):
        index = faiss.read_index(str(faiss_file), faiss.IO_FLAG_MMAP)
    ivf = faiss.extract_index_ivf(index)
    ivf.set_direct_map_type(faiss.DirectMap.NoMap)
    lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index owns it now
    index.ntotal = ivf.ntotal = 0
    return index


def _merge_metadata(shards: list[tuple[Path, dict[str, Any]]], target: Path) -> None:
    """One meta.sqlite from the shards', row by row inside SQLite (never all in Python)."""
    conn = sqlite3.connect(Path(target).resolve().as_uri(), uri=True)  # URIs on: shards are attached read-only
    try:
        conn.execute(SCHEMA)
        for path, _ in shards:
            try:  # checked like any untrusted metadata file: exact schema, row checks, bounded work
                append_saved_rows(conn, path / _storage.META_FILE)
            except sqlite3.IntegrityError as exc:
                raise VectorIndexError(f"shard {str(path)!r} repeats an id or key of an earlier shard ({exc}); "
                                       "give every shard its own slice of the items") from None
            except (sqlite3.Error, OSError, ValueError) as exc:
                raise VectorIndexError(f"{path / _storage.META_FILE} is not a valid metadata database "
                                       f"({load_problem(exc)}); rebuild that shard") from None
        conn.execute("PRAGMA journal_mode=WAL")
        conn.commit()
    finally:
        conn.close()


def merge_shards(shards: Sequence[str | Path], out: str | Path, *, direct_map: bool = True,
                 overwrite: bool = False) -> Path:
    """Merge shard directories into one index directory at `out` (written atomically).

    Memory stays bounded by one shard's id map, not by the vectors: shards are read
    memory-mapped and their lists copied into lists.ivfdata. direct_map=False skips the id ->
    position hash table (about 50 bytes per item in RAM once loaded); without it `reconstruct`
    and `get` are unavailable but search works. The shards are checksummed here; the first load of
    the result checks it whole (ids across files) and records that, so later loads open in seconds
    (`siamese index merge` does that load).
    """
    found = shard_manifests(shards)
    for path, manifest in found:
        for name in (_storage.FAISS_FILE, _storage.META_FILE):
            _storage.verify_file(path, name, manifest)  # checked before faiss or SQLite reads a byte
    first = found[0][1]
    out = Path(out)
    check_output_directory(out, "index", overwrite=overwrite)
    index = _empty_trained(found[0][0] / _storage.FAISS_FILE, first)
    index.nprobe = first["params"].get("nprobe") or index.nprobe
    with atomic_directory(out, "index", overwrite=overwrite) as tmp:
        logger.info("merging %d shards into %s", len(found), out)
        files = [path / _storage.FAISS_FILE for path, _ in found]
        params = IndexParams.from_json(first["params"])
        with bounded_faiss_reads(max(largest_honest_array(f.stat().st_size, params, first["dim"]) for f in files)):
            merge_ondisk(index, [str(f) for f in files], str(tmp / _storage.IVFDATA_FILE))
        count = sum(m["count"] for _, m in found)
        if index.ntotal != count:
            raise VectorIndexError(f"the shards' faiss files hold {index.ntotal} vectors but their manifests say "
                                   f"{count}; rebuild the shards")
        if direct_map:
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        faiss.write_index(index, str(tmp / _storage.FAISS_FILE))
        del index
        _merge_metadata(found, tmp / _storage.META_FILE)
        names = [_storage.FAISS_FILE, _storage.META_FILE, _storage.IVFDATA_FILE]
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        info = {k: v for k, v in first["info"].items() if k != SHARD}
        ranges = [r for _, m in found for r in _list(m["info"].get("sources"))]  # where each shard's items came from
        if ranges:
            info["sources"] = ranges
        manifest = {
            **{k: first[k] for k in ("format", "format_version", "dim", "metric", "kind", "params",
                                     "model_fingerprint")},
            "count": count,
            "next_id": max(m["next_id"] for _, m in found),
            "seed": first.get("seed", 0),
            "info": {**info, "merged_from": {"shards": len(found), QUANTIZER: first["info"][SHARD][QUANTIZER]}},
            "created_at": now,
            "saved_at": now,
            "libraries": {"numpy": np.__version__, "faiss": faiss.__version__, "python": platform.python_version()},
            "files": {name: _storage.file_entry(tmp / name) for name in names},
        }
        _storage.write_manifest(tmp, manifest)
    logger.info("merged %d items from %d shards into %s", count, len(found), out)
    return out


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []
