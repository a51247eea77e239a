"""`siamese serve INDEX MODEL`: the JSON API and the web page (siamese.serve) on uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from ..errors import SiameseError
from .options import add_index_argument, add_model_argument, default_of


def register(sub) -> None:
    sub.add_parser("serve", cmd_serve, serve_arguments,
                   help="a JSON API and a web page to search, browse the latent map and label pairs")


def serve_arguments(p: argparse.ArgumentParser) -> None:
    from ..serve.config import MAP_METHODS, TOKEN_ENVIRONMENT, ServeConfig

    add_index_argument(p)
    add_model_argument(p, help="the model that built INDEX (siamese pretrain or finetune)")
    p.add_argument("--host", default=default_of(ServeConfig, "host"),
                   help="address to listen on; anything but 127.0.0.1/localhost lets other machines in")
    p.add_argument("--port", type=int, default=default_of(ServeConfig, "port"), help="0 picks a free port")
    p.add_argument("--pairs-out", metavar="PAIRS.csv",
                   help="record the page's same/different labels here (appended; the format siamese finetune "
                   "--pairs reads); without it the server is read-only")
    p.add_argument("--token", help=f"require `Authorization: Bearer TOKEN` on the API (or set {TOKEN_ENVIRONMENT}, "
                   "which other users cannot see in the process list)")
    p.add_argument("--untrusted", action="store_true", help="INDEX comes from elsewhere: load it with the full checks")
    p.add_argument("--max-upload-mb", type=float, default=default_of(ServeConfig, "max_upload_mb"), metavar="MB",
                   help="largest request body (an uploaded image)")
    p.add_argument("--map-size", type=int, default=default_of(ServeConfig, "map_size"), metavar="N",
                   help="most items on the page's 2-D map (a seeded sample of bigger indexes)")
    p.add_argument("--map", dest="map_method", choices=MAP_METHODS, default=default_of(ServeConfig, "map_method"),
                   help="how the map is projected: t-SNE (clusters; seconds at start-up) or PCA (instant)")
    p.add_argument("--seed", type=int, default=default_of(ServeConfig, "seed"), help="seed of the map's sample")


def _config(args: argparse.Namespace):
    from ..serve.config import MAX_MAP_SIZE, TOKEN_ENVIRONMENT, ServeConfig

    if not 0 <= args.port <= 65535:
        raise SiameseError(f"--port must be between 0 and 65535, got {args.port}")
    if not 0 < args.max_upload_mb <= 1024:
        raise SiameseError(f"--max-upload-mb must be above 0 and at most 1024, got {args.max_upload_mb:g}")
    if not 1 <= args.map_size <= MAX_MAP_SIZE:
        raise SiameseError(f"--map-size must be between 1 and {MAX_MAP_SIZE:,} (a map of more points is no "
                           f"easier to read), got {args.map_size}")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENVIRONMENT) or None
    where = "--token" if args.token is not None else TOKEN_ENVIRONMENT
    if token is not None and not (0 < len(token) <= 4096 and all(33 <= ord(c) <= 126 for c in token)):
        raise SiameseError(f"{where} must be 1 to 4096 visible ASCII characters (letters, digits, punctuation; no "
                           "spaces): what a browser can send in a header")
    if args.pairs_out is not None and not args.pairs_out.strip():
        raise SiameseError("--pairs-out is empty; give a file such as pairs.csv, or leave the flag out (read-only)")
    return ServeConfig(host=args.host, port=args.port, pairs_out=Path(args.pairs_out) if args.pairs_out else None,
                       token=token, untrusted=args.untrusted, max_upload_mb=args.max_upload_mb,
                       map_size=args.map_size, map_method=args.map_method, seed=args.seed)


def _paths(index: str, model: str) -> tuple[str, str]:
    """INDEX and MODEL as given, or swapped (with a note) when they were given the other way round."""
    from index.storage import MANIFEST

    from ..models.saving import WEIGHTS_FILE

    if (Path(index) / WEIGHTS_FILE).is_file() and (Path(model) / MANIFEST).is_file():
        logging.getLogger(__name__).warning("INDEX and MODEL were given the other way round; using %s as the index "
                                            "and %s as the model", model, index)
        return model, index
    return index, model


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line error when the address is taken or cannot be used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SiameseError(f"--host {host}: {exc.strerror}; give an address such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        advice = "choose another with --port (0 picks a free one)" if port else "check --host"
        raise SiameseError(f"cannot listen on {host}:{port}: {exc.strerror}; {advice}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..serve.app import create_app
    from ..serve.config import is_loopback
    from ..serve.pairs_log import PairsLog
    from ..serve.service import Service

    config = _config(args)
    index_path, model_path = _paths(args.index, args.model)
    say = print if not args.quiet else (lambda *a, **k: None)
    if config.pairs_out is not None:
        PairsLog(config.pairs_out)  # a --pairs-out that is not a pairs file is refused before the slow part
    sock = bind(config.host, config.port)
    if not is_loopback(config.host):
        logging.getLogger(__name__).warning(
            "listening on %s: anyone who can reach this port can query the index and see its items%s", config.host,
            "" if config.token else "; set --token to require a password")
    say(f"loading model {model_path} and index {index_path}, drawing the map, choosing pairs to label...",
        flush=True)
    service = Service.load(index_path, model_path, config)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    info = service.info()
    say(f"serving {info['count']} items ({info['labelled']} labelled, "
        f"{'calibrated' if service.calibration else 'not calibrated'}) at http://{shown}:{port}/  "
        f"API: http://{shown}:{port}/docs", flush=True)
    if service.images.problem:
        say(f"note: {service.images.problem}", flush=True)
    say(f"labels go to {config.pairs_out}" if config.pairs_out else "read-only (--pairs-out PAIRS.csv records labels)",
        flush=True)
    say("Ctrl-C stops", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down cleanly, then passed Ctrl-C on: the way to stop it
        pass
    say("stopped", flush=True)
    return 0
