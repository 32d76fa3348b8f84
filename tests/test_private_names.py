"""A module's private names (``_name``) stay inside it: other modules use public names."""

from __future__ import annotations

import ast
from pathlib import Path

import shoptransfer

PACKAGE = Path(shoptransfer.__file__).parent


def private_definitions(tree: ast.Module) -> set[str]:
    """Private functions, classes, methods and attributes (``self._x = ...``) of a module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_no_module_uses_another_modules_private_names() -> None:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in PACKAGE.rglob("*.py")}
    defined = {path: private_definitions(tree) for path, tree in trees.items()}
    ours = set().union(*defined.values())
    uses = []
    for path, tree in trees.items():
        where = path.relative_to(PACKAGE)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shoptransfer"):
                uses += [
                    f"{where}:{node.lineno} imports {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
            elif (
                isinstance(node, ast.Attribute)
                and node.attr in ours - defined[path]
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                uses.append(f"{where}:{node.lineno} reads .{node.attr} of another module")
    assert not uses, "\n".join(uses)
