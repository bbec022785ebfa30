"""pytest-benchmark view of bench.kernels: each kernel under core, reference and numba.

Run ``pytest bench/test_bench_kernels.py --benchmark-enable`` (add ``--benchmark-group-by=group``
to compare implementations side by side). With benchmarks disabled (the default in pyproject)
every case still runs once, and checks that the implementations agree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.kernels import BASE_PROMPT, make_workload
from pytts import _reference as ref

core = pytest.importorskip("pytts._core", reason="the C++ extension is not built")

N, Q, B = 20_000, 2_000, 64


def _numba():
    return pytest.importorskip("bench.numba_impl", reason="numba is not installed")


@pytest.fixture(scope="module")
def wl():
    return make_workload(N, Q, B)


def _impl(name: str):
    return {"core": core, "reference": ref}.get(name) or _numba()


@pytest.mark.parametrize("impl", ["core", "reference", "numba"])
def test_sample_cost_feasible(benchmark, wl, impl):
    mod = _impl(impl)
    benchmark.group = f"sample+cost+feasible n={N}"
    model, role, edges, logp, n_drawn = benchmark(
        mod.sample_graphs, *wl.logits, wl.costs, BASE_PROMPT, N, 7, wl.budget, 100 * N)
    assert len(model) == N and n_drawn > N
    assert core.feasible(model, role, edges, wl.costs, BASE_PROMPT, wl.budget).all()
    np.testing.assert_allclose(logp, core.log_prob(*wl.logits, model, role, edges), rtol=1e-12)
    if impl == "numba":  # the same algorithm and streams: the same graphs
        expected = core.sample_graphs(*wl.logits, wl.costs, BASE_PROMPT, N, 7, wl.budget, 100 * N)
        for got, want in zip((model, role, edges, logp, n_drawn), expected):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("impl", ["core", "reference", "numba"])
def test_sample_without_budget(benchmark, wl, impl):
    mod = _impl(impl)
    benchmark.group = f"sample n={N}"
    costs = wl.costs if impl != "core" else None
    model, *_ = benchmark(mod.sample_graphs, *wl.logits, costs, BASE_PROMPT, N, 7, math.inf, N)
    assert len(model) == N


@pytest.mark.parametrize("impl", ["core", "reference", "numba"])
def test_graph_cost(benchmark, wl, impl):
    mod = _impl(impl)
    benchmark.group = f"graph_cost B={N}"
    flops, latency = benchmark(mod.graph_cost, *wl.graphs, wl.costs, BASE_PROMPT)
    want = core.graph_cost(*wl.graphs, wl.costs, BASE_PROMPT)
    np.testing.assert_array_equal(flops, want[0])
    np.testing.assert_array_equal(latency, want[1])


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_log_prob(benchmark, wl, impl):
    mod = _impl(impl)
    benchmark.group = f"log_prob B={N}"
    logp = benchmark(mod.log_prob, *wl.logits, *wl.graphs)
    np.testing.assert_allclose(logp, core.log_prob(*wl.logits, *wl.graphs), rtol=1e-12)


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_grad_log_prob(benchmark, wl, impl):
    mod = _impl(impl)
    benchmark.group = f"grad_log_prob B={N}"
    weights = np.random.default_rng(0).normal(size=N)
    grads = benchmark(mod.grad_log_prob, *wl.logits, *wl.graphs, weights)
    for got, want in zip(grads, core.grad_log_prob(*wl.logits, *wl.graphs, weights)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("impl", ["core", "reference", "scipy.stats.mode"])
def test_vote(benchmark, wl, impl):
    benchmark.group = f"vote Q={Q} x B={B}"
    if impl == "scipy.stats.mode":  # a timing baseline only: other tie and missing rules
        from scipy import stats
        benchmark(stats.mode, wl.ids, axis=1)
        return
    winner, support = benchmark(_impl(impl).vote, wl.ids, None)
    want = core.vote(wl.ids, None)
    np.testing.assert_array_equal(winner, want[0])
    np.testing.assert_array_equal(support, want[1])


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_vote_weighted(benchmark, wl, impl):
    benchmark.group = f"vote weighted Q={Q} x B={B}"
    winner, support = benchmark(_impl(impl).vote, wl.ids, wl.vote_weights)
    want = core.vote(wl.ids, wl.vote_weights)
    np.testing.assert_array_equal(winner, want[0])
    np.testing.assert_array_equal(support, want[1])


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_intern_answers(benchmark, wl, impl):
    benchmark.group = f"intern_answers {len(wl.answers)}"
    ids = benchmark(_impl(impl).intern_answers, wl.answers)
    np.testing.assert_array_equal(ids, core.intern_answers(wl.answers))
