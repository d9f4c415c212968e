"""The layout's own rules, checked on the source: no module reaches into another's private names, and
modules stay small enough to read (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "somna"
MAX_LINES = 400
# Modules allowed past MAX_LINES, each with the reason a reader would ask for.
LONGER = {
    "capture.py": "transcript formats of four harnesses and the redaction of each line",
    "store.py": "the facade: every public operation of a store, each a short delegation or a short path",
}


def modules() -> dict[str, ast.Module]:
    return {
        p.relative_to(SRC).as_posix(): ast.parse(p.read_text(encoding="utf-8")) for p in SRC.rglob("*.py")
    }


def private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, methods, module and instance attributes."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
    return {n for n in out if n.startswith("_") and not n.startswith("__")}


def test_no_module_uses_a_private_name_of_another() -> None:
    trees = modules()
    defined = {name: private_names(tree) for name, tree in trees.items()}
    offences = []
    for name, tree in trees.items():
        others = set().union(*(d for n, d in defined.items() if n != name)) - defined[name]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("somna"):
                offences += [
                    f"{name}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
            elif (
                isinstance(node, ast.Attribute)
                and node.attr in others
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offences.append(f"{name}:{node.lineno}: .{node.attr}")
    assert offences == []


def test_modules_stay_small_or_say_why() -> None:
    long = {
        p.relative_to(SRC).as_posix(): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert set(long) <= set(LONGER), {k: v for k, v in long.items() if k not in LONGER}
