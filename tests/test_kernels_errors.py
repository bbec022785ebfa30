"""The kernels' Python face (`pytts.kernels`), on both backends: bad input raises
ValueError/BudgetError naming the argument; fuzzing finds no crash and no silent garbage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_pool, random_logits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytts import BudgetError, CostModel, GraphBatch, ProbGraph, kernels

pytestmark = pytest.mark.sanitize  # also run against the ASan/UBSan build


@pytest.fixture
def setup():
    pool = make_pool()
    cost = CostModel(pool, prompt_tokens=100.0)
    pg = random_logits(ProbGraph.uniform(3, 4, pool.names), 0)
    batch, _, _ = pg.sample(20, seed=1)
    arrays = {"model": batch.model.copy(), "role": batch.role.copy(),
              "edges": batch.edges.copy()}
    return pg, cost, kernels.Logits(*pg.logit_arrays()), arrays


def _graph_calls(logits, cost, arrays):
    """Every kernel that reads graph arrays, with valid other arguments."""
    m, r, e = arrays["model"], arrays["role"], arrays["edges"]
    return {"graph_cost": lambda: kernels.graph_cost(m, r, e, cost.table),
            "feasible": lambda: kernels.feasible(m, r, e, cost.table, 1e15),
            "log_prob": lambda: kernels.log_prob(logits, m, r, e),
            "grad_log_prob": lambda: kernels.grad_log_prob(logits, m, r, e)}


ALL = ("graph_cost", "feasible", "log_prob", "grad_log_prob")
SCORED = ("log_prob", "grad_log_prob")  # the kernels that read role values


@pytest.mark.parametrize("field, value, message, calls", [
    ("model", lambda a: a.astype(np.int32), "model must have dtype int16, got int32", ALL),
    ("role", lambda a: a.astype(np.int64), "role must have dtype int8", ALL),
    ("edges", lambda a: a.astype(bool), "edges must have dtype uint8", ALL),
    ("model", lambda a: a[0], r"model must be 3-D \(B, D, W\)", ALL),
    ("edges", lambda a: a[:, :1], r"edges must have shape \(B, D-1, W, W\) = \(20, 2, 4, 4\)",
     ALL),
    ("model", lambda a: np.where(a == 0, 7, a).astype(np.int16),
     r"model\[\d+, \d+, \d+\] = 7 is invalid: model must be a model index in \[0, K\)", ALL),
    ("model", lambda a: np.where(a == -1, -2, a).astype(np.int16), r"model\[.*\] = -2", ALL),
    ("role", lambda a: np.full_like(a, 5), r"role\[0, 0, 0\] = 5 is invalid: role must be a role "
                                           r"in \[0, R\) \(R = 2\)", SCORED),
    ("edges", lambda a: (a * 3).astype(np.uint8), r"edges\[.*\] = 3 is invalid: edges must be 0 "
                                                  "or 1", ALL),
    ("model", lambda a: a.tolist(), "model must be a numpy array of int16, got list", ALL),
])
def test_bad_graph_arrays_raise_value_error_naming_the_argument(backend, setup, field, value,
                                                                message, calls):
    pg, cost, logits, arrays = setup
    bad = {**arrays, field: value(arrays[field])}
    for name, call in _graph_calls(logits, cost, bad).items():
        if name in calls:
            with pytest.raises(ValueError, match=message):
                call()


def test_graph_arrays_must_match_the_logits_template(backend, setup):
    pg, cost, _, arrays = setup
    other = kernels.Logits(*ProbGraph.uniform(3, 5, pg.model_names).logit_arrays())
    with pytest.raises(ValueError, match=r"model must have shape \(B, D, W\) = \(20, 3, 5\)"):
        kernels.log_prob(other, *arrays.values())


def test_non_contiguous_arrays_are_accepted_correctly(backend, setup):
    pg, cost, logits, arrays = setup
    m, r, e = arrays.values()
    fm, fe = np.asfortranarray(m), np.asfortranarray(e)
    assert not fm.flags.c_contiguous
    np.testing.assert_array_equal(kernels.graph_cost(fm, r, fe, cost.table)[0],
                                  kernels.graph_cost(m, r, e, cost.table)[0])
    np.testing.assert_array_equal(kernels.log_prob(logits, fm, r, fe),
                                  kernels.log_prob(logits, m, r, e))
    ids = np.arange(40, dtype=np.int64).reshape(4, 10) % 3
    np.testing.assert_array_equal(kernels.vote(ids[:, ::2])[0],
                                  kernels.vote(np.ascontiguousarray(ids[:, ::2]))[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", kernels.LOGIT_NAMES)
def test_non_finite_logits_are_rejected_naming_the_array(backend, setup, name, bad):
    pg, cost, _, arrays = setup
    getattr(pg, name).flat[0] = bad  # in place: the probgraph's cached logits must notice
    message = rf"{name}\[0(, 0)*\] = {bad} is invalid: {name} must be finite"
    with pytest.raises(ValueError, match=message):
        pg.sample(5, seed=0)
    with pytest.raises(ValueError, match=message):
        pg.log_prob(GraphBatch(*arrays.values()))
    with pytest.raises(ValueError, match=message):
        kernels.Logits(*pg.logit_arrays())


def test_logit_shapes_and_limits_are_checked(backend):
    d, w, k, r = 2, 3, 2, 2
    ok = [np.zeros(d), np.zeros((d, d, w)), np.zeros((d, w, k)), np.zeros((d, w, r)),
          np.zeros((d - 1, w, w))]
    with pytest.raises(ValueError, match=r"width_logits must have shape \(D, D, W\) = \(2, 2, 3\)"):
        kernels.Logits(ok[0], np.zeros((3, 2, 3)), *ok[2:])
    with pytest.raises(ValueError, match=r"depth_logits: depth D \(depth_logits.shape\[0\]\) = 17 "
                                         r"is outside \[1, 16\]"):
        kernels.Logits(np.zeros(17), *ok[1:])
    with pytest.raises(ValueError, match=r"model_logits: number of models K .* = 0"):
        kernels.Logits(*ok[:2], np.zeros((d, w, 0)), *ok[3:])
    with pytest.raises(ValueError, match=r"role_logits: number of roles R .* = 128 .*\[1, 127\]"):
        kernels.Logits(*ok[:3], np.zeros((d, w, 128)), ok[4])


def test_sample_arguments_are_checked(backend, setup):
    pg, cost, logits, _ = setup
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        kernels.sample_graphs(logits, -1, seed=0)
    with pytest.raises(ValueError, match="n must be an integer"):
        kernels.sample_graphs(logits, 2.0, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, "):
        kernels.sample_graphs(logits, 1, seed=-5)
    with pytest.raises(ValueError, match="seed must be"):
        kernels.sample_graphs(logits, 1, seed=2**64)
    with pytest.raises(ValueError, match="budget must be a number of FLOPs"):
        kernels.sample_graphs(logits, 1, 0, cost.table, math.nan)
    with pytest.raises(ValueError, match="max_draws must be an integer >= 1"):
        kernels.sample_graphs(logits, 1, 0, max_draws=0)
    with pytest.raises(ValueError, match="costs .* is required when the budget is finite"):
        kernels.sample_graphs(logits, 1, seed=0, budget=1e12)
    with pytest.raises(ValueError, match="cost is required when a budget is given"):
        pg.sample(1, seed=0, budget=1e12)
    small = CostModel(make_pool(params=(1.0, 2.0)), 10.0)
    with pytest.raises(ValueError, match="costs cover 2 models, the logits 3"):
        kernels.sample_graphs(logits, 1, 0, small.table)
    *graphs, logp, stats = kernels.sample_graphs(logits, 0, seed=0)
    assert [len(a) for a in graphs] == [0, 0, 0] and logp.shape == (0,) and stats.n_drawn == 0


@pytest.mark.parametrize("column,value", [(0, -1.0), (2, 0.0), (3, -1.0), (4, np.nan), (1, np.inf)])
def test_bad_cost_tables_are_rejected_naming_the_entry(column, value):
    table = CostModel(make_pool(), 10.0).table.model_costs.copy()
    table[1, column] = value
    with pytest.raises(ValueError, match=rf"model_costs\[1, {column}\] = {value} is invalid"):
        kernels.CostTable(table, 10.0)
    with pytest.raises(ValueError, match=r"model_costs must have shape \(K, 5\)"):
        kernels.CostTable(np.ones((3, 4)), 10.0)
    with pytest.raises(ValueError, match="base_prompt_tokens must be finite and >= 0"):
        kernels.CostTable(np.ones((3, 5)), -1.0)


def test_graph_template_limits_are_enforced(backend):
    cost = CostModel(make_pool(), 10)
    big = (np.zeros((1, 17, 2), np.int16), np.zeros((1, 17, 2), np.int8),
           np.zeros((1, 16, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"model: depth D \(model.shape\[1\]\) = 17 is outside "
                                         r"\[1, 16\]"):
        kernels.graph_cost(*big, cost.table)
    with pytest.raises(ValueError, match="depth must be in 1..16"):
        ProbGraph.uniform(17, 2, ["a"])
    with pytest.raises(ValueError, match="width must be in 1..64"):
        ProbGraph.uniform(2, 65, ["a"])


def test_unreachable_budget_is_a_budget_error_not_a_loop(backend, setup):
    pg, cost, _, _ = setup
    with pytest.raises(BudgetError, match="below the cheapest graph"):
        pg.sample(10, seed=0, budget=0.5 * cost.min_graph_flops(), cost=cost)
    # feasible only for a sliver of the distribution: hopeless within max_draws
    pg.depth_logits[:] = [-30, 0, 30]
    pg.model_logits[..., 0] = -30
    with pytest.raises(BudgetError, match="acceptance"):
        pg.sample(10, seed=0, budget=1.01 * cost.min_graph_flops(), cost=cost, max_draws=50_000)


def test_grad_of_an_impossible_graph_is_an_error(backend, setup):
    pg, cost, logits, arrays = setup
    model = arrays["model"].copy()
    model[3] = -1
    with pytest.raises(ValueError, match="graph 3 has probability (zero|0)"):
        kernels.grad_log_prob(logits, model, arrays["role"], arrays["edges"])
    with pytest.raises(ValueError, match=r"weights must have shape \(B,\) = \(20,\)"):
        kernels.grad_log_prob(logits, *arrays.values(), np.ones(3))
    with pytest.raises(ValueError, match=r"weights\[2\] = nan is invalid: weights must be finite"):
        kernels.grad_log_prob(logits, *arrays.values(), np.where(np.arange(20) == 2, np.nan, 1.0))


def test_vote_rejects_bad_ids_and_weights(backend):
    ids = np.zeros((3, 4), np.int64)
    with pytest.raises(ValueError, match="ids must have dtype int64"):
        kernels.vote(ids.astype(np.int32))
    with pytest.raises(ValueError, match=r"ids\[0, 0\] = -2 is invalid: ids must be >= 0, or -1"):
        kernels.vote(ids - 2)
    with pytest.raises(ValueError, match=r"weights must have shape \(Q, N\) = \(3, 4\)"):
        kernels.vote(ids, np.ones((3, 5)))
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        kernels.vote(ids, np.full((3, 4), -1.0))
    with pytest.raises(ValueError, match="weights must be finite"):
        kernels.vote(ids, np.full((3, 4), np.nan))


def test_intern_answers_rejects_non_strings(backend):
    with pytest.raises(ValueError, match=r"answers\[1\]"):
        kernels.intern_answers(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not a single string"):
        kernels.intern_answers("abc")


_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
_dtypes = st.sampled_from([np.int8, np.uint8, np.int16, np.int32, np.int64, np.float64])


@given(data=st.data())
@_FUZZ
def test_fuzz_every_kernel_raises_or_answers_sanely(backend, data):
    pool = make_pool()
    cost = CostModel(pool, prompt_tokens=50.0)
    arrays = [data.draw(hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=5,
                                                             max_side=5)))
              for _ in ("model", "role", "edges")]
    d = data.draw(st.integers(1, 4))
    w = data.draw(st.integers(1, 4))
    pg = random_logits(ProbGraph.uniform(d, w, pool.names), data.draw(st.integers(0, 99)))
    logits = kernels.Logits(*pg.logit_arrays())
    per_graph = (lambda: kernels.graph_cost(*arrays, cost.table)[0],
                 lambda: kernels.log_prob(logits, *arrays),
                 lambda: kernels.feasible(*arrays, cost.table, 1e14))
    for call in per_graph:
        try:
            out = call()
        except ValueError:
            continue
        # accepted input: one finite-or-(-inf) value per graph
        assert out.shape == (arrays[0].shape[0],) and not np.isnan(out).any()
    try:
        grads = kernels.grad_log_prob(logits, *arrays)
    except ValueError:
        pass
    else:
        assert all(g.shape == a.shape and np.isfinite(g).all()
                   for g, a in zip(grads, logits.arrays))
    ids = data.draw(hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))
    try:
        winner, support = kernels.vote(ids)
    except ValueError:
        pass
    else:
        assert winner.shape == (ids.shape[0],) and (support >= 0).all()
        assert np.isin(winner, np.append(ids, -1)).all()
    n = data.draw(st.integers(-3, 50))
    seed = data.draw(st.integers(-3, 2**64 + 3))
    budget = data.draw(st.floats(allow_nan=True, allow_infinity=True))
    try:
        model, role, edges, logp, _ = kernels.sample_graphs(logits, n, seed, cost.table, budget,
                                                            max_draws=20_000)
    except (ValueError, BudgetError):
        pass
    else:
        assert len(model) == n and np.isfinite(logp).all()
        assert kernels.feasible(model, role, edges, cost.table, budget).all()
