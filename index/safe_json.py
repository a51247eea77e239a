"""Bounded JSON reading for files this project saved and reads back (manifests, configs, states).

A checksum only proves that bytes are the listed ones, so every such file is untrusted input:
its size is bounded before it is read and its nesting before it is parsed (Python's parser
recurses once per level, so a 200k-deep array would raise RecursionError), and the top level
must be an object. Every problem is one line naming the file and saying what to do.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

import numpy as np

from .errors import VectorIndexError

MAX_JSON_BYTES = 16 << 20  # largest JSON file read back (honest manifests and configs are a few KiB)
MAX_JSON_DEPTH = 100  # deepest nesting of arrays/objects (honest files nest about 5 levels)

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # one JSON string literal, linear time
_STEP = np.zeros(256, np.int64)  # +1 per opening bracket, -1 per closing one, 0 for any other byte
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting of JSON text, counted outside string literals (no recursion)."""
    bare = np.frombuffer(_STRING.sub("", text).encode("utf-8", "surrogatepass"), np.uint8)
    return int(np.cumsum(_STEP[bare]).max(initial=0))


def check_depth(text: str, what: str, remedy: str, *, max_depth: int = MAX_JSON_DEPTH,
                error: type[Exception] = VectorIndexError) -> None:
    """Refuse JSON text nested deeper than max_depth (counting brackets is enough for most texts)."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = nesting_depth(text)
    if depth > max_depth:
        raise error(f"{what} nests {depth} levels deep (at most {max_depth} are read); {remedy}")


def loads(text: str, what: str, remedy: str, *, max_depth: int = MAX_JSON_DEPTH,
          error: type[Exception] = VectorIndexError) -> Any:
    """json.loads of text whose nesting was checked first; `error` naming `what` on any problem."""
    check_depth(text, what, remedy, max_depth=max_depth, error=error)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise error(f"{what} is not valid JSON ({reason}); {remedy}") from None


def read_json(path: str | os.PathLike, display_name: str, remedy: str, *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH, error: type[Exception] = VectorIndexError) -> dict[str, Any]:
    """The JSON object in the regular file `path`, size and nesting bounded before parsing.

    A missing file raises FileNotFoundError (callers word that case themselves); anything else
    wrong (not a regular file, unreadable, too large, too deep, not UTF-8, not JSON, not an
    object) raises `error` naming `display_name` and ending with `remedy`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO planted at `path` must not block us
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{display_name} cannot be read ({exc.strerror or exc}); {remedy}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{display_name} is not a regular file; {remedy}")
        if info.st_size > max_bytes:
            raise error(f"{display_name} has {info.st_size} bytes, more than the {max_bytes} read; {remedy}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(min(info.st_size, max_bytes) + 1)  # (+1: it may have grown since fstat)
    except OSError as exc:
        raise error(f"{display_name} cannot be read ({exc.strerror or exc}); {remedy}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{display_name} has more than the {max_bytes} bytes read; {remedy}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{display_name} is not UTF-8 text; {remedy}") from None
    value = loads(text, display_name, remedy, max_depth=max_depth, error=error)
    if not isinstance(value, dict):
        raise error(f"{display_name} must hold a JSON object, got {type(value).__name__}; {remedy}")
    return value


def dumps(value: Any, what: str, remedy: str, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH,
          error: type[Exception] = VectorIndexError, **options: Any) -> str:
    """json.dumps for a file that `read_json` must read back: refuses what the reader would."""
    try:
        text = json.dumps(value, **options)
    except (TypeError, ValueError, RecursionError) as exc:
        raise error(f"{what} cannot be saved as JSON ({str(exc)[:120]}); {remedy}") from None
    check_depth(text, what, remedy, max_depth=max_depth, error=error)
    if len(text.encode("utf-8")) > max_bytes:
        raise error(f"{what} is larger than the {max_bytes} bytes that are read back; {remedy}")
    return text
