"""The `siamese` command: parses arguments, calls the Python API, prints results.

Exit codes: 0 success, 2 user error or an environment failure (one line on stderr, no traceback),
1 a bug. Each command module adds its sub-commands with `register(sub)`; each parser names the
function that runs it (`args.func`). `python -m siamese` is the module entry.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import SiameseError
from .options import OneLineParser, Subcommands, add_general_options, check_outputs


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given argv, only the commands it names get their arguments (see Subcommands)."""
    from ..version import __version__
    from . import codes, index_commands, search, serve, training, verify

    parser = OneLineParser(
        prog="siamese", description="Metric learning on unlabeled data: pretrain an autoencoder, fine-tune it as a "
        "Siamese network on a few labelled pairs, search, classify and score items with FAISS.",
        epilog="Exit codes: 0 success, 2 user error (one line on stderr), 1 a bug.")
    parser.add_argument("--version", action="version", version=f"siamese {__version__}")
    add_general_options(parser, lambda value: value)
    wanted = None if argv is None else frozenset(argv)
    sub = Subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), wanted)
    for module in (training, index_commands, search, verify, codes, serve):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from index.errors import VectorIndexError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    max_threads = 4 * (os.cpu_count() or 1)
    if args.threads is not None and not 1 <= args.threads <= max_threads:
        parser.error(f"--threads must be between 1 and {max_threads} (4x this machine's CPUs), got {args.threads}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,  # notes read as the CLI's own
                        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "siamese: %(message)s")
    try:
        relaunching = (getattr(args, "nproc", None) or 1) > 1 and "WORLD_SIZE" not in os.environ
        args.threads_used = None if relaunching else use_threads(args.threads)  # workers choose their own share
        from index.locking import set_lock_timeout

        set_lock_timeout(args.lock_timeout)
        check_outputs(args)
        if getattr(args, "nproc", None) is not None or "WORLD_SIZE" in os.environ:  # data-parallel training
            from ..training.distributed import run_command
            from .options import train_config

            train_config(args)  # bad training flags fail here once, not in every worker
            return run_command(args.func, args, argv)
        return args.func(args)
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


def use_threads(requested: int | None):
    """The torch/faiss thread count for this command (siamese.threads.choose_threads), applied now if
    they are loaded, else through OMP_NUM_THREADS, which both read when a command first imports them
    (so torch-free commands stay torch-free)."""
    from ..threads import apply_threads, choose_threads

    choice = choose_threads(requested)
    if "torch" in sys.modules or "faiss" in sys.modules:
        apply_threads(choice)
    else:
        os.environ["OMP_NUM_THREADS"] = str(choice.count)
    logging.getLogger(__name__).info("using %s", choice.reason)
    return choice


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
