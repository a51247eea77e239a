"""`index` stays layered: no import cycles between its modules, no module reaches into the private
attributes of an object defined elsewhere (`VectorIndex` owns its state, each backend its faiss
structure), and no module outgrows one sitting. Read from the source with `ast`, nothing runs."""

from __future__ import annotations

from pathlib import Path

import index
from tests.import_rules import import_cycles, module_names, private_reach_ins

PACKAGE = Path(index.__file__).parent
MAX_LINES = 400  # a module a newcomer reads in one sitting

# `<expr>._name` is allowed on `self` and `cls` only, and here: (module, expression) -> why (none needed so far).
ALLOWED_REACH_INS: dict[tuple[str, str], str] = {}


def test_no_import_cycles() -> None:
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import cycles in index/: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_attribute_reach_ins() -> None:
    found = private_reach_ins(PACKAGE, ALLOWED_REACH_INS)
    assert not found, f"{len(found)} private attribute access(es) outside self/cls:\n" + "\n".join(found)


def test_no_module_over_400_lines() -> None:
    long = {name or "__init__": n for name, path in module_names(PACKAGE).items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


def test_allow_list_entries_have_reasons() -> None:
    assert all(reason.strip() for reason in ALLOWED_REACH_INS.values())


def test_rules_catch_what_they_should(tmp_path: Path) -> None:
    """The checks themselves: a cycle through a function-level import and a reach-in are found;
    TYPE_CHECKING imports and self/cls access are not."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n"
                              "def f():\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("from . import a\nclass B:\n    def m(self, other):\n"
                              "        return self._x, other._y, getattr(other, '_z')\n")
    (pkg / "c.py").write_text("from .a import f\n")
    assert import_cycles(pkg) == [["a", "b", "a"]]
    assert private_reach_ins(pkg) == ["b:4: other._y", "b:4: other._z"]
