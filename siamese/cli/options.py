"""Shared pieces of the command line: the parser class, the general, data, training and output
options every command module adds, and turning them into API arguments. A leaf: it imports no
command module, so commands import it and never each other's parsers."""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from typing import Any

from index.locking import DEFAULT_LOCK_TIMEOUT

from ..errors import SiameseError


class OneLineParser(argparse.ArgumentParser):
    """argparse's own errors (unknown option, missing argument...) as one line, like ours."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def default_of(config: Any, field: str) -> Any:
    """The default of a dataclass config's field, or of a function's keyword argument: options read
    their defaults from the code they drive, so each default lives in one place."""
    fields = getattr(config, "__dataclass_fields__", None)
    if fields is not None:
        return fields[field].default
    return inspect.signature(config).parameters[field].default


def add_general_options(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_argument_group("general")
    group.add_argument("-q", "--quiet", action="store_true", default=default(False),
                       help="no progress bars or per-epoch lines")
    group.add_argument("--threads", type=int, default=default(None), metavar="N",
                       help="torch/faiss CPU threads (default: the physical cores, fewer when other work keeps "
                       "them busy)")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False), help="log details")
    group.add_argument("--lock-timeout", type=float, default=default(DEFAULT_LOCK_TIMEOUT), metavar="SECONDS",
                       help="how long to wait while another process writes the same index or model "
                       f"(default {DEFAULT_LOCK_TIMEOUT:g})")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help lines end with "(default: X)" when there is a default worth showing; flags that are off
    or unset by default say nothing rather than "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


class Subcommands:
    """Wraps `add_subparsers()` so every sub-command also accepts the general options after its
    name (`siamese pretrain DATA ... -q`), without overriding them when given before it.

    A command's arguments are added by its `arguments(parser)` function only when the command is
    named on the command line (`wanted`; None builds every command): reading option defaults means
    importing the code they drive (torch), which `siamese --help` and `siamese index info` never need.
    """

    def __init__(self, action, wanted: frozenset[str] | None = None):
        self.action, self.wanted = action, wanted
        self.common = argparse.ArgumentParser(add_help=False)
        add_general_options(self.common, lambda value: argparse.SUPPRESS)

    def add_parser(self, name: str, func=None, arguments=None, **kwargs) -> argparse.ArgumentParser:
        """A sub-command parser; `func(args) -> exit code` runs the command (`args.func`) and
        `arguments(parser)` adds its arguments when the command is wanted."""
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        if "help" in kwargs:
            kwargs.setdefault("description", kwargs["help"][:1].upper() + kwargs["help"][1:] + ".")
        parser = self.action.add_parser(name, parents=[self.common], **kwargs)
        if func is not None:
            parser.set_defaults(func=func)
        if arguments is not None and self.builds(name):
            arguments(parser)
        return parser

    def builds(self, name: str) -> bool:
        return self.wanted is None or name in self.wanted

    def nested(self, action) -> Subcommands:
        """Sub-commands of a sub-command (`siamese index ACTION`), built by the same rule."""
        return Subcommands(action, self.wanted)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    from ..data.limits import MAX_PIXELS
    from ..data.preprocessing import DEFAULT_RESIZE, MAX_DEFAULT_SIDE, RESIZE_MODES

    group = parser.add_argument_group("data")
    group.add_argument("--image-size", type=int, nargs="+", metavar="N",
                       help="resize images to N x N (or H W); default: a model's own size, else the images' size "
                       f"(mixed sizes: their median shorter side, at most {MAX_DEFAULT_SIDE})")
    group.add_argument("--resize", choices=RESIZE_MODES,
                       help=f"how images reach that size: stretch, or crop (keep the aspect ratio, cut the centre); "
                       f"default: a model's own, else {DEFAULT_RESIZE}")
    group.add_argument("--channels", type=int, choices=(1, 3),
                       help="force grayscale (1) or RGB (3); default: a model's own, else RGB if any image has colour")
    group.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                       help="unreadable images: fail naming the file (default) or skip them with a warning")
    group.add_argument("--root", help="dataset root for torchvision:NAME sources")
    group.add_argument("--download", action="store_true", help="let torchvision:NAME download the dataset")
    group.add_argument("--skip", type=int, default=0, help="leave out the first N items (before --limit)")
    group.add_argument("--limit", type=int, help="use only N items (after --skip)")

    group.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                       help="refuse images of more than N pixels before decoding them")


DATA_HELP = ("an image folder (sub-folders name the labels), image files, .npy/.npz, .csv, mnist-idx:DIR, "
             "torchvision:NAME or sklearn:digits")


def add_model_argument(parser: argparse.ArgumentParser, help: str = "a model folder written by siamese pretrain "
                       "or finetune") -> None:
    parser.add_argument("model", metavar="MODEL", help=help)


def add_data_argument(parser: argparse.ArgumentParser, help: str = "the items", nargs: str | None = None) -> None:
    parser.add_argument("data", metavar="DATA", nargs=nargs, help=f"{help}: {DATA_HELP}")


def add_index_argument(parser: argparse.ArgumentParser, help: str = "an index folder written by siamese index "
                       "build") -> None:
    parser.add_argument("index", metavar="INDEX", help=help)


_UNITS = {"": None, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes from a size with its unit: 256MB (powers of 1000), 256MiB (powers of 1024)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = _UNITS.get(found.group(2).lower(), 0) if found else 0
    if unit is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no unit; give a size such as 256MB or 1GiB (before version "
                                         "0.4 --chunk-size counted items)")
    if not unit or float(found.group(1)) * unit < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give one such as 256MB, 512MiB or 2GB")
    return int(float(found.group(1)) * unit)


def add_chunk_size_option(parser: argparse.ArgumentParser) -> None:
    from ..models.model_input import CHUNK_BYTES

    parser.add_argument("--chunk-size", type=parse_size, default=CHUNK_BYTES, metavar="SIZE",
                        help="memory one chunk of items may take while it is embedded, e.g. 256MB or 1GiB (items "
                        "are read, embedded and indexed a chunk at a time)")


def chunk_items_argument(args: argparse.Namespace, model) -> int:
    """--chunk-size as the number of items of `model`'s input that fit in it."""
    from ..models.model_input import chunk_items

    return chunk_items(model, args.chunk_size)


def add_output_dir_option(parser: argparse.ArgumentParser, metavar: str, kind: str, *, required: bool = True,
                          default: str | None = None, help: str | None = None) -> None:
    """`--out DIR` (a folder replaced as a whole) and `--overwrite`; the folder is checked before
    any work starts (`check_outputs`)."""
    parser.add_argument("--out", required=required, default=default, metavar=metavar, help=help)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it is a folder siamese did not write (never the current, "
                        "home or root folder)")
    parser.set_defaults(out_kind=kind)


def add_output_file_option(parser: argparse.ArgumentParser, flag: str, metavar: str, suffixes: tuple[str, ...],
                           help: str | None = None, required: bool = False) -> None:
    """An output file option (`--out PRED.csv`, `--plot ROC.png`), checked before any work starts."""
    action = parser.add_argument(flag, metavar=metavar, help=help, required=required)
    parser.set_defaults(output_files=(*(parser.get_default("output_files") or ()), (action.dest, suffixes)))


def add_index_open_options(parser: argparse.ArgumentParser, *, force_help: str = "accept a model other than the "
                           "index's") -> None:
    """How an existing index is opened: --untrusted (never parse its faiss file) and --force."""
    parser.add_argument("--untrusted", action="store_true",
                        help="an index from elsewhere: rebuild it from vectors.npy, never parse its faiss file")
    parser.add_argument("--force", action="store_true", help=force_help)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable --out / --plot paths up front, before data is read or a model trained."""
    from index.outputs import check_output_directory, check_output_file

    kind = getattr(args, "out_kind", None)
    if kind and getattr(args, "out", None):
        check_output_directory(args.out, kind, overwrite=args.overwrite)
    for dest, suffixes in getattr(args, "output_files", None) or ():
        if getattr(args, dest, None):
            check_output_file(getattr(args, dest), suffixes)


def data_kwargs(args: argparse.Namespace, model=None) -> dict:
    size = args.image_size
    kwargs = {
        "image_size": (size[0] if len(size) == 1 else tuple(size[:2])) if size else None,
        "channels": args.channels,
        "resize": args.resize,
        "on_error": args.on_error,
        "root": args.root,
        "download": args.download,
        "limit": None if args.limit is None else args.skip + args.limit,
        "max_pixels": args.max_pixels,
    }
    if model is not None:  # the model's own input pipeline; flags given explicitly override its parts
        kwargs["preprocessing"] = model.preprocessing
    return kwargs


def source_options(args: argparse.Namespace) -> dict:
    """The data options for APIs that read DATA themselves, chunk by chunk (build_index, write_codes...)."""
    options = {k: v for k, v in data_kwargs(args).items() if v not in (None, False) or k == "on_error"}
    return {**options, "skip": args.skip} if args.skip else options


def load_model_argument(path: str):
    """The model a command's MODEL names (torch is imported here, when a command needs it)."""
    from ..models.checkpoint import load_model

    return load_model(path)


def load_data(args: argparse.Namespace, source: str, model=None, labels=None):
    from ..data.loading import load_items

    options = data_kwargs(args, model)
    skip = args.skip
    if skip < 0 or (args.limit is not None and args.limit <= 0):
        raise SiameseError("--skip must be >= 0 and --limit > 0")
    items = load_items(source, labels=labels, **options)
    if skip >= len(items):
        raise SiameseError(f"--skip {skip} leaves no items: {source} has {len(items)}")
    return items.subset(range(skip, len(items))) if skip else items


def add_train_options(parser: argparse.ArgumentParser, defaults, epochs_default: str | None = None) -> None:
    """The optimisation flags, defaulting to the stage's own TrainConfig (`defaults`);
    `epochs_default` says in words what --epochs defaults to when that depends on other flags."""
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=defaults.epochs,
                       help="passes over the data" + (f" (default: {epochs_default})" if epochs_default else ""))
    group.add_argument("--batch-size", type=int, default=defaults.batch_size, help="items per step")
    group.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate (AdamW)")
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay")
    group.add_argument("--schedule", choices=("onecycle", "cosine", "constant"), default=defaults.schedule,
                       help="learning-rate schedule")
    group.add_argument("--val-fraction", type=float, default=defaults.val_fraction,
                       help="share of items held out for the validation loss")
    group.add_argument("--patience", type=int, default=defaults.patience,
                       help="early stopping after N epochs without improvement")
    group.add_argument("--grad-clip", type=float, default=defaults.grad_clip, help="max global gradient norm")
    group.add_argument("--seed", type=int, default=defaults.seed, help="makes runs repeatable")
    group.add_argument("--resume", action="store_true", help="continue the interrupted run saved in --out")
    group.add_argument("--nproc", type=int, help="train in N processes on this machine (torchrun, DDP)")


def train_config(args: argparse.Namespace):
    from ..training.loop import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       schedule=args.schedule, val_fraction=args.val_fraction, patience=args.patience,
                       grad_clip=args.grad_clip or None, seed=args.seed)
