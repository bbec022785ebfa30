"""Agent-REINFORCE's update: how feedback moves the probabilistic graph, and the trust region
that bounds the move."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax
from test_search_fakes import toy_cost

from pytts import CollaborationGraph, ProbGraph
from pytts.search import TrustRegion, Update, move_toward


def _names():
    return toy_cost().pool.names


def _row_kls(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    lo, ln = log_softmax(old, axis=-1), log_softmax(new, axis=-1)
    return (np.exp(ln) * (ln - lo)).sum(axis=-1)


def _random_pg(seed: int, scale: float) -> ProbGraph:
    rng = np.random.default_rng(seed)
    pg = ProbGraph.uniform(3, 3, _names())
    return ProbGraph(*(rng.normal(scale=scale, size=a.shape) for a in pg.logit_arrays()),
                     model_names=pg.model_names)


@pytest.mark.parametrize("seed", range(5))
def test_trust_region_bounds_the_kl_of_every_distribution(seed):
    old, proposed = _random_pg(seed, 0.5), _random_pg(seed + 100, 4.0)
    trust = TrustRegion(max_kl=0.2, floor=0.0)
    new, kls = trust.apply(old, proposed)
    for a, b in zip(old.logit_arrays()[:4], new.logit_arrays()[:4]):
        k = _row_kls(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))
        assert k.max() <= 0.2 + 1e-6
    e_old, e_new = old.edge_logits.ravel(), new.edge_logits.ravel()
    bern = _row_kls(np.stack([0 * e_old, e_old], -1), np.stack([0 * e_new, e_new], -1))
    assert bern.max() <= 0.2 + 1e-6
    assert max(kls.values()) == pytest.approx(0.2, abs=1e-3)  # the big move was cut to the bound


def test_a_small_move_passes_the_trust_region_unchanged():
    old = _random_pg(0, 0.5)
    proposed = ProbGraph(*(a + 0.01 for a in old.logit_arrays()[:4]),
                         old.edge_logits + 0.01, model_names=old.model_names)
    new, _ = TrustRegion(max_kl=0.2, floor=0.0).apply(old, proposed)
    for a, b in zip(proposed.logit_arrays(), new.logit_arrays()):
        pa, pb = np.exp(log_softmax(a, -1)), np.exp(log_softmax(b, -1))
        assert np.allclose(pa, pb, atol=1e-9)


def test_trust_region_keeps_an_exploration_floor():
    pg = ProbGraph.uniform(3, 3, _names())
    peaked = ProbGraph(*(a * 0 + np.where(np.arange(a.shape[-1]) == 0, 50.0, -50.0)
                         for a in pg.logit_arrays()[:4]), pg.edge_logits + 50.0,
                       model_names=pg.model_names)
    new, _ = TrustRegion(max_kl=100.0, floor=0.1).apply(pg, peaked)
    assert new.depth_probs().min() >= 0.1 / 3 - 1e-12
    assert new.model_probs().min() >= 0.1 / 3 - 1e-12
    assert new.edge_probs().max() <= 1 - 0.05 + 1e-12


def test_move_toward_an_anchor_moves_depth_and_its_widths_jointly():
    names = _names()
    pg = ProbGraph.uniform(3, 3, names)
    model = np.full((3, 3), -1)
    model[0, :2], model[1, 0] = 2, 1
    edges = np.zeros((2, 3, 3))
    edges[0, 0, 0] = 1  # the second layer reads the first node only
    anchor = CollaborationGraph(model, np.zeros((3, 3)), edges, names)
    moved = move_toward(pg, Update(step_size=0.5, anchor=0), anchor)
    assert moved.depth_probs()[1] == pytest.approx(0.5 * 1 / 3 + 0.5)
    # the widths of depth 2 moved to (2, 1) ...
    assert moved.width_probs()[1, 0, 1] == pytest.approx(0.5 * 1 / 3 + 0.5)
    assert moved.width_probs()[1, 1, 0] == pytest.approx(0.5 * 1 / 3 + 0.5)
    # ... and the widths the other depths prefer did not
    assert np.allclose(moved.width_probs()[[0, 2]], pg.width_probs()[[0, 2]])
    # the anchor's slots moved toward its models, its edges toward present/absent
    assert moved.model_probs()[0, 0, 2] > 0.5 and moved.model_probs()[1, 0, 1] > 0.5
    assert np.allclose(moved.model_probs()[2], pg.model_probs()[2])
    assert moved.edge_probs()[0, 0, 0] == pytest.approx(0.75)
    assert moved.edge_probs()[0, 1, 0] == pytest.approx(0.25)
    assert moved.edge_probs()[0, 0, 1] == pytest.approx(0.5)  # no anchor node there


def test_move_toward_model_weights_and_an_explicit_region():
    names = _names()
    pg = ProbGraph.uniform(3, 3, names)
    update = Update(step_size=1.0, depth=3, widths=[1, 1, 1],
                    model_weights={"s": 0.0, "m": 1.0, "l": 3.0}, fuser_prob=1.0,
                    edge_density=0.0)
    moved = move_toward(pg, update, None)
    assert moved.depth_probs()[2] == pytest.approx(1.0)
    # the first-answer mix moves layer 0 only: later steps keep their own (here uniform) mix
    assert np.allclose(moved.model_probs()[0, :, 2], 0.75)
    assert np.allclose(moved.model_probs()[0, :, 0], 0.0, atol=1e-9)
    assert np.allclose(moved.model_probs()[1:], 1 / 3)
    assert np.allclose(np.exp(log_softmax(moved.role_logits, -1))[1:, :, 1], 1.0)
    assert moved.edge_probs().max() < 1e-6


def test_move_toward_gives_later_steps_their_own_model_mix():
    names = _names()
    pg = ProbGraph.uniform(3, 3, names)
    update = Update(step_size=1.0, model_weights={"s": 1.0, "m": 0.0, "l": 0.0},
                    later_model_weights={"s": 0.0, "m": 0.0, "l": 1.0})
    moved = move_toward(pg, update, None)
    assert np.allclose(moved.model_probs()[0, :, 0], 1.0)
    assert np.allclose(moved.model_probs()[1:, :, 2], 1.0)


def test_step_size_zero_changes_nothing():
    names = _names()
    pg = _random_pg(3, 1.0)
    anchor = CollaborationGraph.layered([[0]], names, template=(3, 3))
    moved = move_toward(pg, Update(step_size=0.0, anchor=0, model_weights={"s": 1.0}), anchor)
    for a, b in zip(pg.logit_arrays(), moved.logit_arrays()):
        assert np.allclose(np.exp(log_softmax(a, -1)), np.exp(log_softmax(b, -1)))


def test_reinforce_step_and_no_pilots_variants_stay_within_the_trust_region():
    from test_search_fakes import ToyEvaluator, make_searcher
    from test_search_searchers import drive

    plain = make_searcher("agent-reinforce", seed=1, template=(3, 3))
    mixed = make_searcher("agent-reinforce", seed=1, template=(3, 3))
    mixed.reinforce_lr = 0.5
    bare = make_searcher("agent-reinforce", seed=1, template=(3, 3))
    bare.use_pilots = False
    for s in (plain, mixed, bare):
        drive(s, ToyEvaluator(), 19)
        assert all(max(e["kl"].values()) <= s.trust.max_kl + 1e-6 for e in s.feedback_log)
    assert [e["kind"] for e in bare.feedback_log] == ["search"] * len(bare.feedback_log)
    assert bare.history[0].graph != plain.history[0].graph
    # same agent feedback, but the REINFORCE term moved the distribution differently
    assert not np.allclose(plain.probgraph.model_logits, mixed.probgraph.model_logits)


def test_prob_best_gives_the_floats_of_scipy_stats_norm():
    from scipy.stats import norm

    from pytts.search.agent import _prob_best
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(2, 8))
        mean, sd = rng.uniform(0, 1, k), rng.uniform(0.01, 0.3, k)
        grid = np.linspace((mean - 6 * sd).min(), (mean + 6 * sd).max(), 2001)
        pdf = norm.pdf(grid[None, :], mean[:, None], sd[:, None])
        log_cdf = np.log(np.maximum(norm.cdf(grid[None, :], mean[:, None], sd[:, None]), 1e-300))
        others = np.exp(log_cdf.sum(axis=0)[None, :] - log_cdf)
        p = np.maximum(np.trapezoid(pdf * others, grid, axis=1), 0.0)
        np.testing.assert_array_equal(_prob_best(mean, sd), p / p.sum())
