"""The `siamese index` group: build, add, info and remove here; train/merge (shards.py) and rebuild
(verify.py) join the group from their own modules."""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter

from ..errors import SiameseError
from .options import (
    add_chunk_size_option,
    add_data_argument,
    add_data_options,
    add_index_argument,
    add_index_open_options,
    add_model_argument,
    add_output_dir_option,
    chunk_items_argument,
    load_model_argument,
    source_options,
)


def register(sub) -> None:
    """Add `siamese index ACTION` to the `siamese` parser."""
    from . import shards as cli_shards
    from .verify import add_rebuild_parser

    p = sub.add_parser("index", help="build, extend, shrink or describe a FAISS index of embeddings")
    index_sub = sub.nested(p.add_subparsers(dest="index_command", required=True, metavar="ACTION"))
    index_sub.add_parser("build", cmd_index_build, index_build_arguments, help="embed DATA with MODEL into a new index")
    index_sub.add_parser("add", cmd_index_add, index_add_arguments,
                         help="append DATA's items to an index (ids continue)")
    index_sub.add_parser("info", cmd_index_info, index_info_arguments, help="describe an index")
    index_sub.add_parser("check", cmd_index_check, index_check_arguments,
                         help="check every file of an index again (checksums, metadata rows, ids)")
    index_sub.add_parser("remove", cmd_index_remove, index_remove_arguments,
                         help="remove items from an index by key (no model needed)")
    cli_shards.register(index_sub)
    add_rebuild_parser(index_sub)


def cmd_index_build(args: argparse.Namespace) -> int:
    from ..retrieval.calibration import find_calibration
    from ..retrieval.indexing import build_index

    if args.shard or args.template:
        from .shards import cmd_index_build_shard

        return cmd_index_build_shard(args)
    model = load_model_argument(args.model)
    labels = label_match(args)
    index = build_index(model, args.data, kind=args.kind, labels=labels, chunk_size=chunk_items_argument(args, model),
                        progress=not args.quiet, calibration=find_calibration(args.model, model),
                        **source_options(args))
    index.save(args.out, overwrite=args.overwrite)
    print_label_match(labels, args)
    print(f"indexed {len(index)} items ({index.kind}, dim {index.dim}, metric {index.metric}, "
          f"{index.labelled_items()[0].size} labelled) -> {args.out}")
    return 0


def cmd_index_add(args: argparse.Namespace) -> int:
    from ..retrieval.indexing import add_to_saved_index

    model = load_model_argument(args.model)
    labels = label_match(args)
    index, added = add_to_saved_index(args.index, model, args.data, untrusted=args.untrusted, force=args.force,
                                      labels=labels, chunk_size=chunk_items_argument(args, model),
                                      progress=not args.quiet, **source_options(args))
    print_label_match(labels, args)
    print(f"added {added} items ({len(index) - added} -> {len(index)}) to {args.index}")
    return 0


def cmd_index_remove(args: argparse.Namespace) -> int:
    """Torch-free: the whole change happens in the index package, under the index's writer lock."""
    from index.removal import remove_from_saved_index

    keys = list(dict.fromkeys([*(args.key or []), *(_read_keys_file(args.keys_file) if args.keys_file else [])]))
    if not keys:
        raise SiameseError("name the items to remove: --key KEY (repeatable) or --keys-file FILE")
    index, removed = remove_from_saved_index(args.index, keys, untrusted=args.untrusted)
    shown = ", ".join(keys[:SHOWN_KEYS]) + (f", ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else "")
    print(f"removed {removed} item{'s' if removed != 1 else ''} ({shown}) from {args.index}: "
          f"{len(index) + removed} -> {len(index)}")
    return 0


SHOWN_KEYS = 5  # keys named in `index remove`'s report


def _read_keys_file(path: str) -> list[str]:
    """One key per line (blank lines skipped), or a CSV whose header has a `key` column (LABELS.csv,
    PRED.csv...)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
        header = [cell.strip().lower() for cell in next(csv.reader(lines[:1]), [])]
        if "key" in header:
            column = header.index("key")
            rows = csv.reader(lines[1:])
            return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
    except FileNotFoundError:
        raise SiameseError(f"keys file not found: {path}; give a file with one key per line") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SiameseError(f"cannot read keys file {path} ({exc}); give a UTF-8 file with one key per line") from None
    return [line.strip() for line in lines if line.strip()]


def label_match(args: argparse.Namespace):
    """--labels LABELS.csv read into a LabelMatch (it counts what it labels), or None."""
    from ..retrieval.label_match import LabelMatch

    return LabelMatch.of(args.labels)


def print_label_match(labels, args: argparse.Namespace) -> None:
    """What --labels did: how many matched, unknown keys, labels of DATA it replaced."""
    for line in labels.report(f"--labels {args.labels}") if labels is not None else ():
        print(line)


def cmd_index_info(args: argparse.Namespace) -> int:
    from index import VectorIndex

    index = VectorIndex.load(args.index, untrusted=args.untrusted)
    counts = Counter(index.labelled_items()[1].tolist())
    record = {"path": args.index, "count": len(index), "dim": index.dim, "metric": index.metric,
              "kind": index.kind, "model_fingerprint": index.model_fingerprint,
              "labelled": int(sum(counts.values())), "classes": dict(sorted(counts.items())), **index.info}
    if args.json:
        print(json.dumps(record, default=str))
    else:
        for key, value in record.items():
            print(f"{key:>18}: {value}")
    return 0


def cmd_index_check(args: argparse.Namespace) -> int:
    """Torch-free. A load checks a file whole only when no record of an earlier check vouches for it
    (index.verification); this checks all of them, whatever a record says."""
    from index import VectorIndex

    index = VectorIndex.load(args.index, full_check=True)
    print(f"{args.index}: {len(index)} items; every file matches its checksum, every metadata row is valid, "
          f"and the vectors and metadata hold the same ids")
    return 0


def index_build_arguments(b: argparse.ArgumentParser) -> None:
    from index.kinds import KINDS

    from .shards import add_shard_options

    add_model_argument(b, "the model that embeds DATA")
    add_data_argument(b, "the items to index")
    add_output_dir_option(b, "INDEX", "index", help="folder for the index (new, or an earlier index)")
    b.add_argument("--kind", choices=("auto", *KINDS), default="auto",
                   help="faiss structure; auto: flat, hnsw or ivf by the number of items")
    b.add_argument("--labels", metavar="LABELS.csv", help="labels for (some of) the items, header key,label")
    add_chunk_size_option(b)
    add_shard_options(b)
    add_data_options(b)


def index_add_arguments(a: argparse.ArgumentParser) -> None:
    add_index_argument(a, "the index to extend (written by siamese index build)")
    add_model_argument(a, "the model that built INDEX")
    add_data_argument(a, "the items to add")
    a.add_argument("--labels", metavar="LABELS.csv", help="labels for (some of) the items, header key,label")
    add_chunk_size_option(a)
    add_index_open_options(a)
    add_data_options(a)


def index_remove_arguments(r: argparse.ArgumentParser) -> None:
    add_index_argument(r, "the index to remove items from")
    r.add_argument("--key", action="append", metavar="KEY", help="key of an item to remove (repeatable)")
    r.add_argument("--keys-file", metavar="FILE",
                   help="keys to remove, one per line (or a CSV with a key column, e.g. LABELS.csv)")
    r.add_argument("--untrusted", action="store_true",
                   help="an index from elsewhere: rebuild it from vectors.npy, never parse its faiss file")


def index_check_arguments(v: argparse.ArgumentParser) -> None:
    add_index_argument(v, "the index to check")


def index_info_arguments(i: argparse.ArgumentParser) -> None:
    add_index_argument(i)
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.add_argument("--untrusted", action="store_true", help="rebuild from vectors.npy, never parse the faiss file")
