"""The sampler's contract, on each backend: accepted graphs are possible (finite log-probability,
which the sampler reports exactly), fit the budget, come back in draw order and in full; the
work is bounded by max_draws; a seed fixes the output, and threads do not disturb it."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from conftest import (
    budget_at_quantile,
    make_costs,
    make_logits,
    make_pool,
    random_logits,
    require_core,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytts import CostModel, ProbGraph, _reference

pytestmark = pytest.mark.sanitize  # also run against the ASan/UBSan build


@given(d=st.integers(1, 5), w=st.integers(1, 10), k=st.integers(1, 5), r=st.integers(1, 3),
       n=st.integers(0, 30), seed=st.integers(0, 2**64 - 1),
       quantile=st.sampled_from([None, 0.05, 0.5, 1.0]), scale=st.sampled_from([0.3, 1.0, 5.0]))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_sampled_graphs_are_possible_feasible_and_scored_exactly(impl, d, w, k, r, n, seed,
                                                                 quantile, scale):
    core = require_core()
    logits = make_logits(d, w, k, r, seed % 2**32, scale)
    costs = make_costs(k, seed % 2**32)
    budget = budget_at_quantile(impl, logits, costs, seed, quantile)
    model, role, edges, logp, n_drawn = impl.sample_graphs(*logits, costs, 50.0, n, seed,
                                                           budget, 50 * n)
    b = len(model)
    assert model.shape == (b, d, w) and role.shape == (b, d, w)
    assert edges.shape == (b, d - 1, w, w) and logp.shape == (b,)
    assert b <= n and b <= n_drawn <= 50 * n and (b == n or n_drawn == 50 * n)
    # The sampler sums log_prob's terms in log_prob's (compiled) order: equal bit for bit.
    np.testing.assert_array_equal(logp, core.log_prob(*logits, model, role, edges))
    assert np.isfinite(logp).all()
    np.testing.assert_allclose(logp, impl.log_prob(*logits, model, role, edges), rtol=1e-12,
                               atol=1e-11)
    assert impl.feasible(model, role, edges, costs, 50.0, budget).all()
    again = impl.Sampler(*logits).sample(costs, 50.0, n, seed, budget, 50 * n)
    for x, y in zip((model, role, edges, logp, n_drawn), again):
        np.testing.assert_array_equal(x, y)


def test_same_seed_same_samples_different_seed_different(backend):
    pool = make_pool()
    cost = CostModel(pool, prompt_tokens=200)
    pg = random_logits(ProbGraph.uniform(4, 8, pool.names), 3)
    budget = 40 * cost.min_graph_flops()
    a, lp_a, st_a = pg.sample(300, seed=42, budget=budget, cost=cost)
    b, lp_b, st_b = pg.sample(300, seed=42, budget=budget, cost=cost)
    c, _, _ = pg.sample(300, seed=43, budget=budget, cost=cost)
    assert np.array_equal(a.model, b.model) and np.array_equal(a.edges, b.edges)
    assert np.array_equal(lp_a, lp_b) and st_a == st_b
    assert not np.array_equal(a.model, c.model)


def test_samples_do_not_depend_on_concurrent_threads():
    core = require_core()
    sampler = core.Sampler(*make_logits(4, 8, 3, 2, seed=4))
    serial = [sampler.sample(None, 0.0, 3000, s, math.inf, 3000)[0] for s in range(4)]
    results: dict[int, np.ndarray] = {}

    def run(s: int) -> None:  # one shared Sampler: its tables are read-only
        results[s] = sampler.sample(None, 0.0, 3000, s, math.inf, 3000)[0]

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(serial[s], results[s]) for s in range(4))


def test_max_draws_bounds_the_work_and_rows_are_only_accepted_graphs(impl):
    logits, costs = make_logits(3, 4, 3, 2, seed=3), make_costs(3)
    model, role, edges, logp, n_drawn = impl.sample_graphs(*logits, costs, 100.0, 1000, 3, 0.0,
                                                           777)
    assert n_drawn == 777 and len(model) == 0
    model, role, edges, logp, n_drawn = impl.sample_graphs(*logits, None, 100.0, 1000, 3,
                                                           math.inf, 10)
    assert n_drawn == 10 and len(model) == 10


def test_model_costs_are_not_read_without_a_budget(impl):
    logits = make_logits(3, 4, 3, 2, seed=3)
    placeholder = np.zeros((3, 5))  # invalid speeds, never used
    a = impl.sample_graphs(*logits, placeholder, 100.0, 5, 1, math.inf, 100)
    b = impl.sample_graphs(*logits, None, 100.0, 5, 1, math.inf, 100)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_sample_output_is_writable_and_owned_by_numpy(impl):
    model, role, edges, logp, _ = impl.sample_graphs(*make_logits(3, 4, 3, 2), None, 0.0, 20, 1,
                                                     math.inf, 20)
    for a in (model, role, edges, logp):
        assert a.flags.c_contiguous and a.flags.writeable
        a[...] = 0


@pytest.mark.parametrize("d,w,k,r", [(16, 64, 3, 2), (2, 2, 32767, 127), (3, 9, 2, 2),
                                     (2, 8, 3, 2), (3, 5, 2, 2)])
def test_template_limits_sample_and_score_exactly(impl, d, w, k, r):
    # Widest: 64-bit predecessor masks and the lone-predecessor terms computed on the fly;
    # W = 9: no subset table; W = 8 and 5: whole and partial 8-byte edge rows; the largest K and
    # R: long alias tables.
    core = require_core()
    logits = make_logits(d, w, k, r, seed=5, scale=2.0)
    costs = make_costs(k, seed=5)
    probe = impl.sample_graphs(*logits, None, 10.0, 40, 9, math.inf, 40)
    budget = float(np.median(impl.graph_cost(*probe[:3], costs, 10.0)[0]))
    n = 40 if impl is not _reference or d * w < 100 else 10
    model, role, edges, logp, _ = impl.sample_graphs(*logits, costs, 10.0, n, 9, budget, 10_000)
    assert len(model) == n
    np.testing.assert_array_equal(logp, core.log_prob(*logits, model, role, edges))
    flops, _ = impl.graph_cost(model, role, edges, costs, 10.0)
    assert (flops <= budget).all()
    # The last row of the output is written without running past the array's end.
    assert np.isfinite(impl.log_prob(*logits, model[-1:], role[-1:], edges[-1:])).all()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), set())
    except OSError:
        return set()


@pytest.mark.parametrize("w", [8, 5])
def test_portable_and_avx512_samplers_draw_the_same_graphs(monkeypatch, w):
    # W = 8 is where the sampler stores edge rows with AVX-512BW when the CPU has it;
    # PYTTS_SAMPLER_ISA=baseline keeps it on the portable code. Without AVX-512BW both runs
    # take the portable path and the test only checks that forcing it is accepted.
    core = require_core()
    logits = make_logits(4, w, 6, 2, 11, 1.0)
    costs = make_costs(6, 11)
    sampler = core.Sampler(*logits)
    for budget in (budget_at_quantile(core, logits, costs, 5, 0.5), math.inf):
        monkeypatch.delenv("PYTTS_SAMPLER_ISA", raising=False)
        best = sampler.sample(costs, 50.0, 3000, 5, budget, 10**6)
        monkeypatch.setenv("PYTTS_SAMPLER_ISA", "baseline")
        portable = sampler.sample(costs, 50.0, 3000, 5, budget, 10**6)
        for x, y in zip(best, portable):
            np.testing.assert_array_equal(x, y)
        assert len(best[0]) == 3000 and best[2].any()
    if w == 8 and not {"avx512f", "avx512bw"} <= _cpu_flags():
        pytest.skip("no AVX-512BW here: only the portable path ran")


def test_unknown_sampler_isa_is_refused_by_name(monkeypatch):
    core = require_core()
    monkeypatch.setenv("PYTTS_SAMPLER_ISA", "avx9000")
    with pytest.raises(ValueError, match="PYTTS_SAMPLER_ISA"):
        core.Sampler(*make_logits(2, 8, 2, 2, 0, 1.0)).sample(None, 50.0, 1, 0, math.inf, 1)
