"""The layout holds: every import runs from a higher stage to a lower one, no module imports itself back in a
circle, and no analysis imports another (what two share lives in `auditor.kit`)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import auditor

PACKAGE = Path(auditor.__file__).parent

# Lowest first: a module may import from its own stage and the ones before it, never from a later one.
STAGES = [
    {"schema", "errors", "paths", "progress", "config"},
    {"subject"},
    {"walk"},
    {"engine"},
    {"kit"},
    {"analyses"},
    {"synthesis"},
    {"policy"},
    {"report"},
    {"pipeline"},
    {"demo"},
    {"cli", "__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (at run time or for type checking alike)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], *filter(None, [base])])
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
                    break
    return edges


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package's own __init__: the public API re-exports every stage
    for index, names in enumerate(STAGES):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module} belongs to no stage: add its folder to STAGES in tests/test_layout.py")


def test_every_import_runs_down_the_stages() -> None:
    edges = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs
                    if (sa := _stage(a)) is not None and (sb := _stage(b)) is not None and sb > sa)
    assert upward == []


def test_no_import_circle() -> None:
    edges = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in list(_modules()):
        if module not in index:
            visit(module)
    assert circles == []


def test_no_analysis_imports_another() -> None:
    edges = _imports(_modules())

    def analysis_of(module: str) -> str | None:
        parts = module.split(".")
        return parts[2] if len(parts) > 2 and parts[1] == "analyses" else None

    crossing = sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs
                      if analysis_of(a) and analysis_of(b) and analysis_of(a) != analysis_of(b))
    assert crossing == []


def test_analyses_build_findings_only_from_their_declarations() -> None:
    """`Finding(...)` is built by `Findings.finding` (which refuses an undeclared id), never in an analysis."""
    direct = sorted(f"{name}:{node.lineno}" for name, path in _modules().items() if name.startswith("auditor.analyses")
                    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Finding")
    assert direct == []
