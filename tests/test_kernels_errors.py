"""Bad input to every kernel raises ValueError/BudgetError naming the argument; fuzzing finds
no crash and no silent garbage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytts import BudgetError, CostModel, GraphBatch, ProbGraph, kernels

from conftest import make_pool, random_logits

pytestmark = pytest.mark.sanitize  # also run against the ASan/UBSan build


@pytest.fixture
def setup():
    pool = make_pool()
    cost = CostModel(pool, prompt_tokens=100.0)
    pg = random_logits(ProbGraph.uniform(3, 4, pool.names), 0)
    batch, _, _ = pg.sample(20, seed=1)
    return pg, cost, batch


def _with(batch, **arrays):
    """A GraphBatch-like object carrying arbitrary arrays (bypasses GraphBatch's coercion)."""
    fake = object.__new__(GraphBatch)
    fake.model, fake.role, fake.edges = (arrays.get(k, getattr(batch, k))
                                         for k in ("model", "role", "edges"))
    return fake


@pytest.mark.parametrize("field, value, message", [
    ("model", lambda b: b.model.astype(np.int32), "batch.model must have dtype int16"),
    ("role", lambda b: b.role.astype(np.int64), "batch.role must have dtype int8"),
    ("edges", lambda b: b.edges.astype(bool), "batch.edges must have dtype uint8"),
    ("model", lambda b: b.model[0], "batch.model must be 3-D"),
    ("edges", lambda b: b.edges[:, :1], "disagree in shape"),
    ("model", lambda b: np.where(b.model == 0, 7, b.model).astype(np.int16), "outside the pool"),
    ("model", lambda b: np.where(b.model == -1, -2, b.model).astype(np.int16), "outside the pool"),
    ("role", lambda b: np.full_like(b.role, 5), "batch.role"),
    ("edges", lambda b: (b.edges * 3).astype(np.uint8), "batch.edges must hold only 0 and 1"),
    ("model", lambda b: b.model.tolist(), "batch.model must be a numpy array"),
])
def test_bad_batches_raise_value_error_naming_the_argument(backend, setup, field, value, message):
    pg, cost, batch = setup
    bad = _with(batch, **{field: value(batch)})
    for call in (lambda: kernels.graph_cost(bad, cost), lambda: kernels.log_prob(pg, bad),
                 lambda: kernels.grad_log_prob(pg, bad), lambda: kernels.feasible(bad, cost, 1e15)):
        with pytest.raises(ValueError, match=message):
            call()


def test_non_contiguous_arrays_are_accepted_correctly(backend, setup):
    pg, cost, batch = setup
    strided = _with(batch, model=np.asfortranarray(batch.model),
                    edges=np.asfortranarray(batch.edges))
    assert not strided.model.flags.c_contiguous
    np.testing.assert_array_equal(kernels.graph_cost(strided, cost)[0],
                                  kernels.graph_cost(batch, cost)[0])
    np.testing.assert_array_equal(kernels.log_prob(pg, strided), kernels.log_prob(pg, batch))
    ids = np.arange(40, dtype=np.int64).reshape(4, 10) % 3
    np.testing.assert_array_equal(kernels.vote(ids[:, ::2])[0],
                                  kernels.vote(np.ascontiguousarray(ids[:, ::2]))[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["depth_logits", "width_logits", "model_logits",
                                  "role_logits", "edge_logits"])
def test_non_finite_logits_are_rejected(backend, setup, name, bad):
    pg, cost, batch = setup
    getattr(pg, name).flat[0] = bad
    with pytest.raises(ValueError, match=f"probgraph.{name} holds NaN or inf"):
        kernels.sample_graphs(pg, 5, seed=0)
    with pytest.raises(ValueError, match=name):
        kernels.log_prob(pg, batch)


def test_sample_arguments_are_checked(backend, setup):
    pg, cost, batch = setup
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        kernels.sample_graphs(pg, -1, seed=0)
    with pytest.raises(ValueError, match="seed must be"):
        kernels.sample_graphs(pg, 1, seed=-5)
    with pytest.raises(ValueError, match="cost is required"):
        kernels.sample_graphs(pg, 1, seed=0, budget=1e12)
    batch0, logp0, stats0 = kernels.sample_graphs(pg, 0, seed=0)
    assert len(batch0) == 0 and logp0.shape == (0,)


def test_template_limits_are_enforced_at_the_kernel_boundary(backend):
    with pytest.raises(ValueError, match="depth must be in 1..16"):
        ProbGraph.uniform(17, 2, ["a"])
    with pytest.raises(ValueError, match="width must be in 1..64"):
        ProbGraph.uniform(2, 65, ["a"])
    big = _with(GraphBatch.empty(2, 2), model=np.zeros((1, 17, 2), np.int16),
                role=np.zeros((1, 17, 2), np.int8), edges=np.zeros((1, 16, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="exceeds the limits"):
        kernels.graph_cost(big, CostModel(make_pool(), 10))


def test_unreachable_budget_is_a_budget_error_not_a_loop(backend, setup):
    pg, cost, _ = setup
    with pytest.raises(BudgetError, match="below the cheapest graph"):
        kernels.sample_graphs(pg, 10, seed=0, budget=0.5 * cost.min_graph_flops(), cost=cost)
    # feasible only for a sliver of the distribution: hopeless within max_draws
    pg.depth_logits[:] = [-30, 0, 30]
    pg.model_logits[..., 0] = -30
    with pytest.raises(BudgetError, match="acceptance"):
        kernels.sample_graphs(pg, 10, seed=0, budget=1.01 * cost.min_graph_flops(), cost=cost,
                              max_draws=50_000)


def test_grad_of_an_impossible_graph_is_an_error(backend, setup):
    pg, cost, batch = setup
    model = batch.model.copy()
    model[3, 0, 0] = -1
    model[3, 0, 1:] = -1
    with pytest.raises(ValueError, match="graph 3 has probability (zero|0)"):
        kernels.grad_log_prob(pg, _with(batch, model=model))


def test_vote_rejects_bad_ids_and_weights(backend):
    ids = np.zeros((3, 4), np.int64)
    with pytest.raises(ValueError, match="ids must have dtype int64"):
        kernels.vote(ids.astype(np.int32))
    with pytest.raises(ValueError, match="ids must be >= -1"):
        kernels.vote(ids - 2)
    with pytest.raises(ValueError, match="weights must have the shape"):
        kernels.vote(ids, np.ones((3, 5)))
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        kernels.vote(ids, np.full((3, 4), -1.0))
    with pytest.raises(ValueError, match="weights must be finite"):
        kernels.vote(ids, np.full((3, 4), np.nan))


def test_intern_answers_rejects_non_strings(backend):
    with pytest.raises(ValueError, match=r"answers\[1\]"):
        kernels.intern_answers(["a", 3])
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
    arrays = {k: data.draw(hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=5,
                                                                max_side=5),
                                      elements={"allow_nan": True, "allow_infinity": True}
                                      if False else None))
              for k in ("model", "role", "edges")}
    fake = object.__new__(GraphBatch)
    fake.model, fake.role, fake.edges = arrays["model"], arrays["role"], arrays["edges"]
    d = data.draw(st.integers(1, 4))
    w = data.draw(st.integers(1, 4))
    pg = random_logits(ProbGraph.uniform(d, w, pool.names), data.draw(st.integers(0, 99)))
    for call in (lambda: kernels.graph_cost(fake, cost), lambda: kernels.log_prob(pg, fake),
                 lambda: kernels.grad_log_prob(pg, fake),
                 lambda: kernels.feasible(fake, cost, 1e14)):
        try:
            out = call()
        except ValueError:
            continue
        # accepted input: outputs have one finite-or-(-inf) value per graph
        first = out[0] if isinstance(out, tuple) else out
        if hasattr(first, "shape"):
            assert first.shape[0] == fake.model.shape[0]
            assert not np.isnan(first).any()
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
        batch, logp, _ = kernels.sample_graphs(pg, n, seed, budget=budget, cost=cost,
                                               max_draws=20_000)
    except (ValueError, BudgetError):
        pass
    else:
        assert len(batch) == n and np.isfinite(logp).all()
        assert kernels.feasible(batch, cost, budget).all()
