"""Import rules shared by the layering tests of both packages, read from the source with `ast`
(nothing runs): the import graph of a package (imports inside functions count; those under
`if TYPE_CHECKING:` do not; importing a subpackage runs its __init__), its cycles, and
private-attribute reach-ins across modules."""

from __future__ import annotations

import ast
from pathlib import Path


def module_names(package: Path) -> dict[str, Path]:
    """Dotted name (relative to the package, "" for its __init__) -> file, for every module."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports there never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(name: str, path: Path, modules: dict[str, Path], package_name: str) -> set[str]:
    """Modules of the package that `name` imports at run time (inside functions too)."""
    package_parts = name.split(".") if name else []
    if path.name != "__init__.py":
        package_parts = package_parts[:-1]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                base += node.module.split(".") if node.module else []
            elif node.module and node.module.split(".")[0] == package_name:
                base = node.module.split(".")[1:]
            else:
                continue
            target = ".".join(base)
            for alias in node.names:
                submodule = f"{target}.{alias.name}" if target else alias.name
                found.add(submodule if submodule in modules else target)  # a module, or a name of `target`
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package_name and ".".join(parts[1:]) in modules:
                    found.add(".".join(parts[1:]))
    # importing a.b.c first runs a/__init__ and a/b/__init__, unless they are packages of `name` itself
    own_packages = {".".join(package_parts[:i]) for i in range(len(package_parts) + 1)}
    for target in list(found):
        parts = target.split(".") if target else []
        found.update(p for p in (".".join(parts[:i]) for i in range(len(parts))) if p in modules and p not in own_packages)
    found.discard(name)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports at run time."""
    modules = module_names(package)
    return {name: imports_of(name, path, modules, package.name) for name, path in modules.items()}


def import_cycles(package: Path) -> list[list[str]]:
    """Each import cycle found, as the list of modules along it."""
    graph = import_graph(package)
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def private_reach_ins(package: Path, allowed: dict[tuple[str, str], str] | None = None) -> list[str]:
    """`<expr>._name` (and getattr/setattr/hasattr with a "_name" string) where <expr> is not
    `self` or `cls`, as "module:line: expression"."""
    found = []
    for name, path in module_names(package).items():
        tree = ast.parse(path.read_text(), filename=str(path))
        module = name or "__init__"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                target, attr = node.value, node.attr
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                target, attr = node.args[0], node.args[1].value
            else:
                continue
            if not attr.startswith("_") or (attr.startswith("__") and attr.endswith("__")):
                continue
            if isinstance(target, ast.Name) and target.id in ("self", "cls"):
                continue
            expression = f"{ast.unparse(target)}.{attr}"
            if (module, expression) in (allowed or {}):
                continue
            found.append(f"{module}:{node.lineno}: {expression}")
    return found
