"""The flow of docs/architecture.md holds in the code: a module imports only modules of its own layer or above
(function-level imports count too; `if TYPE_CHECKING:` blocks do not run, so they do not), nothing imports in a
cycle, and a server loads no training code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Top to bottom: the order of docs/architecture.md. A module may import its own layer and those above it.
LAYERS: list[tuple[str, ...]] = [
    ("luodi", "luodi.errors", "luodi.io", "luodi.columns", "luodi.checkpoints"),  # foundations
    ("luodi.tasks",),  # the vocabulary every stage speaks: imports only the foundations
    ("luodi.config",),
    ("luodi.store", "luodi.database"),
    ("luodi.data",),
    ("luodi.features",),
    ("luodi.models",),
    ("luodi.train",),
    ("luodi.evaluate",),
    ("luodi.package",),
    ("luodi.monitor",),  # profiles and drift tests (a live window in the server uses them); `luodi monitor`
    ("luodi.optimize",),
    ("luodi.serve",),
    ("luodi.jobs",),
    ("luodi.ui",),  # `luodi ui`: pages over the store on the serving stack (studies read jobs/tune's studies)
    ("luodi.api", "luodi.quickstart"),
    ("luodi.cli", "luodi.__main__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    """The layer of a module: the one whose entry is the module or its longest enclosing package."""
    best, found = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    assert found >= 0, f"{module} is in no layer of LAYERS: add it (and to docs/architecture.md)"
    return found


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or \
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def imports(path: Path) -> set[str]:
    """The luodi modules a file imports, at any depth except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "luodi")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "luodi":
                for alias in node.names:  # `from luodi import api` imports the module luodi.api
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if module_file(candidate) is not None else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def module_file(module: str) -> Path | None:
    path = SRC.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in sorted((SRC / "luodi").rglob("*.py"))}


def test_every_import_goes_up_the_flow() -> None:
    wrong = [f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
             for module, targets in graph().items() for target in sorted(targets) if layer(target) > layer(module)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := walk(target)) is not None:
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = walk(module)
            assert cycle is None, " -> ".join(cycle)


def test_the_server_loads_no_training_code() -> None:
    code = "import luodi.serve.app, sys; print([m for m in sys.modules if m.startswith('luodi.train')])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_reading_a_config_stays_cheap() -> None:
    """The task table is asked when a config is read; it must not drag torch in (`luodi init` never trains)."""
    code = ("import sys; from luodi.config import validate_config; validate_config({'name': 'x', 'data': {'train': "
            "'a.csv'}, 'target': {'name': 'y', 'task': 'binary'}, 'input_features': [{'name': 'a', 'type': "
            "'numeric'}]}); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
