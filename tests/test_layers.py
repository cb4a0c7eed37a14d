"""The packages import downward only, and no two modules import each other.

    scenecap.cli                        the command line
            │
    api ────┼──── worker                api may use worker.submit (sending work) and no more
            │     migrations            the schema's history, and applying it
           db     scenecap.store        the media store (a folder, or S3)
            │
            │     scenecap.client       the Python client: httpx, pydantic and the two below
    scenecap.schemas                    the wire models (requests, responses, the error body)
    scenecap.core                       settings, errors, URL safety, media, signing, logs

Every import counts, those inside functions included: a cycle hidden in a function is still
two modules that cannot be understood apart (docs/architecture.md, "Package layers").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scenecap", "db", "worker", "api", "migrations")

# What each layer may import (besides itself and third-party packages).
ALLOWED = {
    "core": {"core"},
    "schemas": {"core"},
    "store": {"core"},
    "db": {"core"},
    "migrations": {"core", "store", "db"},
    "worker": {"core", "store", "db"},
    "api": {"core", "schemas", "store", "db", "worker.submit"},
    "client": {"core", "schemas"},
    "cli": {"core", "schemas", "store", "db", "migrations", "worker", "api", "client"},
}


def layer(module: str) -> str:
    if module.startswith(("scenecap.core", "scenecap.__init__")) or module == "scenecap":
        return "core"
    if module.startswith("scenecap.store"):
        return "store"
    if module.startswith("scenecap.schemas"):
        return "schemas"
    if module.startswith("scenecap.cli"):
        return "cli"
    if module.startswith("scenecap.client"):
        return "client"
    return module.split(".")[0]


def our_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The modules of ours a file imports, wherever in the file the import is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            # `from db import jobs` imports db.jobs; `from db.jobs import x` imports db.jobs.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


MODULES = our_modules()
GRAPH = {name: imports_of(path, set(MODULES)) - {name} for name, path in MODULES.items()}


def allowed(importer: str, imported: str) -> bool:
    mine, theirs = layer(importer), layer(imported)
    if mine == theirs:
        return True
    for rule in ALLOWED[mine]:
        if "." in rule:  # one module (and anything inside it), not its whole layer
            if imported == rule or imported.startswith(rule + "."):
                return True
        elif theirs == rule:
            return True
    return False


@pytest.mark.parametrize("importer", sorted(MODULES))
def test_a_module_imports_only_from_its_own_layer_or_below(importer: str) -> None:
    upward = sorted(m for m in GRAPH[importer] if not allowed(importer, m))
    assert not upward, f"{importer} ({layer(importer)}) imports {upward}"


def test_no_modules_import_each_other() -> None:
    """Tarjan's strongly connected components: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, f"modules that import each other: {cycles}"


# The worker's modes, each a package of its own over the shared job core (worker/job), and
# what only the dispatcher (worker.run), the tasks and the CLI may bring together.
MODES = ("worker.frames", "worker.segments", "worker.completion")
CORE = ("worker.job", "worker.pipeline", "worker.vision", "worker.speech", "worker.maintenance")


def part(module: str, parts: tuple[str, ...]) -> str | None:
    return next((p for p in parts if module == p or module.startswith(p + ".")), None)


@pytest.mark.parametrize("importer", sorted(m for m in MODULES if part(m, MODES)))
def test_a_worker_mode_imports_no_other_mode(importer: str) -> None:
    mine = part(importer, MODES)
    others = sorted(m for m in GRAPH[importer] if part(m, MODES) not in (None, mine))
    assert not others, f"{importer} imports another mode: {others}"


@pytest.mark.parametrize("importer", sorted(m for m in MODULES if part(m, CORE)))
def test_the_job_core_imports_no_mode(importer: str) -> None:
    upward = sorted(m for m in GRAPH[importer] if part(m, MODES) or m == "worker.run")
    assert not upward, f"{importer} (the worker's core) imports {upward}"
