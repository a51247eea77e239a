"""`siamese` keeps its rooms: imports point one way (data <- models <- inference <- training, retrieval;
cli and the scikit-learn estimators on top), there are no import cycles (function-level imports
count), plots need no torch, no module reaches into another's private attributes, and no module
outgrows one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import siamese
from tests.import_rules import import_cycles, import_graph, module_names, private_reach_ins

PACKAGE = Path(siamese.__file__).parent
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 8

# room -> rank: a module may import from its own room and from rooms of a lower rank only.
# training and retrieval are peers (neither imports the other), and so are cli and sklearn (the
# scikit-learn estimators, which nothing else imports); the top may import anything.
RANKS = {"errors": 0, "memory": 0, "version": 0, "threads": 1, "data": 1, "models": 2, "inference": 3, "training": 4,
         "retrieval": 4, "plots": 1, "serve": 5, "demo": 8, "cli": 9, "sklearn": 9, "": 10, "__main__": 10}


def room(module: str) -> str:
    return module.split(".")[0]


def layer_violations(package: Path) -> list[str]:
    found = []
    for module, imported in import_graph(package).items():
        for target in sorted(imported):
            here, there = room(module), room(target)
            if here != there and RANKS[there] >= RANKS[here]:
                found.append(f"{module or '__init__'} -> {target} ({here} may not import {there})")
    return found


def test_every_room_has_a_rank() -> None:
    assert {room(m) for m in module_names(PACKAGE)} <= set(RANKS)


def test_imports_point_one_way() -> None:
    found = layer_violations(PACKAGE)
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_no_import_cycles() -> None:
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import cycles in siamese/: " + "; ".join(" -> ".join(c) for c in cycles)


def test_plots_need_only_numpy_and_matplotlib() -> None:
    for name, path in module_names(PACKAGE).items():
        if room(name) != "plots":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("torch", "torchvision", "faiss") for n in names), (name, names)


def test_no_private_attribute_reach_ins() -> None:
    found = private_reach_ins(PACKAGE)
    assert not found, f"{len(found)} private attribute access(es) outside self/cls:\n" + "\n".join(found)


def test_small_modules_and_few_at_the_top() -> None:
    modules = module_names(PACKAGE)
    long = {name: n for name, path in modules.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"
    top = [name for name, path in modules.items() if path.parent == PACKAGE]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    pkg = tmp_path / "siamese"
    for folder in ("data", "models"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "net.py").write_text("from ..data import items\n")
    (pkg / "data" / "items.py").write_text("def f():\n    from ..models import net\n")
    assert layer_violations(pkg) == ["data.items -> models (data may not import models)",
                                     "data.items -> models.net (data may not import models)"]
    assert import_cycles(pkg) == [["data.items", "models.net", "data.items"]]
