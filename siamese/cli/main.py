"""The `siamese` command: parses arguments, calls the Python API, prints results.

Exit codes: 0 success, 2 user error (one line on stderr, no traceback), 1 a bug.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from index.locking import DEFAULT_LOCK_TIMEOUT

from ..errors import SiameseError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--image-size", type=int, nargs="+", metavar="N", help="resize images to N (or H W)")
    group.add_argument("--channels", type=int, choices=(1, 3), help="force grayscale (1) or RGB (3)")
    group.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                       help="unreadable images: fail naming the file (default) or skip them with a warning")
    group.add_argument("--root", help="dataset root for torchvision:NAME sources")
    group.add_argument("--download", action="store_true", help="let torchvision:NAME download the dataset")
    group.add_argument("--skip", type=int, default=0, help="leave out the first N items (before --limit)")
    group.add_argument("--limit", type=int, help="use only N items (after --skip)")
    from ..data.sources.limits import MAX_PIXELS

    group.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                       help=f"refuse images of more than N pixels before decoding them (default {MAX_PIXELS})")


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
        "on_error": args.on_error,
        "root": args.root,
        "download": args.download,
        "limit": None if args.limit is None else args.skip + args.limit,
        "max_pixels": args.max_pixels,
    }
    if model is not None:
        from ..models.model_input import model_normalization

        shape = model.network.input_shape
        kwargs["normalization"] = model_normalization(model)
        if len(shape) == 3:  # grey <-> RGB follows the model; sizes must match (or pass --image-size)
            kwargs["channels"] = kwargs["channels"] or shape[0]
    return kwargs


def source_options(args: argparse.Namespace) -> dict:
    """The data options for APIs that read DATA themselves, chunk by chunk (build_index, write_codes...)."""
    options = {k: v for k, v in data_kwargs(args).items() if v not in (None, False) or k == "on_error"}
    return {**options, "skip": args.skip} if args.skip else options


def load_data(args: argparse.Namespace, source: str, model=None, labels=None):
    from ..data.loading import load_items

    options = data_kwargs(args, model)
    skip = args.skip
    if skip < 0 or (args.limit is not None and args.limit <= 0):
        raise SiameseError("--skip must be >= 0 and --limit > 0")
    items = load_items(source, labels=labels, **options)
    if skip >= len(items):
        raise SiameseError(f"--skip {skip} leaves no items: {source} has {len(items)}")
    return items.subset(np.arange(skip, len(items))) if skip else items


def add_train_options(parser: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=epochs)
    group.add_argument("--batch-size", type=int, default=128)
    group.add_argument("--lr", type=float, default=lr, help="peak learning rate (one-cycle schedule)")
    group.add_argument("--weight-decay", type=float, default=1e-4)
    group.add_argument("--schedule", choices=("onecycle", "cosine", "constant"), default="onecycle")
    group.add_argument("--val-fraction", type=float, default=0.1)
    group.add_argument("--patience", type=int, help="early stopping after N epochs without improvement")
    group.add_argument("--grad-clip", type=float, default=5.0)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--resume", action="store_true", help="continue the interrupted run saved in --out")
    group.add_argument("--nproc", type=int, help="train in N processes on this machine (torchrun, DDP)")


def train_config(args: argparse.Namespace):
    from ..training.loop import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       schedule=args.schedule, val_fraction=args.val_fraction, patience=args.patience,
                       grad_clip=args.grad_clip or None, seed=args.seed)


# ---------------------------------------------------------------- commands


@command("pretrain")
def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..models.autoencoder import AutoencoderConfig
    from ..training.pretrain import pretrain

    config = AutoencoderConfig(variant=args.variant, arch=args.arch, latent_dim=args.latent_dim,
                               widths=tuple(args.widths or ()), noise=args.noise, k=args.k, beta=args.beta,
                               sparsity_weight=args.sparsity_weight, contractive_weight=args.contractive_weight,
                               augment=None if args.augment is None else args.augment == "on")
    items = load_data(args, args.data)
    print(f"pretraining a {config.variant} autoencoder (d={config.latent_dim}) on {len(items)} items "
          f"of shape {items.item_shape} from {items.source}")
    model = pretrain(items, config, train_config(args), out=args.out, resume=args.resume, progress=not args.quiet,
                     overwrite=args.overwrite)
    print_history(Path(args.out))
    print(f"saved {args.out} (fingerprint {model.fingerprint()[:12]})")
    return 0


@command("finetune")
def cmd_finetune(args: argparse.Namespace) -> int:
    from ..models.checkpoint import load_model
    from ..training.finetune import FinetuneConfig, finetune
    from .verify import pseudo_pair_config

    model = load_model(args.model)
    items = load_data(args, args.data, model)
    config = FinetuneConfig(loss=args.loss, distance=args.distance, pos_margin=args.pos_margin,
                            neg_margin=args.neg_margin, miner=args.miner, metric_weight=args.metric_weight,
                            recon_weight=args.recon_weight, pseudo_pairs=pseudo_pair_config(args))
    labels = args.labels
    if labels == "items":
        labels = True
    tuned = finetune(model, items, pairs=args.pairs, labels=labels, labels_per_class=args.labels_per_class,
                     config=config, train=train_config(args), out=args.out, resume=args.resume,
                     progress=not args.quiet, overwrite=args.overwrite)
    record = tuned.info["finetune"]
    print_history(Path(args.out))
    what = f"{record['n_pairs']} pairs" if record["n_pairs"] else f"{record['n_labelled']} labelled items"
    before, after = record["val_reconstruction_before"], record["val_reconstruction_after"]
    recon = f"; validation reconstruction {before:.2f} -> {after:.2f}" if before is not None else ""
    print(f"fine-tuned on {what} with {config.loss} loss{recon}")
    print(f"saved {args.out} (metric {tuned.metric}, fingerprint {tuned.fingerprint()[:12]})")
    return 0


@command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..models.checkpoint import load_model
    from ..retrieval.evaluate import evaluate_model

    model = load_model(args.model)
    reference = load_data(args, args.data, model, labels=args.labels)
    queries = load_data(args, args.query, model, labels=args.query_labels) if args.query else None
    scores = evaluate_model(model, reference, queries, k=args.k)
    if args.json:
        print(json.dumps(scores.to_dict()))
    else:
        for name, value in scores.to_dict().items():
            print(f"{name:>15}: {value:.4f}")
    return 0


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(out=Path(args.out), dataset=args.dataset, progress=not args.quiet, seed=args.seed,
             overwrite=args.overwrite)
    return 0


def print_history(model_dir: Path) -> None:
    import csv

    history = model_dir / "history.csv"
    if history.is_file():
        rows = list(csv.DictReader(history.open()))
        last = rows[-1]
        val = f", validation loss {float(last['val_loss']):.4g}" if last.get("val_loss") else ""
        print(f"{len(rows)} epochs ({float(last['seconds']):.1f} s/epoch, {float(last['items_per_second']):.0f} "
              f"items/s); final training loss {float(last['train_loss']):.4g}{val}")


# ---------------------------------------------------------------- parser


def _general_options(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_argument_group("general")
    group.add_argument("-q", "--quiet", action="store_true", default=default(False), help="no progress bars")
    group.add_argument("--threads", type=int, default=default(None), help="torch/faiss CPU threads (default: all)")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False), help="log details")
    group.add_argument("--lock-timeout", type=float, default=default(DEFAULT_LOCK_TIMEOUT), metavar="SECONDS",
                       help="how long to wait while another process writes the same index or model "
                       f"(default {DEFAULT_LOCK_TIMEOUT:g})")


class Subcommands:
    """Wraps `add_subparsers()` so every sub-command also accepts the general options after its
    name (`siamese pretrain DATA ... -q`), without overriding them when given before it."""

    def __init__(self, action):
        self.action = action
        self.common = argparse.ArgumentParser(add_help=False)
        _general_options(self.common, lambda value: argparse.SUPPRESS)

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.action.add_parser(name, parents=[self.common], **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..models.autoencoder import VARIANTS
    from ..training.finetune import DISTANCES, LOSSES, MINERS
    from .verify import add_pseudo_pair_options

    parser = argparse.ArgumentParser(
        prog="siamese", description="Metric learning on unlabeled data: pretrain an autoencoder, fine-tune it as a "
        "Siamese network on a few labelled pairs, search, classify and score items with FAISS.",
        epilog="Exit codes: 0 success, 2 user error (one line on stderr), 1 a bug.")
    parser.add_argument("--version", action="version", version=f"siamese {__version__}")
    _general_options(parser, lambda value: value)
    sub = Subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))

    p = sub.add_parser("demo", help="end to end on the embedded digits: pretrain, fine-tune, index, classify")
    add_output_dir_option(p, "DIR", "demo", required=False, default="siamese-demo",
                          help="folder for the report, plots, model and index (default siamese-demo)")
    p.add_argument("--dataset", default="sklearn:digits", help="any DATA source (default sklearn:digits)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("pretrain", help="pretrain an autoencoder on unlabeled items")
    p.add_argument("data", metavar="DATA")
    add_output_dir_option(p, "MODEL", "model", help="folder for the model (new, or an earlier model)")
    p.add_argument("--variant", choices=VARIANTS, default="denoising")
    p.add_argument("--arch", choices=("auto", "mlp", "conv"), default="auto")
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--widths", type=int, nargs="+", help="MLP hidden sizes or conv channels per stage")
    p.add_argument("--noise", default="mask:0.1", help="denoising corruption: gaussian:STD | mask:P | none")
    p.add_argument("--augment", choices=("on", "off"), help="random shift/rotation of images (default: denoising)")
    p.add_argument("--k", type=int, default=8, help="ksparse: non-zeros kept")
    p.add_argument("--beta", type=float, default=1.0, help="vae: KL weight")
    p.add_argument("--sparsity-weight", type=float, default=1e-3)
    p.add_argument("--contractive-weight", type=float, default=1e-3)
    add_train_options(p, epochs=20, lr=2e-3)
    add_data_options(p)

    p = sub.add_parser("finetune", help="fine-tune as a Siamese network on labelled pairs")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", metavar="PAIRS.csv", help="header a,b,label over item keys")
    source.add_argument("--labels", metavar="LABELS.csv", help="header key,label; or 'items' for DATA's own labels")
    p.add_argument("--labels-per-class", type=int, metavar="N", help="keep N labelled items per class (seeded)")
    add_output_dir_option(p, "MODEL2", "model", help="folder for the fine-tuned model (new, or an earlier model)")
    p.add_argument("--loss", choices=LOSSES, default="contrastive")
    p.add_argument("--distance", choices=DISTANCES, default="cosine")
    p.add_argument("--miner", choices=MINERS, default="none")
    p.add_argument("--pos-margin", type=float, default=0.0)
    p.add_argument("--neg-margin", type=float, default=1.0)
    p.add_argument("--metric-weight", type=float, default=10.0, help="weight of the metric loss")
    p.add_argument("--recon-weight", type=float, default=1.0, help="weight of the reconstruction term")
    add_pseudo_pair_options(p)
    add_train_options(p, epochs=10, lr=1e-3)
    add_data_options(p)

    p = sub.add_parser("evaluate", help="kNN accuracy, precision@1, MAP@R, NMI/ARI of a model's embedding")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA", help="reference items (with labels)")
    p.add_argument("--labels", metavar="LABELS.csv")
    p.add_argument("--query", metavar="DATA2", help="query items (default: leave-one-out on DATA)")
    p.add_argument("--query-labels", metavar="LABELS.csv")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    add_data_options(p)

    from . import codes as cli_codes
    from . import search as cli_search
    from . import verify as cli_verify

    cli_search.register(sub)
    cli_verify.register(sub)
    cli_codes.register(sub)
    return parser


def _one_line_usage_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse's own errors (unknown option, missing argument...) one line too, like ours."""

    def error(message: str, prog: str = parser.prog) -> None:
        print(f"{prog}: error: {' '.join(message.split())} (see {prog} --help)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _one_line_usage_errors(sub)


def main(argv: Sequence[str] | None = None) -> int:
    from index.errors import VectorIndexError

    parser = build_parser()
    _one_line_usage_errors(parser)
    args = parser.parse_args(argv)
    max_threads = 4 * (os.cpu_count() or 1)
    if args.threads is not None and not 1 <= args.threads <= max_threads:
        parser.error(f"--threads must be between 1 and {max_threads} (4x this machine's CPUs), got {args.threads}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    try:
        from index.locking import set_lock_timeout

        set_lock_timeout(args.lock_timeout)
        check_outputs(args)
        name = f"index {args.index_command}" if args.command == "index" else args.command
        if getattr(args, "nproc", None) is not None or "WORLD_SIZE" in os.environ:  # data-parallel training
            from ..training.distributed import run_command

            return run_command(COMMANDS[name], args, sys.argv[1:] if argv is None else list(argv))
        return COMMANDS[name](args)
    except (SiameseError, VectorIndexError) as exc:
        message = " ".join(str(exc).split())
        print(f"siamese: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("siamese: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `siamese index info IDX | head -1`: the reader left, which is fine
        _silence_stdout()
        return 0
    except OSError as exc:  # disk full, read-only or forbidden target...: saves are atomic, old data is intact
        if exc.errno is None:
            raise
        print(f"siamese: error: {environment_error(exc)}", file=sys.stderr)
        return 2


def environment_error(exc: OSError) -> str:
    """One line for an operating-system failure: the path, the cause and what to do."""
    import errno

    path = f"{exc.filename}: " if exc.filename else ""
    cause = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
    advice = {errno.ENOSPC: "free some disk space or write elsewhere; nothing already saved was changed",
              errno.EDQUOT: "free some space in your quota or write elsewhere; nothing already saved was changed",
              errno.EROFS: "choose a path on a writable file system", errno.EACCES: "choose a path you may write",
              errno.EPERM: "choose a path you may write"}.get(exc.errno or 0, "check the path and try again")
    return f"{path}{cause}; {advice}"


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so Python's exit flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # `python -m siamese.cli.main`: run the imported module so commands register once
    from .main import main as _main

    sys.exit(_main())
