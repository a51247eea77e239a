"""Benchmark scripts (benchmarks/*.py are scripts, not a package) imported as modules for their tests."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def script_module(path: Path, name: str) -> Iterator:
    """The script at `path` imported as module `name` (registered in sys.modules while in use, so its
    dataclasses resolve their own module)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
