"""Dependencies point down: pytts' modules import each other without a cycle, the kernels know
nothing of the graph model above them, and the LLM layer knows nothing of tasks, search or the
simulator. Imports are read from the source (every import statement, also inside functions and
``if TYPE_CHECKING`` blocks), so an import hidden in a function counts like any other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "pytts"

# The LLM layer sits below these packages.
ABOVE_LLM = ("pytts.search", "pytts.sim", "pytts.tasks")
# pytts/llm/sim.py is being moved to pytts/sim/ (issue 12, item 2): until then it imports tasks
# and prompts (which import pytts.llm back), so its own imports are not checked. Nothing else is
# exempt, and once the file is gone the exemption is void.
BEING_MOVED = {PACKAGE / "llm" / "sim.py"}
# What the kernel layer may import from pytts: the kernel face, its two backends and what they
# share.
KERNEL_LAYER = {"pytts.kernels", "pytts._reference", "pytts._core", "pytts.constants",
                "pytts.logspace", "pytts.errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, modules: set[str]) -> set[str]:
    """The pytts modules the file at ``path`` imports (see `imports_of`)."""
    return imports_of(path.read_text(), module_name(path), path.name == "__init__.py", modules)


def imports_of(source: str, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The pytts modules that module ``name`` (whose code is ``source``) imports, each with the
    packages that importing it runs (a package's ``__init__`` runs first), except packages that
    contain the importer (they are already running)."""
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source_module = f"{base}.{node.module}" if node.module else base
            else:
                source_module = node.module or ""
            for alias in node.names:
                sub = f"{source_module}.{alias.name}"
                targets.add(sub if sub in modules else source_module)
    out: set[str] = set()
    for target in targets:
        parts = target.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if prefix in modules and not (name == prefix or name.startswith(prefix + ".")):
                out.add(prefix)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the pytts modules it imports (none for a file in BEING_MOVED)."""
    modules = all_modules()
    names = set(modules)
    return {name: imported(path, names) if path not in BEING_MOVED else set()
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_pytts_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_llm_layer_does_not_import_tasks_search_or_the_simulator():
    upward = {(name, target) for name, targets in import_graph().items()
              if name == "pytts.llm" or name.startswith("pytts.llm.")
              for target in targets
              if any(target == up or target.startswith(up + ".") for up in ABOVE_LLM)}
    assert not upward, f"the LLM layer imports upward: {sorted(upward)}"


@pytest.mark.parametrize("module", ["pytts.kernels", "pytts._reference", "pytts.constants",
                                    "pytts.logspace"])
def test_the_kernel_layer_imports_nothing_above_it(module):
    graph = import_graph()
    assert graph[module] <= KERNEL_LAYER, sorted(graph[module] - KERNEL_LAYER)


# ---------------------------------------------------------------- the checker itself
def test_the_checker_sees_imports_inside_functions_and_type_checking_blocks():
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from .graph import GraphBatch\n"
              "def f():\n    from .cost import CostModel\n    from . import kernels\n"
              "    import pytts.llm.bank\n    from .llm import router\n    import numpy\n")
    found = imports_of(source, "pytts.probgraph", False, set(all_modules()))
    assert found == {"pytts.graph", "pytts.cost", "pytts.kernels", "pytts.llm", "pytts.llm.bank",
                     "pytts.llm.router"}
    inside = imports_of("from . import bank\nfrom ..errors import LLMError\n", "pytts.llm.router",
                        False, set(all_modules()))
    assert inside == {"pytts.llm.bank", "pytts.errors"}


def test_the_checker_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


HEAVY = ("matplotlib", "optuna", "ray", "scipy.stats")
"""Imports that cost a large part of a second or more: loaded only where they are used."""


@pytest.mark.parametrize("code", ["import pytts", "import pytts.cli",
                                  "import pytts.cli\ntry:\n    pytts.cli.main(['--help'])\n"
                                  "except SystemExit:\n    pass"],
                         ids=["import pytts", "import pytts.cli", "pytts --help"])
def test_starting_pytts_does_not_import_heavy_modules(code):
    probe = f"{code}\nimport sys\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent, timeout=120)
    assert out.stdout.splitlines()[-1] == "loaded:", out.stdout[-300:]
