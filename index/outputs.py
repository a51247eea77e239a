"""Which paths a save may replace: only its own earlier output of the same kind.

`--out` is user input. A save swaps a whole directory into place, so without this check
`siamese pretrain DATA --out ~/thesis` would replace the user's folder by a model. Every output
directory gets a small marker file naming its kind; an existing directory is replaced only when it
is empty, carries the marker of the same kind (or, for outputs written before markers, that kind's
own main file), or the caller passes `overwrite=True` (`--overwrite`). The current directory, its
ancestors, the home directory and `/` are never replaced.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import VectorIndexError
from .safe_json import read_json

MARKER = ".siamese-output.json"
OUTPUT_KINDS = ("model", "index", "bundle", "reconstructions", "demo", "checkpoint")

# main file of each kind as written before markers existed, and the JSON field that proves it is ours
_LEGACY_SIGNATURES = {
    "index": ("manifest.json", "format", "siamese-index"),
    "bundle": ("bundle.json", "format", "siamese-bundle"),
    "model": ("config.json", "fingerprint", None),
    "checkpoint": ("state.json", "epoch", None),
}


class OutputRefused(VectorIndexError):
    """The output path exists and is not ours to replace (or cannot be written at all)."""


def marker_text(kind: str) -> str:
    """Contents of the marker file that claims a directory as an output of `kind`."""
    _check_kind(kind)
    return json.dumps({"written_by": "siamese", "kind": kind}) + "\n"


def write_marker(directory: Path, kind: str) -> None:
    (Path(directory) / MARKER).write_text(marker_text(kind), encoding="utf-8")


def output_kind(directory: Path) -> str | None:
    """The kind of siamese output `directory` is, or None when it is not one of ours."""
    directory = Path(directory)
    marker = _read_object(directory / MARKER)
    if marker is not None or (directory / MARKER).exists():
        ours = marker is not None and marker.get("written_by") == "siamese" and marker.get("kind") in OUTPUT_KINDS
        return marker["kind"] if ours else None
    for kind, (name, field, value) in _LEGACY_SIGNATURES.items():
        data = _read_object(directory / name)
        if data is not None and field in data and (value is None or data[field] == value):
            return kind
    return None


def _read_object(path: Path) -> dict | None:
    """The JSON object in `path` (bounded like every JSON file we read), or None if there is none."""
    try:
        return read_json(path, str(path), "")
    except (FileNotFoundError, VectorIndexError):
        return None


def _check_kind(kind: str) -> None:
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")  # a programming error, not user input


def _protected(path: Path) -> str | None:
    """Why `path` may never be replaced (it holds the user's world), or None."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        return "the root directory"
    if resolved == Path.home().resolve():
        return "your home directory"
    cwd = Path.cwd().resolve()
    if resolved == cwd:
        return "the current directory"
    if resolved in cwd.parents:
        return "a parent of the current directory"
    return None


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_parent(path: Path) -> None:
    """Refuse early (before hours of training) when nothing can be created beside `path`."""
    parent = _nearest_existing(Path(path).absolute().parent)
    if not parent.is_dir():
        raise OutputRefused(f"cannot write {path}: {parent} is a file, not a folder; choose another --out path")
    try:
        probe = tempfile.mkdtemp(prefix=".siamese-write-probe-", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputRefused(f"cannot write in {parent}: {exc.strerror or exc}; choose a writable --out path") from None


def check_output_directory(path: str | os.PathLike, kind: str, *, overwrite: bool = False) -> Path:
    """Refuse (OutputRefused, one line) unless a `kind` output may be written at `path`.

    Allowed: a new path in a writable folder, an empty directory, or an earlier output of the same
    kind; with `overwrite`, any other directory except the protected ones (cwd, its parents, home,
    /). A file is never replaced by a directory.
    """
    _check_kind(kind)
    path = Path(path)
    why = _protected(path)
    if why:
        raise OutputRefused(f"--out {path} is {why}; give a new folder path for the {kind} (it is replaced as a whole)")
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputRefused(f"--out {path} is a file, not a folder; give a new folder path for the {kind}")
    check_writable_parent(path)
    if not path.exists():
        return path
    try:
        entries = sorted(entry.name for entry in path.iterdir())
    except OSError as exc:
        raise OutputRefused(f"cannot read {path}: {exc.strerror or exc}; choose another --out path") from None
    if not entries:
        return path
    found = output_kind(path)
    if found == kind or overwrite:
        return path
    what = f"a siamese {found} output" if found else f"not a siamese {kind} output (it holds {_preview(entries)})"
    raise OutputRefused(
        f"--out {path} already exists and is {what}; choose a new --out path, "
        f"or pass --overwrite to replace that folder and everything in it"
    )


def claim_output_directory(path: str | os.PathLike, kind: str, *, overwrite: bool = False) -> Path:
    """Check `path` as `check_output_directory` does, create it and mark it as a `kind` output, for
    commands that fill a folder step by step (training checkpoints, the demo) rather than swap it in."""
    path = check_output_directory(path, kind, overwrite=overwrite)
    path.mkdir(parents=True, exist_ok=True)
    if output_kind(path) != kind:
        write_marker(path, kind)
    return path


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...]) -> Path:
    """Refuse to replace a folder, a protected path or a file of another type with an output file."""
    path = Path(path)
    if path.is_dir():
        raise OutputRefused(f"{path} is a folder; give a file path ending in {' or '.join(suffixes)}")
    if path.exists() and path.suffix.lower() not in suffixes:
        raise OutputRefused(
            f"{path} exists and is not a {' or '.join(suffixes)} file; give a new path ending in {' or '.join(suffixes)}"
        )
    check_writable_parent(path)
    return path


def _preview(names: list[str], at_most: int = 3) -> str:
    shown = ", ".join(names[:at_most])
    more = f" and {len(names) - at_most} more" if len(names) > at_most else ""
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}: {shown}{more}"
