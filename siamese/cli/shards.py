"""CLI for indexes built in shards: `index train`, `index build --shard i/n --from TEMPLATE`, `index merge`.

    siamese index train MODEL DATA --kind ivf --out TEMPLATE        once: coarse quantizer from a sample
    siamese index build MODEL DATA --shard i/n --from TEMPLATE --out SHARD_i   on any machine, i = 0..n-1
    siamese index merge SHARD_0 ... SHARD_n-1 --out INDEX           one index (lists in lists.ivfdata)

Item ids are positions in DATA (after --skip/--limit), so every machine must see the same DATA.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys

from ..errors import SiameseError
from .options import (
    add_chunk_size_option,
    add_data_argument,
    add_data_options,
    add_model_argument,
    add_output_dir_option,
    chunk_items_argument,
    load_model_argument,
    source_options,
)


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text or "")
    if not match or not int(match[1]) < int(match[2]):
        raise SiameseError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. --shard 0/4")
    return int(match[1]), int(match[2])


def count_items(args: argparse.Namespace, source: str) -> int:
    """Items DATA holds after --skip/--limit, without reading them."""
    from ..data.sources import open_reader

    total = len(open_reader(source, args.root, args.download, None).keys)
    stop = total if args.limit is None else min(total, args.skip + args.limit)
    if stop <= args.skip:
        raise SiameseError(f"--skip {args.skip} leaves no items: {source} has {total}")
    return stop - args.skip


def _shard_options(args: argparse.Namespace, start: int, stop: int) -> dict:
    options = source_options(args)
    options["skip"], options["limit"] = args.skip + start, args.skip + stop
    return options


def cmd_index_train(args: argparse.Namespace) -> int:
    from index.shards import train_template

    from ..retrieval.indexing import embed_sample, model_summary

    model = load_model_argument(args.model)
    count = count_items(args, args.data)
    if args.sample < 1:
        raise SiameseError(f"--sample must be >= 1, got {args.sample}")
    sample = embed_sample(model, args.data, args.sample, chunk_size=chunk_items_argument(args, model), seed=args.seed,
                          progress=not args.quiet, data_options=_shard_options(args, 0, count))
    template = train_template(sample, kind=args.kind, expected_count=count, metric=model.metric,
                              nlist=args.nlist, pq_m=args.pq_m, seed=args.seed,
                              model_fingerprint=model.fingerprint(), info={"model": model_summary(model)})
    template.save(args.out, overwrite=args.overwrite)
    params = template.params
    print(f"trained {template.kind} template (nlist {params['nlist']}"
          f"{', pq_m ' + str(params['pq_m']) if params['pq_m'] else ''}) on {len(sample)} of {count} "
          f"items -> {args.out}")
    return 0


def cmd_index_build_shard(args: argparse.Namespace) -> int:
    """`index build --shard i/n --from TEMPLATE`: embed this shard's slice of DATA."""
    from index.shards import shard_bounds, start_shard

    from ..retrieval.indexing import add_items

    if not args.template:
        raise SiameseError("--shard needs --from TEMPLATE (the trained empty index from `siamese index train`)")
    shard = parse_shard(args.shard)
    model = load_model_argument(args.model)
    count = count_items(args, args.data)
    start, stop = shard_bounds(count, shard)
    index = start_shard(args.template, shard, first_id=start)
    if stop > start:
        add_items(index, model, args.data, labels=args.labels, chunk_size=chunk_items_argument(args, model),
                  progress=not args.quiet, **_shard_options(args, start, stop))
    index.save(args.out, overwrite=args.overwrite)
    print(f"shard {shard[0]}/{shard[1]}: indexed items {start}..{stop - 1} of {count} ({len(index)} items) "
          f"-> {args.out}")
    return 0


def cmd_index_merge(args: argparse.Namespace) -> int:
    from index import VectorIndex
    from index.shards import merge_shards

    if args.untrusted:
        raise SiameseError("index merge has faiss read the shards' files and so cannot take --untrusted; merge only "
                           "shards you built, or rebuild shards from elsewhere with `siamese index build --shard`")
    with _c_stdout_to_stderr():  # faiss prints "resizing <tmp file>" on stdout while merging
        merge_shards(args.shards, args.out, direct_map=not args.no_direct_map, overwrite=args.overwrite)
    index = VectorIndex.load(args.out)
    print(f"merged {len(args.shards)} shards: {len(index)} items ({index.kind}, dim {index.dim}, "
          f"metric {index.metric}) -> {args.out}")
    return 0


@contextlib.contextmanager
def _c_stdout_to_stderr():
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def register(index_sub) -> None:
    """Add `index train` and `index merge`."""
    index_sub.add_parser("train", cmd_index_train, index_train_arguments,
                         help="train an empty IVF index on a sample of DATA, for sharded builds")
    index_sub.add_parser("merge", cmd_index_merge, index_merge_arguments,
                         help="merge shards built from one template into one on-disk index")


def add_shard_options(build: argparse.ArgumentParser) -> None:
    """--shard/--from of `index build`."""
    build.add_argument("--shard", metavar="i/n", help="build shard i of n (0-based) of DATA; needs --from")
    build.add_argument("--from", dest="template", metavar="TEMPLATE", help="trained empty index (siamese index train)")


def index_train_arguments(t: argparse.ArgumentParser) -> None:
    from index.kinds import IVF_KINDS

        
    add_model_argument(t, "the model that embeds DATA")
    add_data_argument(t, "the items to sample from")
    add_output_dir_option(t, "TEMPLATE", "index", help="folder for the trained empty index")
    t.add_argument("--kind", choices=IVF_KINDS, default=IVF_KINDS[0], help="inverted-file structure to train")
    t.add_argument("--nlist", type=int, help="inverted lists (default ~4 sqrt(n))")
    t.add_argument("--pq-m", type=int, help="ivfpq: code bytes per vector (a divisor of the dimension)")
    t.add_argument("--sample", type=int, default=262144, help="items embedded to train on (seeded random sample)")
    t.add_argument("--seed", type=int, default=0, help="which items are sampled")
    add_chunk_size_option(t)
    add_data_options(t)


def index_merge_arguments(m: argparse.ArgumentParser) -> None:
    m.add_argument("shards", metavar="SHARD", nargs="+", help="shard folders built with --from one template")
    add_output_dir_option(m, "INDEX", "index", help="folder for the merged index (new, or an earlier index)")
    m.add_argument("--untrusted", action="store_true", help="refused: merging parses the shards' faiss files")
    m.add_argument("--no-direct-map", action="store_true",
                   help="skip the id map (~50 bytes per item in RAM): search only, no lookup of vectors by key")
