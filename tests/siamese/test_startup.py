"""Start-up stays light: `siamese --help`, `--version` and `index info` never import the training
stack (torch, torchvision, matplotlib, scikit-learn), and --help not even faiss; every command's
own `--help` still builds (its defaults are read from the code they drive)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from index import VectorIndex
from siamese.cli.main import build_parser

HEAVY = ("torch", "torchvision", "matplotlib", "sklearn", "pytorch_metric_learning")

PROBE = """
import json, sys
from siamese.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules if "." not in m)}), file=sys.stderr)
"""


def imported_by(*argv: str) -> tuple[int, set[str]]:
    """Exit code and top-level modules imported by `siamese ARGV` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    record = json.loads(done.stderr.strip().splitlines()[-1])
    return record["code"], set(record["modules"])


@pytest.fixture(scope="module")
def saved_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "items.index"
    rng = np.random.default_rng(0)
    VectorIndex.build(rng.random((30, 4), dtype=np.float32), keys=[f"k{i}" for i in range(30)],
                      labels=["a", "b", "c"] * 10).save(path)
    return path


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["index", "--help"]])
def test_help_and_version_import_neither_torch_nor_faiss(argv):
    code, modules = imported_by(*argv)
    assert code == 0
    assert not modules & {*HEAVY, "faiss"}, sorted(modules & {*HEAVY, "faiss"})


@pytest.mark.parametrize("command", [["index", "info", "--json"], ["index", "check"]])
def test_index_info_and_check_are_torch_free(saved_index, command):
    code, modules = imported_by(*command, str(saved_index))
    assert code == 0
    assert "faiss" in modules  # it really opened the index
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def command_paths(parser, prefix=()):
    """Every leaf command of the parser, e.g. ("index", "build")."""
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if action.choices and isinstance(action.choices, dict):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*prefix, name)) if any(
                    a.choices and isinstance(a.choices, dict) for a in sub._actions) else [(*prefix, name)]


def test_every_command_help_builds_and_explains_its_arguments(capsys):
    paths = list(command_paths(build_parser()))
    assert ("index", "info") in paths and ("pretrain",) in paths and len(paths) >= 20
    assert ("index", "remove") in paths
    for path in paths:
        with pytest.raises(SystemExit) as done:
            build_parser(list(path)).parse_args([*path, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "(default: None)" not in text and "(default: False)" not in text, path
        for metavar in ("MODEL", "DATA", "INDEX"):
            lines = [line for line in text.splitlines() if line.strip().startswith(metavar + " ")]
            for line in lines:
                assert len(line.split()) > 1, f"{' '.join(path)}: {metavar} has no description"


def subcommand(parser, name: str):
    return next(a for a in parser._actions if isinstance(a.choices, dict)).choices[name]


def test_only_the_named_command_is_built():
    def has_variant(argv):
        return any(a.dest == "variant" for a in subcommand(build_parser(argv), "pretrain")._actions)

    assert not has_variant(["index", "info", "x"])
    assert has_variant(["pretrain", "--help"]) and has_variant(None)
