"""Fill, extend and open FAISS indexes with a model's embeddings.

The hand-off to the `index` package is a float32 (n, d) array. Items are embedded chunk by
chunk, so building over a folder larger than RAM keeps memory bounded by the chunk size. Every
index records the fingerprint and summary of the model that produced its vectors, and opening
it with another model is refused unless forced.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from index import VectorIndex
from index.kinds import IndexParams, train_sample_size
from index.locking import write_lock

from ..errors import SiameseError
from ..inference.embed import embed
from ..memory import release_freed_memory
from ..models.autoencoder import Autoencoder
from ..models.model_input import CHUNK_ITEMS, model_chunks
from .item_sources import record_source, renumbered_sources, source_record
from .label_match import LabelMatch

logger = logging.getLogger(__name__)


def model_summary(model: Autoencoder) -> dict[str, Any]:
    """What an index keeps about its model (JSON), beside the fingerprint."""
    return {
        "variant": model.config.variant,
        "arch": model.network.arch,
        "latent_dim": model.latent_dim,
        "input_shape": list(model.network.input_shape),
        "finetuned": "finetune" in model.info,
        "metric": model.metric,
        **({"threshold": model.info["threshold"]} if "threshold" in model.info else {}),
    }


def _add_chunks(index: VectorIndex, model: Autoencoder, chunks, *, labels: LabelMatch | None, progress: bool,
                done: int = 0) -> int:
    """Embed and add every chunk; returns the number of items added."""
    added = 0
    bar = tqdm(desc="embed + index", unit="item", initial=done, disable=None if progress else True, leave=False)
    for chunk in chunks:
        if labels is not None:
            chunk = labels.apply(chunk)
        release_freed_memory()  # the read's temporaries, so resident memory tracks the index alone
        vectors = embed(model, chunk)
        release_freed_memory()
        index.add(vectors, keys=chunk.keys, labels=chunk.labels)
        added += len(chunk)
        bar.update(len(chunk))
        del chunk, vectors  # free this chunk before the next one is read: one chunk in memory at a time
        release_freed_memory()
    bar.close()
    return added


def build_index(model: Autoencoder, source, *, kind: str = "auto", labels=None, chunk_size: int = CHUNK_ITEMS,
                progress: bool = False, memory_budget_bytes: int | None = None, calibration=None, seed: int = 0,
                **data_options) -> VectorIndex:
    """Embed every item of `source` (ItemSet or any load_items source) into a new index.

    labels: optional {key: label} mapping, LABELS.csv path or LabelMatch that replaces the source's own
    labels (pass a LabelMatch to learn afterwards what matched).
    The source, when named (a path or dataset name), is recorded in info["sources"] (item_sources.py).
    calibration: the model's same/different Calibration (or its model directory), kept in the
    index's info["calibration"] so the threshold travels with the index.
    kind="auto" is chosen from the number of items the whole source holds. IVF kinds are trained
    on a uniform random sample (seeded) drawn across the whole source before anything is added: a
    first pass reads every chunk and embeds only the sampled items, a second adds them all.
    """
    info = {"model": model_summary(model), **_calibration_info(model, calibration)}
    labels = LabelMatch.of(labels)
    chunks = model_chunks(model, source, chunk_size, data_options)
    index = VectorIndex.empty(model.latent_dim, metric=model.metric, kind=kind, expected_count=max(chunks.total, 1),
                              memory_budget_bytes=memory_budget_bytes, model_fingerprint=model.fingerprint(),
                              info=info, seed=seed)
    if not index.is_trained:
        size = train_sample_size(IndexParams.from_json(index.params))
        index.train(embed_sample(model, source, size, chunk_size=chunk_size, seed=seed,
                                 progress=progress, data_options=data_options))
    index.reserve(max(chunks.total, 1))  # vector storage allocated once, at its final size
    if _add_chunks(index, model, chunks, labels=labels, progress=progress) == 0:
        raise SiameseError("no items to index: the data source is empty")
    record_source(index, source, 0, index.next_id)
    return index


def embed_sample(model: Autoencoder, source, size: int, *, chunk_size: int = CHUNK_ITEMS, seed: int = 0,
                 progress: bool = False, data_options: dict | None = None) -> np.ndarray:
    """Embeddings (m, d) of a uniform random sample of min(size, n) of the source's n items, drawn
    with `seed` across the whole source (not its first chunk: a source sorted by class would
    train on one class). Every chunk is read once; only the sampled items are embedded."""
    chunks = model_chunks(model, source, chunk_size, dict(data_options or {}))
    keep = np.zeros(chunks.total, dtype=bool)
    keep[np.random.default_rng(seed).choice(chunks.total, size=min(size, chunks.total), replace=False)] = True
    parts, seen = [], 0
    bar = tqdm(desc="sample to train on", unit="item", total=chunks.total, disable=None if progress else True,
               leave=False)
    for chunk in chunks:
        mask = keep[seen:seen + len(chunk)]
        seen += len(chunk)
        if mask.any():
            parts.append(embed(model, chunk.subset(np.flatnonzero(mask))))
        bar.update(len(chunk))
    bar.close()
    if not parts:
        raise SiameseError("no items to sample: the data source is empty")
    return np.concatenate(parts)


def _calibration_info(model: Autoencoder, calibration) -> dict[str, Any]:
    """{"calibration": record} for a Calibration or model directory (checked against the model); {} for None."""
    if calibration is None:
        return {}
    from .calibration import Calibration, check_calibration, load_calibration

    if not isinstance(calibration, Calibration):
        calibration = load_calibration(calibration)
    check_calibration(calibration, model)
    return {"calibration": calibration.to_dict()}


def rebuild_index(path: str | Path, model: Autoencoder, source, *, calibration=None, chunk_size: int = CHUNK_ITEMS,
                  progress: bool = False, untrusted: bool = False, **data_options) -> VectorIndex:
    """Re-embed a saved index's items with `model` and replace it atomically (a stale index: the
    model changed). Keys, labels, attrs, kind and id order stay; vectors, fingerprint, model
    summary and calibration are the new model's. Every indexed key must be among `source`'s
    items. Ids are kept when they are 0..n-1 (no item was ever removed), renumbered otherwise.
    The index's writer lock is held throughout, so no concurrent add is lost.
    """
    with write_lock(path):
        return _rebuild_locked(path, model, source, calibration=calibration, chunk_size=chunk_size,
                               progress=progress, untrusted=untrusted, data_options=data_options)


def _rebuild_locked(path: str | Path, model: Autoencoder, source, *, calibration, chunk_size: int, progress: bool,
                    untrusted: bool, data_options: dict) -> VectorIndex:
    import numpy as np

    old = VectorIndex.load(path, untrusted=untrusted)
    ids = old.ids
    keys = [str(k) for k in old.keys_for_ids(ids)]
    position = {key: i for i, key in enumerate(keys)}
    vectors = np.zeros((len(keys), model.latent_dim), dtype=np.float32)
    found = np.zeros(len(keys), dtype=bool)
    bar = tqdm(desc="re-embed", unit="item", total=len(keys), disable=None if progress else True, leave=False)
    for chunk in model_chunks(model, source, chunk_size, data_options):
        rows = [(i, position[k]) for i, k in enumerate(chunk.keys) if k in position]
        if rows:
            mine, theirs = (np.array(v) for v in zip(*rows))
            vectors[theirs] = embed(model, chunk.subset(mine))
            found[theirs] = True
            bar.update(len(rows))
    bar.close()
    if not found.all():
        missing = [keys[i] for i in np.flatnonzero(~found)[:3]]
        raise SiameseError(f"{int((~found).sum())} indexed item(s) are not in the data source (e.g. {missing}); "
                           "give the DATA the index was built from")
    info = {k: v for k, v in old.info.items() if k != "calibration"}
    info.update({"model": model_summary(model), **_calibration_info(model, calibration)})
    record = source_record(source)
    if record is not None:  # it holds every indexed key: the one source from now on
        info.update({"source": record, "sources": [{"source": record, "first_id": 0, "last_id": len(keys) - 1}]})
    elif "sources" in info:  # ids become 0..n-1 in the same order
        info["sources"] = renumbered_sources(info, ids)
    params = old.params
    index = VectorIndex.build(vectors, keys=keys, labels=list(old.labels_for_ids(ids)), attrs=old.attrs_for_ids(ids),
                              metric=model.metric, kind=old.kind, model_fingerprint=model.fingerprint(), info=info,
                              nlist=params.get("nlist"), pq_m=params.get("pq_m"))
    index.save(path)
    logger.info("rebuilt %s: %d items re-embedded with model %s", path, len(index), model.fingerprint()[:12])
    return index


def add_items(index: VectorIndex, model: Autoencoder, source, *, labels=None, chunk_size: int = CHUNK_ITEMS,
              progress: bool = False, force: bool = False, **data_options) -> int:
    """Append items to an existing index (ids continue; keys already present are refused). labels as
    in build_index; a named source is recorded in info["sources"]."""
    index.check_model(model.fingerprint(), dim=model.latent_dim, force=force)
    chunks = model_chunks(model, source, chunk_size, data_options)
    first_id = index.next_id
    added = _add_chunks(index, model, chunks, labels=LabelMatch.of(labels), progress=progress)
    if added == 0:
        raise SiameseError("no items to add: the data source is empty")
    record_source(index, source, first_id, index.next_id)
    return added


def add_to_saved_index(path: str | Path, model: Autoencoder, source, *, untrusted: bool = False, force: bool = False,
                       **add_options) -> tuple[VectorIndex, int]:
    """Load the index saved at `path`, add `source`'s items and save it back, holding its writer
    lock throughout so that concurrent adds queue up instead of dropping each other's items.
    Returns (index, number added)."""
    with write_lock(path):
        index = open_index(path, model, force=force, untrusted=untrusted)
        added = add_items(index, model, source, force=force, **add_options)
        index.save(path)
    return index, added


def open_index(path: str | Path, model: Autoencoder | None = None, *, force: bool = False,
               untrusted: bool = False, shards: bool = False) -> VectorIndex:
    """Load an index and, given a model, refuse it unless the model produced its vectors.
    shards=True also opens a folder of shard folders (index build --shard i/n) as one ShardedIndex,
    for the commands that only search and look up."""
    from index.sharded import open_index_or_shards

    index = open_index_or_shards(path, untrusted=untrusted)
    if not shards and not isinstance(index, VectorIndex):
        raise SiameseError(f"{path} is a folder of {len(index.shards)} shards; merge them into one index first "
                           "(siamese index merge SHARD... --out INDEX); query and serve read shards as they are")
    if model is not None:
        index.check_model(model.fingerprint(), dim=model.latent_dim, force=force)
    return index
