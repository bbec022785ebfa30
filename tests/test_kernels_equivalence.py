"""The compiled kernels agree with the NumPy reference; gradients agree with finite differences."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytts import CostModel, GraphBatch, ProbGraph, _reference, kernels

from conftest import make_pool, random_logits, require_core

pytestmark = pytest.mark.sanitize  # also run against the ASan/UBSan build

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def cases(draw):
    """A random ProbGraph, cost model and batch (sampled graphs, some of them corrupted)."""
    d = draw(st.integers(1, 4))
    w = draw(st.integers(1, 5))
    k = draw(st.integers(1, 4))
    r = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 4.0]))
    rng = np.random.default_rng(seed)
    pool = make_pool(params=tuple(rng.uniform(0.1, 8.0, k)))
    cost = CostModel(pool, prompt_tokens=float(rng.uniform(0, 500)),
                     template_tokens=float(rng.uniform(0, 50)))
    pg = random_logits(ProbGraph.uniform(d, w, pool.names, n_roles=r), seed, scale)
    b = draw(st.integers(1, 40))
    model, role, edges, _, _ = _reference.sample_graphs(
        *pg.logit_arrays(), cost.table.model_costs, cost.base_prompt_tokens, b, seed, np.inf,
        10 * b)
    model, role, edges = model.copy(), role.copy(), edges.copy()
    for bb in np.flatnonzero(rng.random(b) < draw(st.sampled_from([0.0, 0.3]))):
        model[bb, rng.integers(d), rng.integers(w)] = rng.integers(-1, k)
        if d > 1:
            edges[bb, rng.integers(d - 1), rng.integers(w), rng.integers(w)] ^= 1
        role[bb, rng.integers(d), rng.integers(w)] = rng.integers(0, r)
    return pg, cost, GraphBatch(model, role, edges), rng


@given(cases())
@SETTINGS
def test_graph_cost_and_feasible_are_identical(case):
    core = require_core()
    pg, cost, batch, rng = case
    args = (batch.model, batch.role, batch.edges, cost.table.model_costs,
            cost.base_prompt_tokens)
    f_core, l_core = core.graph_cost(*args)
    f_ref, l_ref = _reference.graph_cost(*args)
    np.testing.assert_array_equal(f_core, f_ref)
    np.testing.assert_array_equal(l_core, l_ref)
    budget = float(np.median(f_ref))
    np.testing.assert_array_equal(core.feasible(*args, budget), _reference.feasible(*args, budget))


@given(cases())
@SETTINGS
def test_log_prob_and_grad_log_prob_agree(case):
    core = require_core()
    pg, cost, batch, rng = case
    arrays = (batch.model, batch.role, batch.edges)
    lp_core = core.log_prob(*pg.logit_arrays(), *arrays)
    lp_ref = _reference.log_prob(*pg.logit_arrays(), *arrays)
    np.testing.assert_array_equal(np.isneginf(lp_core), np.isneginf(lp_ref))
    ok = np.isfinite(lp_ref)
    np.testing.assert_allclose(lp_core[ok], lp_ref[ok], rtol=1e-12, atol=1e-12)
    if ok.any():
        sub = batch.take(ok)
        weights = rng.normal(size=len(sub))
        g_core = core.grad_log_prob(*pg.logit_arrays(), sub.model, sub.role, sub.edges, weights)
        g_ref = _reference.grad_log_prob(*pg.logit_arrays(), sub.model, sub.role, sub.edges,
                                         weights)
        for a, b in zip(g_core, g_ref):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@given(st.integers(1, 50), st.integers(1, 70), st.integers(0, 2**31), st.booleans(),
       st.integers(1, 12))
@SETTINGS
def test_vote_is_identical(q, b, seed, weighted, n_distinct):
    core = require_core()
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, n_distinct, size=(q, b)).astype(np.int64)
    # dyadic weights: sums are exact, so ties are ties in both implementations
    weights = rng.integers(0, 8, size=(q, b)) / 4.0 if weighted else None
    w_core, s_core = core.vote(ids, weights)
    w_ref, s_ref = _reference.vote(ids, weights)
    np.testing.assert_array_equal(w_core, w_ref)
    np.testing.assert_array_equal(s_core, s_ref)


@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=60))
@SETTINGS
def test_intern_answers_is_identical_and_stable(answers):
    core = require_core()
    ids = core.intern_answers(answers)
    np.testing.assert_array_equal(ids, _reference.intern_answers(answers))
    for a, i in zip(answers, ids):
        assert (i == -1) == (a is None) and i >= -1
    same = {a: i for a, i in zip(answers, ids)}
    assert all(same[a] == i for a, i in zip(answers, ids))


def test_intern_answers_known_value_is_fnv1a():
    # FNV-1a 64 of b"a" is 0xaf63dc4c8601ec8c; masked to 63 bits
    assert kernels.intern_answers(["a"])[0] == 0xAF63DC4C8601EC8C & ((1 << 63) - 1)


def test_vote_semantics(backend):
    ids = np.array([[3, 5, 5, 3], [7, -1, 8, -1], [-1, -1, -1, -1], [4, 4, 9, 9]], np.int64)
    winner, support = kernels.vote(ids)
    assert winner.tolist() == [3, 7, -1, 4]        # ties to the first seen
    assert support.tolist() == [2.0, 1.0, 0.0, 2.0]
    weights = np.array([[1, 1, 1, 0.5], [1, 9, 2, 9], [1, 1, 1, 1], [1, 1, 1, 1.5]])
    winner, support = kernels.vote(ids, weights)
    assert winner.tolist() == [5, 8, -1, 9]
    assert support.tolist() == [2.0, 2.0, 0.0, 2.5]


@pytest.mark.parametrize("seed", [0, 1])
def test_grad_log_prob_matches_finite_differences(backend, seed):
    pool = make_pool()
    pg = random_logits(ProbGraph.uniform(3, 3, pool.names), seed)
    batch, _, _ = pg.sample(6, seed=seed + 100)
    weights = np.random.default_rng(seed).normal(size=len(batch))
    grad = pg.grad_log_prob(batch, weights)
    eps = 1e-6
    for name, g in zip(("depth_logits", "width_logits", "model_logits", "role_logits",
                        "edge_logits"), grad.arrays()):
        arr = getattr(pg, name)
        for flat in np.random.default_rng(seed).choice(arr.size, size=min(arr.size, 25),
                                                       replace=False):
            idx = np.unravel_index(flat, arr.shape)
            old = arr[idx]
            arr[idx] = old + eps
            up = weights @ pg.log_prob(batch)
            arr[idx] = old - eps
            down = weights @ pg.log_prob(batch)
            arr[idx] = old
            assert g[idx] == pytest.approx((up - down) / (2 * eps), abs=1e-6), (name, idx)


def test_same_seed_same_samples_different_seed_different(backend):
    pool = make_pool()
    cost = CostModel(pool, prompt_tokens=200)
    pg = random_logits(ProbGraph.uniform(4, 8, pool.names), 3)
    budget = 40 * cost.min_graph_flops()
    a, lp_a, st_a = pg.sample(2000, seed=42, budget=budget, cost=cost)
    b, lp_b, st_b = pg.sample(2000, seed=42, budget=budget, cost=cost)
    c, _, _ = pg.sample(2000, seed=43, budget=budget, cost=cost)
    assert np.array_equal(a.model, b.model) and np.array_equal(a.edges, b.edges)
    assert np.array_equal(lp_a, lp_b) and st_a == st_b
    assert not np.array_equal(a.model, c.model)


def test_samples_do_not_depend_on_concurrent_threads(core):
    pool = make_pool()
    pg = random_logits(ProbGraph.uniform(4, 8, pool.names), 4)
    serial = [pg.sample(3000, seed=s)[0].model for s in range(4)]
    results: dict[int, np.ndarray] = {}

    def run(s: int) -> None:
        results[s] = pg.sample(3000, seed=s)[0].model

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(serial[s], results[s]) for s in range(4))
