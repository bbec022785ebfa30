"""The two backends are twins: for the same inputs, ``pytts._core`` and ``pytts._reference`` give
the same outputs (bit for bit where the arithmetic is the same: samples, costs, votes, ids; to
rounding for log-probabilities and gradients), and both give the known answers committed under
tests/data/ (made by tests/data/make_known_answers.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import budget_at_quantile, make_costs, make_logits, require_core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytts import _reference, kernels

pytestmark = pytest.mark.sanitize  # also run against the ASan/UBSan build

KNOWN = json.loads((Path(__file__).parent / "data" / "kernels_known_answers.json").read_text())
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# ---------------------------------------------------------------- known answers
@pytest.mark.parametrize("case", KNOWN["sampler"], ids=lambda c: c["name"])
def test_every_backend_draws_the_known_samples(impl, case):
    logits = [np.asarray(a, dtype=np.float64).reshape(shape)
              for a, shape in zip(case["logits"], case["shapes"])]
    costs = np.asarray(case["model_costs"], dtype=np.float64)
    budget = math.inf if case["budget"] is None else case["budget"]
    args = (costs, case["base_prompt_tokens"], case["n"], case["seed"], budget, case["max_draws"])
    for model, role, edges, logp, n_drawn in (impl.sample_graphs(*logits, *args),
                                              impl.Sampler(*logits).sample(*args)):
        assert model.tolist() == case["model"] and role.tolist() == case["role"]
        assert edges.tolist() == case["edges"] and n_drawn == case["n_drawn"]
        assert logp.tolist() == case["logp"]  # exact: JSON floats round-trip
        flops, latency = impl.graph_cost(model, role, edges, costs, case["base_prompt_tokens"])
        assert flops.tolist() == case["flops"] and latency.tolist() == case["latency"]


def test_every_backend_interns_the_known_ids(impl):
    known = KNOWN["intern_answers"]
    assert impl.intern_answers(known["answers"]).tolist() == known["ids"]
    # FNV-1a 64 of b"a" is 0xaf63dc4c8601ec8c; masked to 63 bits
    assert impl.intern_answers(["a"])[0] == 0xAF63DC4C8601EC8C & ((1 << 63) - 1)


# ---------------------------------------------------------------- the same seed, the same graphs
@given(d=st.integers(1, 5), w=st.integers(1, 10), k=st.integers(1, 4), r=st.integers(1, 3),
       n=st.integers(0, 25), seed=st.integers(0, 2**64 - 1),
       quantile=st.sampled_from([None, 0.1, 0.5, 1.0]), scale=st.sampled_from([0.3, 1.0, 5.0]))
@SETTINGS
def test_one_seed_gives_bit_identical_samples_on_both_backends(d, w, k, r, n, seed, quantile,
                                                               scale):
    core = require_core()
    logits = make_logits(d, w, k, r, seed % 2**32, scale)
    costs = make_costs(k, seed % 2**32)
    budget = budget_at_quantile(core, logits, costs, seed, quantile)
    args = (costs, 50.0, n, seed, budget, 40 * n)
    ours = core.sample_graphs(*logits, *args)
    twin = _reference.sample_graphs(*logits, *args)
    for a, b in zip(ours, twin):
        np.testing.assert_array_equal(a, b)
        assert np.asarray(a).dtype == np.asarray(b).dtype


# ---------------------------------------------------------------- costs, scores, answers
@st.composite
def graph_cases(draw):
    """Random logits, costs and a batch: sampled graphs, some corrupted into impossible ones."""
    d, w = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    k, r = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    b = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    logits = make_logits(d, w, k, r, seed, draw(st.sampled_from([0.1, 1.0, 4.0])))
    model, role, edges, _, _ = require_core().sample_graphs(*logits, None, 0.0, b, seed,
                                                            math.inf, b)
    model, role, edges = model.copy(), role.copy(), edges.copy()
    for bb in np.flatnonzero(rng.random(b) < draw(st.sampled_from([0.0, 0.5]))):
        model[bb, rng.integers(d), rng.integers(w)] = rng.integers(-1, k)
        role[bb, rng.integers(d), rng.integers(w)] = rng.integers(0, r)
        if d > 1:
            edges[bb, rng.integers(d - 1), rng.integers(w), rng.integers(w)] ^= 1
    return logits, make_costs(k, seed), float(rng.uniform(0, 300)), (model, role, edges), rng


@given(graph_cases())
@SETTINGS
def test_graph_cost_and_feasible_are_identical(case):
    core = require_core()
    logits, costs, base, graphs, _ = case
    flops, latency = core.graph_cost(*graphs, costs, base)
    ref_flops, ref_latency = _reference.graph_cost(*graphs, costs, base)
    np.testing.assert_array_equal(flops, ref_flops)  # same summation order: bit for bit
    np.testing.assert_array_equal(latency, ref_latency)
    budget = float(np.median(flops))
    np.testing.assert_array_equal(core.feasible(*graphs, costs, base, budget),
                                  _reference.feasible(*graphs, costs, base, budget))


@given(graph_cases())
@SETTINGS
def test_log_prob_and_grad_log_prob_agree(case):
    core = require_core()
    logits, _, _, graphs, rng = case
    lp = core.log_prob(*logits, *graphs)
    ref_lp = _reference.log_prob(*logits, *graphs)
    np.testing.assert_array_equal(np.isneginf(lp), np.isneginf(ref_lp))
    ok = np.isfinite(ref_lp)
    np.testing.assert_allclose(lp[ok], ref_lp[ok], rtol=1e-12, atol=1e-11)
    if ok.any():
        possible = [a[ok] for a in graphs]
        weights = rng.normal(size=int(ok.sum()))
        for g, ref_g in zip(core.grad_log_prob(*logits, *possible, weights),
                            _reference.grad_log_prob(*logits, *possible, weights)):
            np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-10)


@given(q=st.integers(0, 30), b=st.integers(1, 70), distinct=st.integers(1, 12),
       seed=st.integers(0, 2**32 - 1), weighted=st.booleans(), big_ids=st.booleans())
@SETTINGS
def test_vote_is_identical(q, b, distinct, seed, weighted, big_ids):
    core = require_core()
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**62, distinct) if big_ids else np.arange(distinct)
    ids = np.where(rng.random((q, b)) < 0.2, -1, rng.choice(pool, (q, b))).astype(np.int64)
    # dyadic weights: sums are exact, so ties are ties in both implementations
    weights = rng.integers(0, 8, size=(q, b)) / 4.0 if weighted else None
    for a, e in zip(core.vote(ids, weights), _reference.vote(ids, weights)):
        np.testing.assert_array_equal(a, e)


@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=60))
@SETTINGS
def test_intern_answers_is_identical_and_stable(answers):
    ids = require_core().intern_answers(answers)
    np.testing.assert_array_equal(ids, _reference.intern_answers(answers))
    for a, i in zip(answers, ids):
        assert (i == -1) == (a is None) and i >= -1
    same = {a: i for a, i in zip(answers, ids)}
    assert all(same[a] == i for a, i in zip(answers, ids))


def test_vote_semantics(backend):
    ids = np.array([[3, 5, 5, 3], [7, -1, 8, -1], [-1, -1, -1, -1], [4, 4, 9, 9]], np.int64)
    winner, support = kernels.vote(ids)
    assert winner.tolist() == [3, 7, -1, 4]        # ties to the first seen
    assert support.tolist() == [2.0, 1.0, 0.0, 2.0]
    weights = np.array([[1, 1, 1, 0.5], [1, 9, 2, 9], [1, 1, 1, 1], [1, 1, 1, 1.5]])
    winner, support = kernels.vote(ids, weights)
    assert winner.tolist() == [5, 8, -1, 9]
    assert support.tolist() == [2.0, 2.0, 0.0, 2.5]
    winner, support = kernels.vote(np.zeros((2, 0), np.int64))
    assert winner.tolist() == [-1, -1] and support.tolist() == [0.0, 0.0]
