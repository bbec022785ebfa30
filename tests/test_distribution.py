"""The sampler draws from exactly the distribution log_prob describes (checked by enumeration)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from pytts import CostModel, ProbGraph, kernels
from pytts.space import count_graphs, enumerate_graphs

from conftest import make_pool, random_logits

pytestmark = pytest.mark.sanitize  # also run against the ASan/UBSan build

N_SAMPLES = 1_000_000


def _tiny_probgraph(seed: int) -> ProbGraph:
    pool = make_pool(params=(0.5, 2.0))
    return random_logits(ProbGraph.uniform(2, 2, pool.names), seed, scale=0.8)


def _keys(batch) -> np.ndarray:
    """One bytes key per graph, to match samples against the enumeration."""
    flat = np.concatenate([batch.model.reshape(len(batch), -1).view(np.uint8),
                           batch.role.reshape(len(batch), -1).view(np.uint8),
                           batch.edges.reshape(len(batch), -1)], axis=1)
    return np.ascontiguousarray(flat).view(np.dtype((np.void, flat.shape[1]))).ravel()


def _chi_square_p(observed_batch, all_graphs, probs) -> float:
    keys = _keys(all_graphs)
    order = np.argsort(keys)
    pos = np.searchsorted(keys[order], _keys(observed_batch))
    assert (keys[order][np.minimum(pos, len(keys) - 1)] == _keys(observed_batch)).all(), \
        "a sample is not a graph of the template"
    counts = np.bincount(order[pos], minlength=len(keys)).astype(float)
    expected = probs / probs.sum() * counts.sum()
    # pool rare graphs into one bin so the chi-square approximation holds
    rare = expected < 5
    obs = np.append(counts[~rare], counts[rare].sum())
    exp = np.append(expected[~rare], expected[rare].sum())
    return float(chisquare(obs, exp).pvalue)


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
    assert len(np.unique(_keys(batch))) == len(batch)


def test_log_prob_of_all_graphs_sums_to_one(backend):
    pg = _tiny_probgraph(0)
    logp = pg.log_prob(enumerate_graphs(2, 2, 2, 2))
    assert np.isfinite(logp).all()
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-9)


def test_sampled_log_prob_equals_log_prob_of_the_graph(backend):
    pg = _tiny_probgraph(1)
    batch, logp, _ = pg.sample(5000, seed=3)
    np.testing.assert_allclose(logp, pg.log_prob(batch), rtol=0, atol=1e-9)


@pytest.mark.slow
def test_empirical_frequencies_match_enumerated_probabilities(backend):
    pg = _tiny_probgraph(2)
    graphs = enumerate_graphs(2, 2, 2, 2)
    probs = np.exp(pg.log_prob(graphs))
    batch, _, stats = pg.sample(N_SAMPLES, seed=11)
    assert stats.acceptance_rate == 1.0
    assert _chi_square_p(batch, graphs, probs) > 1e-3


@pytest.mark.slow
def test_budget_conditioned_frequencies_match_renormalised_probabilities(backend):
    pg = _tiny_probgraph(3)
    pool = make_pool(params=(0.5, 2.0))
    cost = CostModel(pool, prompt_tokens=100.0, template_tokens=20.0)
    graphs = enumerate_graphs(2, 2, 2, 2)
    flops, _ = kernels.graph_cost(graphs, cost)
    budget = float(np.quantile(flops, 0.4))
    ok = flops <= budget
    assert 0 < ok.sum() < len(ok)
    probs = np.exp(pg.log_prob(graphs)) * ok
    batch, _, stats = pg.sample(N_SAMPLES, seed=12, budget=budget, cost=cost)
    assert kernels.feasible(batch, cost, budget).all()
    assert _chi_square_p(batch, graphs, probs) > 1e-3
    # the acceptance rate estimates the feasible mass
    assert stats.acceptance_rate == pytest.approx(probs.sum(), rel=0.01)


def test_log_prob_rejects_nothing_possible_and_gives_minus_inf_to_impossible(backend):
    pg = _tiny_probgraph(4)
    batch = enumerate_graphs(2, 2, 2, 2)
    bad_model = batch.model.copy()
    bad_model[:, 0, 0] = -1          # a gap at slot 0: never produced
    bad = type(batch)(bad_model, batch.role, batch.edges)
    assert np.isneginf(pg.log_prob(bad)).all()


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
