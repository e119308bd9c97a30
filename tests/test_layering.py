"""Imports flow one way (STYLE.md), and nowhere in a circle.

    models ← resolvers ← {schema, compat_rest, compat_ws} ← server
    inside resolvers/: kit/ (leaves) and llm/ (providers) never import an operation

Every import counts, wherever it is written: a function-level or TYPE_CHECKING import that
dodges a cycle is still a cycle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# REST-side faces (each a router of the documented HTTP API) and the admin command line.
FACES = ("compat_rest", "compat_identity", "compat_keys", "compat_openai", "compat_branches",
         "compat_transfer", "compat_organize", "compat_tools", "compat_files", "compat_ws",
         "cli_admin")
# Entry points sit above server (main aliases it; chat_studio_cli runs it): nothing imports them.
ENTRY = ("server", "main", "chat_studio_cli")
TOP_MODULES = (*FACES, *ENTRY, "middleware", "explorers")
PACKAGES = ("models", "resolvers", "schema")
APP = set(PACKAGES) | set(TOP_MODULES)
WEB = {"strawberry", "fastapi", "starlette", "uvicorn"}
FORBIDDEN = {
    "models": APP - {"models"} | WEB,
    "resolvers": APP - {"models", "resolvers"} | WEB,
    "schema": {*FACES, *ENTRY, "middleware", "explorers"},
    # Faces never import GraphQL, the assembly or each other — except that the REST-side
    # faces build on compat_rest's dependencies (services, caller, session).
    **{face: {"schema", *ENTRY, *(set(FACES) - {face, "compat_rest"})} for face in FACES},
    "compat_rest": {"schema", *ENTRY, *(set(FACES) - {"compat_rest"})},
    # The command line is a face too: operations only, no web framework.
    "cli_admin": {"schema", *ENTRY, *(set(FACES) - {"cli_admin"}), "middleware"} | WEB,
    "explorers": {*ENTRY},
    "server": {"main", "chat_studio_cli"},
}
# resolvers/ sub-packages that are leaves: they may import each other's modules (llm → kit),
# never an operation.
LEAVES = ("resolvers.kit", "resolvers.llm")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def app_modules() -> dict[str, Path]:
    files = [p for d in PACKAGES for p in (ROOT / d).rglob("*.py")]
    files += [ROOT / f"{name}.py" for name in TOP_MODULES if (ROOT / f"{name}.py").exists()]
    return {module_name(p): p for p in sorted(files)}


def imported(path: Path) -> set[str]:
    """Every module name a file imports, anywhere in it (relative imports resolved).
    `from a.b import c` names `a.b.c` when that is a module of ours, else `a.b`."""
    modules = app_modules()
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in modules else source)
    return found


def layer_of(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("module", sorted(app_modules()), ids=str)
def test_imports_flow_one_way(module: str) -> None:
    roots = {name.split(".")[0] for name in imported(app_modules()[module])}
    wrong = roots & FORBIDDEN.get(layer_of(module), set())
    assert not wrong, f"{module} must not import {sorted(wrong)}"


@pytest.mark.parametrize("module", [m for m in sorted(app_modules())
                                    if m.startswith(LEAVES)], ids=str)
def test_kit_and_llm_never_import_an_operation(module: str) -> None:
    operations = {name for name in imported(app_modules()[module])
                  if name.startswith("resolvers") and not name.startswith(LEAVES)}
    assert not operations, f"{module} is a leaf and must not import {sorted(operations)}"
    if module.startswith("resolvers.kit"):
        providers = {n for n in imported(app_modules()[module]) if n.startswith("resolvers.llm")}
        assert not providers, f"{module} (kit) must not import providers {sorted(providers)}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None (iterative DFS, three colours)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop()
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


def import_graph() -> dict[str, set[str]]:
    modules = app_modules()
    return {name: {m for m in imported(path) if m in modules and m != name}
            for name, path in modules.items()}


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_walk_sees_the_layers() -> None:
    modules = app_modules()
    assert {"models", "resolvers", "resolvers.kit.settings", "resolvers.kit.broker.redis",
            "resolvers.chat", "resolvers.llm.base", "schema", "compat_rest", "server"} <= set(
        modules)
    assert "fastapi" in imported(modules["compat_rest"])
    assert "resolvers.keys" in imported(modules["schema.context"])
    # `from resolvers.kit import errors` names the module, not the package.
    assert "resolvers.kit.errors" in imported(modules["resolvers.kit.db"])
