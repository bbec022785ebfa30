"""Every benchmark imports, and everything a benchmark imports is installed by ``pip install
"pytts[bench]"`` (issue 10, item 15: ``python -m bench.llm_overhead`` needed orjson, which no
extra named)."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).parents[1]
BENCH_MODULES = sorted(p.stem for p in (ROOT / "bench").glob("*.py"))
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def _imported_top_level_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"pytts", "bench"}


@pytest.mark.parametrize("module", BENCH_MODULES)
def test_every_bench_module_imports(module):
    importlib.import_module(f"bench.{module}")


@pytest.mark.parametrize("module", BENCH_MODULES)
def test_every_import_of_a_bench_module_is_in_the_bench_extra(module):
    installed = importlib.metadata.packages_distributions()
    provided = {_name(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]
                ["bench"]}
    for imported in _imported_top_level_modules(ROOT / "bench" / f"{module}.py"):
        distributions = {_name(d) for d in installed.get(imported, [imported])}
        assert distributions & provided, (f"bench/{module}.py imports {imported} "
                                          f"(distribution {sorted(distributions)}), which "
                                          "neither the dependencies nor the bench extra install")


def test_the_bench_extra_pulls_in_what_the_benchmarked_searchers_need():
    from bench.search_efficiency import SEARCHERS
    bench = PROJECT["optional-dependencies"]["bench"]
    if "tpe" in SEARCHERS:              # TPE runs on Optuna, pytts's optuna extra
        assert "pytts[optuna]" in bench or any(_name(r) == "optuna" for r in bench)
