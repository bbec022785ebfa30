"""Shared fixtures: the kernel backends, and small pools/cost models for kernel tests."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from local_server import local_server  # noqa: F401 - the session fixture of the local tests

from pytts import CostModel, ModelPool, ModelSpec, _reference, kernels

try:
    from pytts import _core
except ImportError:  # the extension is optional; CI requires it (PYTTS_REQUIRE_EXTENSION=1)
    _core = None

BACKENDS = {"reference": _reference, "core": _core}


def require_core():
    """The compiled module; a hard failure where CI demands it, a visible skip elsewhere."""
    if _core is None:
        if os.environ.get("PYTTS_REQUIRE_EXTENSION", "") not in ("", "0"):
            pytest.fail("pytts._core is not built but PYTTS_REQUIRE_EXTENSION is set")
        pytest.skip("pytts._core is not built")
    return _core


@pytest.fixture(params=["core", "reference"])
def backend(request, monkeypatch):
    """Route pytts.kernels to one backend for the duration of a test."""
    impl = require_core() if request.param == "core" else _reference
    monkeypatch.setattr(kernels, "_impl", impl)
    return request.param


@pytest.fixture(params=["core", "reference"])
def impl(request):
    """Each backend module in turn, called directly."""
    return require_core() if request.param == "core" else _reference


@pytest.fixture
def core():
    return require_core()


def make_pool(params=(0.5, 1.5, 3.0), families=None) -> ModelPool:
    families = families or [f"fam{k % 2}" for k in range(len(params))]
    return ModelPool([ModelSpec(name=f"m{k}", family=f, params_b=p, out_tokens=100.0 + 50 * k,
                                prefill_tps=1000.0 + 100 * k, decode_tps=40.0 + k,
                                overhead_s=0.05)
                      for k, (p, f) in enumerate(zip(params, families))])


@pytest.fixture
def pool3() -> ModelPool:
    return make_pool()


@pytest.fixture
def cost3(pool3) -> CostModel:
    return CostModel(pool3, prompt_tokens=200.0, template_tokens=40.0)


def random_logits(pg, seed: int, scale: float = 1.0):
    """Fill a ProbGraph's logits with seeded normal noise (in place) and return it."""
    rng = np.random.default_rng(seed)
    for arr in pg.logit_arrays():
        arr[...] = rng.normal(scale=scale, size=arr.shape)
    return pg


def make_logits(d, w, k, r, seed=0, scale=1.0):
    """The five logit arrays of a ``d x w`` template over k models and r roles: seeded normals."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, d), rng.normal(0, scale, (d, d, w)),
            rng.normal(0, scale, (d, w, k)), rng.normal(0, scale, (d, w, r)),
            rng.normal(0, scale, (max(d - 1, 0), w, w)))


def make_costs(k, seed=0):
    """A kernel cost table of k models (columns of pytts.constants.COST_COLUMNS): seeded."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(1e8, 1e11, k), rng.uniform(10, 500, k),
                            rng.uniform(100, 5000, k), rng.uniform(10, 100, k),
                            rng.uniform(0, 0.5, k)])


def budget_at_quantile(impl, logits, costs, seed, quantile):
    """A budget at ``quantile`` of the FLOPs of 64 unconditioned samples of ``logits`` (drawn
    by ``impl``, the compiled module or the reference), so a test's budget rejects a known
    share; ``inf`` when ``quantile`` is None."""
    if quantile is None:
        return math.inf
    probe = impl.sample_graphs(*logits, None, 50.0, 64, seed, math.inf, 64)
    return float(np.quantile(impl.graph_cost(*probe[:3], costs, 50.0)[0], quantile))
