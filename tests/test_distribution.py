"""The sampler draws exactly the distribution log_prob describes (checked against every graph of
small templates, with and without a budget, on each backend), log_prob is a distribution, and
its gradient is the score function."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_costs, make_logits, make_pool, random_logits, require_core
from scipy.stats import chisquare

from pytts import ProbGraph
from pytts.space import count_graphs, enumerate_graphs

pytestmark = pytest.mark.sanitize  # also run against the ASan/UBSan build

# Draws per frequency test: the reference is a Python loop, so it draws fewer (its draws are the
# compiled kernel's, bit for bit, which test_kernels_agreement shows on its own).
DRAWS = {"core": 200_000, "reference": 20_000}


def _keys(model, role, edges) -> list[bytes]:
    """One bytes key per graph, to match samples against the enumeration."""
    b = len(model)
    return [bytes(x) for x in np.concatenate(
        [model.reshape(b, -1).view(np.uint8), role.reshape(b, -1).view(np.uint8),
         edges.reshape(b, -1)], axis=1)]


def assert_frequencies_match(counts: np.ndarray, prob: np.ndarray) -> None:
    """Counts of n draws are a sample of ``prob``: nothing outside the support; a chi-square test
    (cells expected fewer than 5 times pooled into one) at p > 1e-4; and every cell expected at
    least 25 times within 5 standard deviations."""
    n = counts.sum()
    expected = n * prob
    assert counts[prob == 0].sum() == 0
    rare = expected < 5
    obs = np.append(counts[~rare], counts[rare & (prob > 0)].sum())
    exp = np.append(expected[~rare], expected[rare].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert chisquare(obs, exp).pvalue > 1e-4
    big = expected >= 25
    sd = np.sqrt(expected * (1 - prob))
    assert (np.abs(counts - expected)[big] <= 5 * sd[big]).all()


def _tiny_probgraph(seed: int) -> ProbGraph:
    pool = make_pool(params=(0.5, 2.0))
    return random_logits(ProbGraph.uniform(2, 2, pool.names), seed, scale=0.8)


def _count_by_width_tuples(depth: int, width: int, n_models: int, n_roles: int) -> int:
    """The count the definition gives: a sum over every tuple of layer widths."""
    import itertools
    total = 0
    for d in range(1, depth + 1):
        for ws in itertools.product(range(1, width + 1), repeat=d):
            n = n_models ** sum(ws) * n_roles ** sum(ws[1:])
            for a, b in zip(ws, ws[1:]):
                n *= (2 ** a - 1) ** b
            total += n
    return total


@pytest.mark.parametrize("depth, width, n_models, n_roles",
                         [(1, 1, 1, 1), (2, 2, 2, 2), (3, 4, 3, 2), (4, 3, 6, 2), (5, 5, 2, 1)])
def test_count_graphs_equals_the_sum_over_width_tuples(depth, width, n_models, n_roles):
    exact = _count_by_width_tuples(depth, width, n_models, n_roles)
    assert count_graphs(depth, width, n_models, n_roles) == exact
    for cap in (1, exact - 1, exact, exact + 1):
        assert count_graphs(depth, width, n_models, n_roles, cap=cap) == min(exact, cap)


def test_a_capped_count_of_the_largest_template_stops_at_the_cap():
    # issue 10, item 7: counting walked all 64**16 width tuples before refusing
    assert count_graphs(16, 64, 50, 2, cap=300_001) == 300_001


def test_enumeration_counts_every_graph_once():
    batch = enumerate_graphs(2, 2, 2, 2)
    assert len(batch) == count_graphs(2, 2, 2, 2) == 670
    assert len(set(_keys(batch.model, batch.role, batch.edges))) == len(batch)


@pytest.mark.parametrize("d,w,k,r", [(2, 2, 2, 2), (3, 2, 1, 1), (2, 3, 1, 2)])
@pytest.mark.parametrize("conditioned", [False, True])
def test_sampler_frequencies_match_exact_probabilities(impl, d, w, k, r, conditioned):
    core = require_core()
    logits = make_logits(d, w, k, r, seed=11, scale=1.0)
    graphs = enumerate_graphs(d, w, k, r)
    model, role, edges = graphs.model, graphs.role, graphs.edges
    prob = np.exp(impl.log_prob(*logits, model, role, edges))
    assert prob.sum() == pytest.approx(1.0, abs=1e-9)
    costs = make_costs(k, seed=5)
    budget = math.inf
    if conditioned:
        flops = impl.graph_cost(model, role, edges, costs, 20.0)[0]
        budget = float(np.quantile(flops, 0.5))
        prob = np.where(flops <= budget, prob, 0.0)
    n = DRAWS["core" if impl is core else "reference"]
    sm, sr, se, _, n_drawn = impl.sample_graphs(*logits, costs, 20.0, n, 2024, budget, 20 * n)
    assert len(sm) == n
    # the acceptance rate estimates the feasible mass
    assert n / n_drawn == pytest.approx(prob.sum(), rel=5 / math.sqrt(n))
    prob = prob / prob.sum()
    index = {key: i for i, key in enumerate(_keys(model, role, edges))}
    counts = np.bincount([index[key] for key in _keys(sm, sr, se)], minlength=len(prob))
    assert_frequencies_match(counts, prob)


@pytest.mark.parametrize("width", [6, 9])
def test_predecessor_sets_of_a_wide_layer_have_exact_frequencies(impl, width):
    # Two and three chunks of candidates (the enumerated templates above have one): the
    # predecessor set of a node below a layer of `width` nodes, over all 2^width - 1 sets.
    d, w = 2, width
    depth, widths, models, roles, edges = make_logits(d, w, 1, 1, seed=3)
    depth[:] = [0.0, 6.0]
    widths[1, 0, w - 1] = widths[1, 1, 0] = 6.0  # mostly layer widths (w, 1)
    logits = (depth, widths, models, roles, edges)
    masks = np.arange(1, 2**w)
    model = np.full((len(masks), d, w), -1, np.int16)
    model[:, 0, :] = 0
    model[:, 1, 0] = 0
    edge = np.zeros((len(masks), 1, w, w), np.uint8)
    edge[:, 0, :, 0] = (masks[:, None] >> np.arange(w)) & 1
    role = np.zeros((len(masks), d, w), np.int8)
    prob = np.exp(impl.log_prob(*logits, model, role, edge))
    prob /= prob.sum()  # conditioned on the widths
    n = DRAWS["core" if impl is require_core() else "reference"]
    sm, _, se, _, _ = impl.sample_graphs(*logits, None, 0.0, n, 77, math.inf, n)
    keep = (sm[:, 0] >= 0).all(axis=1) & (sm[:, 1, 0] >= 0) & (sm[:, 1, 1:] < 0).all(axis=1)
    drawn = (se[keep, 0, :, 0].astype(np.int64) << np.arange(w)).sum(axis=1)
    counts = np.bincount(drawn, minlength=2**w)[1:]
    assert counts.sum() > n / 4
    assert_frequencies_match(counts, prob)


def test_log_prob_of_all_graphs_sums_to_one(backend):
    pg = _tiny_probgraph(0)
    logp = pg.log_prob(enumerate_graphs(2, 2, 2, 2))
    assert np.isfinite(logp).all()
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-9)


def test_log_prob_gives_minus_inf_to_impossible_graphs(backend):
    pg = _tiny_probgraph(4)
    batch = enumerate_graphs(2, 2, 2, 2)
    bad_model = batch.model.copy()
    bad_model[:, 0, 0] = -1          # a gap at slot 0: never produced
    bad = type(batch)(bad_model, batch.role, batch.edges)
    assert np.isneginf(pg.log_prob(bad)).all()


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
            arr[idx] = old + eps  # in place: the probgraph's cached logits must notice
            up = weights @ pg.log_prob(batch)
            arr[idx] = old - eps
            down = weights @ pg.log_prob(batch)
            arr[idx] = old
            assert g[idx] == pytest.approx((up - down) / (2 * eps), abs=1e-6), (name, idx)


def test_entropy_equals_enumerated_entropy():
    pg = _tiny_probgraph(5)
    p = np.exp(pg.log_prob(enumerate_graphs(2, 2, 2, 2)))
    assert pg.entropy() == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-10)


def test_entropy_of_a_larger_template_matches_enumeration():
    pool = make_pool(params=(0.5,))
    pg = random_logits(ProbGraph.uniform(3, 2, pool.names), 6)
    p = np.exp(pg.log_prob(enumerate_graphs(3, 2, 1, 2)))
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert pg.entropy() == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-10)
