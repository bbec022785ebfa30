"""The two kernel backends are twins in what they export: the same names with the same
parameters, as the stub ``pytts/_core.pyi`` describes them, the same constants (read from
`pytts.constants`; C++ has compile-time copies), and ``PYTTS_FORCE_REFERENCE`` picks the twin."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_core

from pytts import _reference, constants
from pytts.sim import simulate_reference

# Names of the compiled module whose twin is not `pytts._reference`: the simulator's kernel is
# twinned in the simulator package, and the build flags exist only where something was built.
TWIN_ELSEWHERE = {name: simulate_reference for name in simulate_reference.__all__}
CORE_ONLY = {"BUILD_FLAGS"}


def twin_of(name: str) -> object:
    """The module that holds the NumPy twin of the compiled ``name``."""
    return TWIN_ELSEWHERE.get(name, _reference)

ROOT = Path(__file__).parents[1]
STUB = ROOT / "pytts" / "_core.pyi"
CONSTANTS = ("MAX_DEPTH", "MAX_WIDTH", "MAX_MODELS", "MAX_ROLES", "FNV_OFFSET", "FNV_PRIME")


def stub_signatures() -> dict[str, list[str]]:
    """name -> parameter names, for every function, class and method the stub declares
    (methods as ``Class.method``, without ``self``), plus the constants (no parameters)."""
    out: dict[str, list[str]] = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.ClassDef):
            out[node.name] = []
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    name = node.name if item.name == "__init__" else f"{node.name}.{item.name}"
                    out[name] = [a.arg for a in item.args.args][1:]
        elif isinstance(node, ast.AnnAssign) and not node.target.id.startswith("_"):
            out[node.target.id] = []
    return out


def compiled_parameters(fn: object) -> list[str]:
    """Parameter names from pybind11's signature line (``name(a: object, b: object) -> ...``)."""
    first = (fn.__doc__ or "").splitlines()[0]
    params = re.match(r"^[\w.]+\((.*)\) ->", first)
    assert params, f"no signature in {first!r}"
    names = [p.split(":")[0].strip() for p in params.group(1).split(",") if p.strip()]
    return [n for n in names if n != "self"]


def reference_parameters(obj: object) -> list[str]:
    return [p for p in inspect.signature(obj).parameters if p != "self"]


def test_both_backends_export_exactly_the_names_of_the_stub():
    core = require_core()
    declared = {name for name in stub_signatures() if "." not in name}
    assert {n for n in dir(core) if not n.startswith("_")} == declared
    assert set(_reference.__all__) == declared - set(TWIN_ELSEWHERE) - CORE_ONLY
    assert all(hasattr(twin_of(name), name) for name in declared - CORE_ONLY)


def test_both_backends_take_the_parameters_of_the_stub():
    core = require_core()
    for name, params in stub_signatures().items():
        if name in CONSTANTS or name in CORE_ONLY:
            continue
        owner, _, method = name.partition(".")
        compiled, twin = getattr(core, owner), getattr(twin_of(owner), owner)
        if method:
            compiled, twin = getattr(compiled, method), getattr(twin, method)
        elif inspect.isclass(compiled):
            compiled, twin = compiled.__init__, twin.__init__
        assert compiled_parameters(compiled) == params, name
        assert reference_parameters(twin) == params, name


@pytest.mark.parametrize("name", CONSTANTS)
def test_compiled_constants_equal_the_shared_ones(name):
    core = require_core()
    assert getattr(core, name) == getattr(constants, name)
    assert getattr(_reference, name) is getattr(constants, name)


def _run(code: str, **env: str) -> dict[str, object]:
    """``code`` in a fresh interpreter (from another directory); its last stdout line as JSON."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=environ, cwd=Path(__file__).parent / "data", timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


SAMPLE = """
import json, sys
from pytts import CostModel, ProbGraph, kernels
from pytts.demo_pool import demo_pool
pool = demo_pool()
pg = ProbGraph.uniform(3, 4, pool.names)
pg.edge_logits[...] = 1.0
batch, logp, stats = pg.sample(25, seed=99, budget="4x qwen2.5-3b", cost=CostModel(pool, 300))
print(json.dumps({"backend": kernels.BACKEND, "core_loaded": "pytts._core" in sys.modules,
                  "graphs": [batch.model.tolist(), batch.role.tolist(), batch.edges.tolist()],
                  "logp": logp.tolist(), "drawn": stats.n_drawn}))
"""


def test_forced_reference_backend_draws_what_the_compiled_one_draws():
    require_core()
    forced = _run(SAMPLE, PYTTS_FORCE_REFERENCE="1")
    assert forced["backend"] == "reference" and not forced["core_loaded"]
    compiled = _run(SAMPLE, PYTTS_FORCE_REFERENCE="0")
    assert compiled["backend"] == "core" and compiled["core_loaded"]
    assert forced["graphs"] == compiled["graphs"] and forced["logp"] == compiled["logp"]
    assert forced["drawn"] == compiled["drawn"]


@pytest.mark.slow
def test_stub_matches_the_compiled_module():
    require_core()
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", "pytts._core", "--allowlist",
                          str(Path(__file__).parent / "data" / "stubtest_allowlist.txt")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_kernel_face_and_stub_are_mypy_strict_clean():
    files = ["pytts/kernels.py", "pytts/_core.pyi", "pytts/constants.py", "pytts/logspace.py"]
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                          "--no-incremental", *files], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
