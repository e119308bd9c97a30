"""Imports flow one way: models ← resolvers ← {schema, compat_rest} ← server (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = {"models", "resolvers", "schema", "compat_rest", "compat_ws", "middleware", "server"}
WEB = {"strawberry", "fastapi", "starlette", "uvicorn"}
FORBIDDEN = {
    "models": APP - {"models"} | WEB,
    "resolvers": APP - {"models", "resolvers"} | WEB,
    "schema": {"compat_rest", "compat_ws", "middleware", "server"},
    "compat_rest": {"schema", "server"},
    "compat_ws": {"schema", "server"},
}


def imported_roots(path: Path) -> set[str]:
    """Top-level names a module imports (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).parent.parts
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                roots.add(base[0] if base else (node.module or "").split(".")[0])
            elif node.module:
                roots.add(node.module.split(".")[0])
    return roots


def layered_files() -> list[Path]:
    files = [p for d in ("models", "resolvers", "schema") for p in (ROOT / d).rglob("*.py")]
    return sorted(files + [p for p in (ROOT / "compat_rest.py", ROOT / "compat_ws.py",
                                       ROOT / "server.py") if p.exists()])


@pytest.mark.parametrize("path", layered_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path: Path) -> None:
    layer = path.relative_to(ROOT).parts[0].removesuffix(".py")
    wrong = imported_roots(path) & FORBIDDEN.get(layer, set())
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}) must not import {sorted(wrong)}"


def test_the_walk_sees_the_layers() -> None:
    names = {p.relative_to(ROOT).parts[0] for p in layered_files()}
    assert {"models", "resolvers", "schema", "compat_rest.py", "server.py"} <= names
    assert "fastapi" in imported_roots(ROOT / "compat_rest.py")
    assert "resolvers" in imported_roots(ROOT / "schema" / "context.py")
