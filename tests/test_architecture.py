"""The architecture of docs/architecture.md, read from the code: which package may import which, no import cycle in
either distribution, public surfaces between packages, imports inside functions only where laziness is the point,
``os.environ`` read only by the configuration modules, and no folder holding more than ~15 modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT

SOURCES = {"otel_wandb": ROOT / "exporters" / "src" / "otel_wandb", "app": ROOT / "app"}
STDLIB_ONLY = ("otel_wandb.config", "otel_wandb.records", "otel_wandb.pricing", "otel_wandb.core")
# package -> the otel_wandb packages and modules it may import (besides itself); docs/architecture.md draws it
EXPORTER_LAYERS = {
    "otel_wandb.config": set(),
    "otel_wandb.records": set(),
    "otel_wandb.pricing": {"otel_wandb.config"},
    "otel_wandb.core": {"otel_wandb.records", "otel_wandb.pricing", "otel_wandb.config"},
    "otel_wandb.runfile": set(),
    "otel_wandb.sink": {"otel_wandb.config", "otel_wandb.runfile"},
    "otel_wandb.pipeline": {
        "otel_wandb.core",
        "otel_wandb.records",
        "otel_wandb.pricing",
        "otel_wandb.config",
        "otel_wandb.sink",
        "otel_wandb.alerts",
        "otel_wandb.report",  # lazily: the opt-in live dashboard of one process
    },
    "otel_wandb.sdk": {"otel_wandb.pipeline", "otel_wandb.core", "otel_wandb.records", "otel_wandb.config"},
    "otel_wandb.alerts": {"otel_wandb.core", "otel_wandb.records", "otel_wandb.config"},
    "otel_wandb.logfiles": {"otel_wandb.config"},
    "otel_wandb.report": {"otel_wandb.runfile", "otel_wandb.logfiles", "otel_wandb.core", "otel_wandb.config"},
    "otel_wandb.bridge": {
        "otel_wandb.pipeline",
        "otel_wandb.core",
        "otel_wandb.records",
        "otel_wandb.config",
        "otel_wandb.report",
    },
}
# the configuration layers; the telemetry package writes the SDK's defaults (that is how the SDK is configured)
ENV_READERS = {"otel_wandb.config", "app.config"}
ENV_WRITERS = {"app.telemetry.defaults", "app.telemetry.distro", "app.telemetry._setup"}
MAX_MODULES_PER_FOLDER = 15


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # absolute name of what is imported (a module, or a name inside one)
    line: int
    in_function: bool
    commented: bool  # the line carries a comment (a lazy import must say why)


def modules() -> dict[str, Path]:
    found = {}
    for top, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [top, *rel.parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path) -> Iterator[Import]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    type_checking = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for n in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            if target.split(".")[0] in SOURCES:
                yield Import(name, target, node.lineno, id(node) in inside, "#" in lines[node.lineno - 1])


MODULES = modules()
IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


def resolve(target: str) -> str:
    """The module a target names: itself if it is a module, else the module it is a name in."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def owner(module: str) -> str:
    """The package (or module) of otel_wandb a module belongs to: otel_wandb.core._stats -> otel_wandb.core."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_in_either_distribution():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if not imp.in_function:
            target = resolve(imp.target)
            if target and target != imp.module:
                graph[imp.module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    # a package __init__ and the private modules it re-exports form no cycle unless a module imports its own
    # package's surface back: that is what this catches
    assert cycles == []


def test_the_exporter_layers_and_its_independence_from_the_service():
    bad = []
    for imp in IMPORTS:
        if not imp.module.startswith("otel_wandb"):
            continue
        target = resolve(imp.target)
        if target.startswith("app"):
            bad.append(f"{imp.module}:{imp.line} imports the service ({imp.target})")
            continue
        mine, theirs = owner(imp.module), owner(target)
        if (
            mine in EXPORTER_LAYERS
            and theirs != mine
            and theirs != "otel_wandb"
            and theirs not in EXPORTER_LAYERS[mine]
        ):
            bad.append(f"{imp.module}:{imp.line} ({mine}) may not import {theirs}")
    assert bad == []


def test_packages_meet_through_their_public_surface():
    """Outside a package, only its __init__ (or a public module) is imported, never a ``_private`` module."""
    bad = []
    for imp in IMPORTS:
        target = resolve(imp.target)
        parts = target.split(".")
        private = next((i for i, p in enumerate(parts) if p.startswith("_") and p != "__main__"), None)
        if private is None:
            continue
        home = ".".join(parts[:private])
        if not (imp.module == home or imp.module.startswith(home + ".")):
            bad.append(f"{imp.module}:{imp.line} imports {target}, private to {home}")
    assert bad == []


def test_the_pure_core_imports_only_the_standard_library():
    import sys

    allowed = set(sys.stdlib_module_names)
    bad = []
    for name, path in MODULES.items():
        if not name.startswith(STDLIB_ONLY):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            tops = (
                [a.name.split(".")[0] for a in node.names]
                if isinstance(node, ast.Import)
                else [(node.module or "").split(".")[0]]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            bad += [
                f"{name} imports {t}"
                for t in tops
                if t and t not in allowed and t != "otel_wandb" and t != "__future__"
            ]
    assert bad == []


def test_runtime_never_imports_the_dev_tooling():
    bad = [
        f"{i.module}:{i.line}"
        for i in IMPORTS
        if resolve(i.target).startswith("app.demo") and not i.module.startswith("app.demo")
    ]
    assert bad == []


def test_imports_inside_functions_say_why():
    """A project module imported inside a function is a lazy import on purpose (an optional extra, a process that
    must stay light); the line says why in a comment."""
    bad = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS if i.in_function and not i.commented]
    assert bad == []


def _environ_uses(path: Path) -> Iterator[tuple[int, bool]]:
    """(line, is_write) for every use of os.environ / os.getenv."""
    tree = ast.parse(path.read_text())
    parents = {id(c): p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "getenv", "putenv")
        ):
            parent = parents.get(id(node))
            write = (isinstance(parent, ast.Attribute) and parent.attr in ("setdefault", "pop", "update")) or (
                isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store)
            )
            yield node.lineno, write


def test_only_the_configuration_layers_read_the_environment():
    bad = []
    for name, path in MODULES.items():
        for line, write in _environ_uses(path):
            if name in ENV_READERS or (write and name in ENV_WRITERS):
                continue
            bad.append(f"{name}:{line} {'writes' if write else 'reads'} os.environ")
    assert bad == []


@pytest.mark.parametrize("top", sorted(SOURCES))
def test_no_folder_holds_more_than_about_fifteen_modules(top):
    crowded = {
        str(folder.relative_to(ROOT)): n
        for folder in [SOURCES[top], *SOURCES[top].rglob("*")]
        if folder.is_dir() and (n := len(list(folder.glob("*.py")))) > MAX_MODULES_PER_FOLDER
    }
    assert crowded == {}
