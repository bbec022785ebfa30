"""The boundary of the compiled module ``pytts._core``: every bad argument is a ValueError
naming it, no input crashes or reads out of bounds (this module also runs under ASan/UBSan, see
.ci/sanitize), and every accepted input gives the reference's answer. What the kernels compute
is tested on both backends elsewhere (test_kernels_agreement, test_kernels_sampling,
test_distribution).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from conftest import make_costs, make_logits, require_core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytts import _reference as ref

pytestmark = pytest.mark.sanitize

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def core():
    return require_core()


def _core():
    return require_core()


# ---------------------------------------------------------------- builders
def sample(core, logits, n=50, seed=1, budget=math.inf, costs=None, base=100.0):
    return core.sample_graphs(*logits, costs, base, n, seed, budget, 100 * n + 100)


@pytest.fixture(scope="module")
def setup(core):
    logits = make_logits(3, 4, 3, 2, seed=3)
    costs = make_costs(3)
    model, role, edges, logp, _ = sample(core, logits, n=30)
    return logits, costs, model, role, edges


LOGIT_NAMES = ["depth_logits", "width_logits", "model_logits", "role_logits", "edge_logits"]


def _calls(core, setup):
    """name -> (function, args as a dict) for every _core function, with valid arguments."""
    logits, costs, model, role, edges = setup
    lg = dict(zip(LOGIT_NAMES, logits))
    graphs = dict(model=model, role=role, edges=edges)
    return {
        "graph_cost": (core.graph_cost,
                       dict(**graphs, model_costs=costs, base_prompt_tokens=100.0)),
        "feasible": (core.feasible, dict(**graphs, model_costs=costs, base_prompt_tokens=100.0,
                                         budget=1e15)),
        "log_prob": (core.log_prob, dict(**lg, **graphs)),
        "grad_log_prob": (core.grad_log_prob, dict(**lg, **graphs,
                                                   weights=np.ones(len(model)))),
        "sample_graphs": (core.sample_graphs, dict(**lg, model_costs=costs,
                                                   base_prompt_tokens=100.0, n=5, seed=1,
                                                   budget=1e15, max_draws=1000)),
        "Sampler": (core.Sampler, dict(**lg)),
        "Sampler.sample": (core.Sampler(*logits).sample,
                           dict(model_costs=costs, base_prompt_tokens=100.0, n=5, seed=1,
                                budget=1e15, max_draws=1000)),
        "vote": (core.vote, dict(ids=np.zeros((3, 4), np.int64), weights=np.ones((3, 4)))),
        "canonical_order": (core.canonical_order, dict(**graphs)),
    }


def _array_args(core, setup):
    for fname, (_fn, kwargs) in _calls(core, setup).items():
        for arg, value in kwargs.items():
            if isinstance(value, np.ndarray):
                yield fname, arg


ARRAY_ARGS = [
    ("graph_cost", a) for a in ("model", "role", "edges", "model_costs")
] + [
    ("feasible", a) for a in ("model", "role", "edges", "model_costs")
] + [
    ("log_prob", a) for a in LOGIT_NAMES + ["model", "role", "edges"]
] + [
    ("grad_log_prob", a) for a in LOGIT_NAMES + ["model", "role", "edges", "weights"]
] + [
    ("sample_graphs", a) for a in LOGIT_NAMES + ["model_costs"]
] + [("Sampler", a) for a in LOGIT_NAMES] + [("Sampler.sample", "model_costs")] + [
    ("vote", "ids"), ("vote", "weights")] + [
    ("canonical_order", a) for a in ("model", "role", "edges")]


def _expect_value_error(fn, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fn(**kwargs)


# ---------------------------------------------------------------- boundary errors
def test_every_array_argument_is_listed(core, setup):
    assert sorted(_array_args(core, setup)) == sorted(ARRAY_ARGS)


@pytest.mark.parametrize("fname,arg", ARRAY_ARGS)
def test_wrong_dtype_is_a_value_error_naming_the_argument(core, setup, fname, arg):
    fn, kwargs = _calls(core, setup)[fname]
    value = kwargs[arg]
    other = np.float32 if value.dtype != np.float32 else np.float64
    _expect_value_error(fn, {**kwargs, arg: value.astype(other)}, arg)
    if value.dtype == np.int64:  # same kind, other width
        _expect_value_error(fn, {**kwargs, arg: value.astype(np.int32)}, arg)


@pytest.mark.parametrize("fname,arg", ARRAY_ARGS)
def test_non_array_is_a_value_error_naming_the_argument(core, setup, fname, arg):
    fn, kwargs = _calls(core, setup)[fname]
    _expect_value_error(fn, {**kwargs, arg: kwargs[arg].tolist()}, arg)


@pytest.mark.parametrize("fname,arg", ARRAY_ARGS)
def test_wrong_rank_is_a_value_error_naming_the_argument(core, setup, fname, arg):
    fn, kwargs = _calls(core, setup)[fname]
    _expect_value_error(fn, {**kwargs, arg: kwargs[arg][..., None]}, arg)


@pytest.mark.parametrize("fname,arg", ARRAY_ARGS)
def test_non_contiguous_is_a_value_error_naming_the_argument(core, setup, fname, arg):
    fn, kwargs = _calls(core, setup)[fname]
    value = kwargs[arg]
    doubled = np.repeat(value, 2, axis=-1)[..., ::2]  # same shape and values, strided
    assert doubled.shape == value.shape and not doubled.flags.c_contiguous
    _expect_value_error(fn, {**kwargs, arg: doubled}, arg)


def test_misaligned_array_is_a_value_error(core, setup):
    fn, kwargs = _calls(core, setup)["graph_cost"]
    costs = kwargs["model_costs"]
    buf = np.zeros(costs.nbytes + 1, np.uint8)
    misaligned = buf[1:].view(np.float64).reshape(costs.shape)
    misaligned[...] = costs
    assert not misaligned.flags.aligned
    _expect_value_error(fn, {**kwargs, "model_costs": misaligned}, "model_costs")


@pytest.mark.parametrize("fname,arg", ARRAY_ARGS)
def test_wrong_shape_is_a_value_error_naming_the_argument(core, setup, fname, arg):
    fn, kwargs = _calls(core, setup)[fname]
    value = kwargs[arg]
    # Grow an axis that other arguments pin down (model_costs: its 5 columns) by one: it
    # disagrees with them, or makes them disagree, and the message names one of them.
    axis = -1 if arg == "model_costs" else 0
    grown = np.concatenate([value, np.take(value, [0], axis=axis)], axis=axis)
    with pytest.raises(ValueError) as info:
        fn(**{**kwargs, arg: grown})
    assert any(name in str(info.value) for name in kwargs), info.value


@pytest.mark.parametrize("name,index,limit", [
    ("depth_logits", 0, 17), ("width_logits", 2, 65), ("model_logits", 2, 0),
    ("role_logits", 2, 0), ("role_logits", 2, 128)])
def test_template_limits_are_value_errors(core, name, index, limit):
    d, w, k, r = 2, 3, 2, 2
    dims = {"depth_logits": d, "width_logits": w, "model_logits": k, "role_logits": r}
    dims[name] = limit
    d, w, k, r = (dims["depth_logits"], dims["width_logits"], dims["model_logits"],
                  dims["role_logits"])
    logits = make_logits(d, w, k, r)
    with pytest.raises(ValueError, match=name):
        core.log_prob(*logits, np.zeros((0, d, w), np.int16), np.zeros((0, d, w), np.int8),
                      np.zeros((0, max(d - 1, 0), w, w), np.uint8))


def test_graph_template_limits_are_value_errors(core):
    costs = make_costs(2)
    for d, w in [(17, 2), (2, 65), (0, 2), (2, 0)]:
        with pytest.raises(ValueError, match="model"):
            core.graph_cost(np.zeros((1, d, w), np.int16), np.zeros((1, d, w), np.int8),
                            np.zeros((1, max(d - 1, 0), w, w), np.uint8), costs, 0.0)


@pytest.mark.parametrize("name", LOGIT_NAMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_are_value_errors_naming_the_array(core, setup, name, bad):
    for fname in ("log_prob", "grad_log_prob", "sample_graphs", "Sampler"):
        fn, kwargs = _calls(core, setup)[fname]
        value = kwargs[name].copy()
        if value.size == 0:
            continue
        value.reshape(-1)[-1] = bad
        _expect_value_error(fn, {**kwargs, name: value}, name)


@pytest.mark.parametrize("column,bad", [(0, -1.0), (1, -0.5), (2, 0.0), (3, -1.0), (4, -1e-9),
                                        (0, np.nan), (2, np.inf)])
def test_bad_model_costs_are_value_errors(core, setup, column, bad):
    for fname in ("graph_cost", "feasible", "sample_graphs", "Sampler.sample"):
        fn, kwargs = _calls(core, setup)[fname]
        costs = kwargs["model_costs"].copy()
        costs[1, column] = bad
        _expect_value_error(fn, {**kwargs, "model_costs": costs}, rf"model_costs\[1, {column}\]")


@pytest.mark.parametrize("arg,value", [("model", 3), ("model", -2), ("role", 2), ("role", -1),
                                       ("edges", 2), ("edges", 255)])
def test_out_of_range_graph_values_are_value_errors(core, setup, arg, value):
    calls = _calls(core, setup)
    names = ["log_prob", "grad_log_prob"] + (["graph_cost", "feasible"] if arg != "role" else [])
    for fname in names:
        fn, kwargs = calls[fname]
        arr = kwargs[arg].copy()
        arr.reshape(-1)[7] = value
        _expect_value_error(fn, {**kwargs, arg: arr}, arg)


def test_graph_cost_ignores_role_values(core, setup):
    fn, kwargs = _calls(core, setup)["graph_cost"]
    role = np.full_like(kwargs["role"], 100)
    for a, b in zip(fn(**kwargs), fn(**{**kwargs, "role": role})):
        np.testing.assert_array_equal(a, b)


def test_error_message_names_the_position(core, setup):
    fn, kwargs = _calls(core, setup)["graph_cost"]
    model = kwargs["model"].copy()
    model[4, 1, 2] = 9
    with pytest.raises(ValueError, match=r"model\[4, 1, 2\] = 9"):
        fn(**{**kwargs, "model": model})


@pytest.mark.parametrize("fname,arg,value", [
    ("graph_cost", "base_prompt_tokens", math.nan), ("graph_cost", "base_prompt_tokens", -1.0),
    ("graph_cost", "base_prompt_tokens", "100"), ("feasible", "budget", math.nan),
    ("feasible", "budget", None), ("sample_graphs", "n", -1), ("sample_graphs", "n", 2.5),
    ("sample_graphs", "seed", -1), ("sample_graphs", "seed", 2**64),
    ("sample_graphs", "seed", "7"), ("sample_graphs", "budget", math.nan),
    ("sample_graphs", "max_draws", -5), ("sample_graphs", "base_prompt_tokens", math.inf),
    ("Sampler.sample", "n", -1), ("Sampler.sample", "seed", 2**64),
    ("Sampler.sample", "budget", math.nan), ("Sampler.sample", "max_draws", -5),
])
def test_bad_scalars_are_value_errors_naming_them(core, setup, fname, arg, value):
    fn, kwargs = _calls(core, setup)[fname]
    _expect_value_error(fn, {**kwargs, arg: value}, arg)


def test_finite_budget_needs_model_costs(core, setup):
    for fname in ("sample_graphs", "Sampler.sample"):
        fn, kwargs = _calls(core, setup)[fname]
        _expect_value_error(fn, {**kwargs, "model_costs": None}, "model_costs")


def test_model_costs_with_fewer_rows_than_models_are_rejected(core, setup):
    fn, kwargs = _calls(core, setup)["sample_graphs"]
    _expect_value_error(fn, {**kwargs, "model_costs": kwargs["model_costs"][:2].copy()},
                        "model_costs")


def test_impossible_graph_in_grad_is_a_value_error_naming_its_index(core, setup):
    fn, kwargs = _calls(core, setup)["grad_log_prob"]
    model = kwargs["model"].copy()
    model[3] = -1  # empty graph: probability 0
    with pytest.raises(ValueError, match="graph 3"):
        fn(**{**kwargs, "model": model})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_grad_weights_are_value_errors(core, setup, bad):
    fn, kwargs = _calls(core, setup)["grad_log_prob"]
    weights = kwargs["weights"].copy()
    weights[2] = bad
    _expect_value_error(fn, {**kwargs, "weights": weights}, r"weights\[2\]")


def test_negative_grad_weights_are_advantages_not_errors(core, setup):
    fn, kwargs = _calls(core, setup)["grad_log_prob"]
    pos = fn(**kwargs)
    neg = fn(**{**kwargs, "weights": -kwargs["weights"]})
    for a, b in zip(pos, neg):
        np.testing.assert_allclose(a, -b, atol=1e-12)


@pytest.mark.parametrize("ids_value,weight_value,arg", [
    (-2, 1.0, "ids"), (3, -1.0, "weights"), (3, np.nan, "weights"), (3, np.inf, "weights")])
def test_vote_rejects_bad_values_naming_them(core, ids_value, weight_value, arg):
    ids = np.zeros((3, 4), np.int64)
    weights = np.ones((3, 4))
    ids[1, 2] = ids_value
    weights[1, 2] = weight_value
    with pytest.raises(ValueError, match=rf"{arg}\[1, 2\]"):
        core.vote(ids, weights)


def test_intern_answers_rejects_non_strings_naming_the_index(core):
    with pytest.raises(ValueError, match=r"answers\[2\]"):
        core.intern_answers(["a", None, 3])
    with pytest.raises(ValueError, match="answers"):
        core.intern_answers("abc")
    with pytest.raises(ValueError, match="answers"):
        core.intern_answers(7)


def test_intern_answers_takes_any_sequence_and_lone_surrogates(core):
    answers = ["42", "\u00e9t\u00e9", "x\ud800y", None, ""]
    expected = ref.intern_answers(answers)
    np.testing.assert_array_equal(core.intern_answers(answers), expected)
    np.testing.assert_array_equal(core.intern_answers(tuple(answers)), expected)


def test_empty_inputs_give_empty_outputs(core, setup):
    logits, costs, model, role, edges = setup
    e = (model[:0], role[:0], edges[:0])
    assert core.graph_cost(*e, costs, 0.0)[0].shape == (0,)
    assert core.feasible(*e, costs, 0.0, 1.0).shape == (0,)
    assert core.log_prob(*logits, *e).shape == (0,)
    grads = core.grad_log_prob(*logits, *e, np.zeros(0))
    assert all((g == 0).all() and g.shape == x.shape for g, x in zip(grads, logits))
    out = core.sample_graphs(*logits, None, 0.0, 0, 1, math.inf, 10)
    assert out[0].shape == (0,) + model.shape[1:] and out[4] == 0
    winner, support = core.vote(np.zeros((0, 5), np.int64), None)
    assert winner.shape == support.shape == (0,)
    winner, support = core.vote(np.zeros((2, 0), np.int64), None)
    np.testing.assert_array_equal(winner, [-1, -1])
    assert core.intern_answers([]).shape == (0,)


# ---------------------------------------------------------------- fuzz: garbage in, ValueError out
DTYPES = [np.float64, np.float32, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_]


@st.composite
def arrays(draw, want_dtype, shape):
    """Mostly the right dtype and shape, sometimes not; values from a wide range."""
    dtype = want_dtype if draw(st.integers(0, 5)) else draw(st.sampled_from(DTYPES))
    if draw(st.integers(0, 6)) == 0:
        shape = tuple(max(0, s + draw(st.integers(-1, 1))) for s in shape)
    if draw(st.integers(0, 12)) == 0:
        shape = shape + (1,)
    size = int(np.prod(shape))
    if np.issubdtype(dtype, np.floating):
        values = draw(st.lists(st.one_of(st.floats(-30, 30), st.floats(allow_nan=True,
                                                                         allow_infinity=True)),
                               min_size=size, max_size=size))
        with np.errstate(over="ignore", invalid="ignore"):
            arr = np.array(values, dtype=np.float64).astype(dtype)
    elif dtype == np.bool_:
        arr = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)), dtype)
    else:
        info = np.iinfo(dtype)
        small = st.integers(max(info.min, -3), min(info.max, 6))
        values = draw(st.lists(st.one_of(small, st.integers(info.min, info.max)),
                               min_size=size, max_size=size))
        arr = np.array(values, dtype=dtype)
    arr = arr.reshape(shape)
    if draw(st.integers(0, 10)) == 0 and arr.ndim and arr.shape[-1] > 1:
        arr = np.repeat(arr, 2, axis=-1)[..., ::2]  # not contiguous
    return arr


@st.composite
def kernel_calls(draw):
    d = draw(st.integers(0, 4))
    w = draw(st.integers(0, 4))
    k = draw(st.integers(0, 4))
    r = draw(st.integers(0, 3))
    b = draw(st.integers(0, 6))
    de = max(d - 1, 0)
    logits = [draw(arrays(np.float64, s)) for s in [(d,), (d, d, w), (d, w, k), (d, w, r),
                                                   (de, w, w)]]
    graphs = [draw(arrays(np.int16, (b, d, w))), draw(arrays(np.int8, (b, d, w))),
              draw(arrays(np.uint8, (b, de, w, w)))]
    costs = draw(arrays(np.float64, (k, 5)))
    if costs.ndim == 2 and costs.shape[1] == 5 and draw(st.booleans()):
        costs = np.abs(costs) + 1.0  # often valid, to get past the cost checks
    scalar = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**6),
                       st.just("x"), st.none())
    base = draw(st.one_of(st.floats(0, 1000), scalar))
    budget = draw(st.one_of(st.floats(0, 1e16), st.just(math.inf), scalar))
    which = draw(st.sampled_from(["graph_cost", "feasible", "log_prob", "grad_log_prob",
                                  "sample_graphs", "vote", "intern_answers",
                                  "canonical_order", "extract_final_answer",
                                  "extract_number"]))
    if which == "graph_cost":
        return which, (*graphs, costs, base)
    if which == "feasible":
        return which, (*graphs, costs, base, budget)
    if which == "log_prob":
        return which, (*logits, *graphs)
    if which == "grad_log_prob":
        return which, (*logits, *graphs, draw(arrays(np.float64, (b,))))
    if which == "sample_graphs":
        n = draw(st.one_of(st.integers(0, 20), scalar))
        seed = draw(st.one_of(st.integers(0, 2**64 - 1), scalar))
        draws = draw(st.one_of(st.integers(0, 200), scalar))
        return which, (*logits, draw(st.one_of(st.none(), st.just(costs))), base, n, seed,
                       budget, draws)
    if which == "canonical_order":
        return which, tuple(graphs)
    if which.startswith("extract"):
        return which, (draw(st.one_of(st.text(), st.text("the answer is 0123456789,.-:($*"),
                                      st.integers(), st.binary(), st.none())),)
    if which == "vote":
        ids = draw(arrays(np.int64, (b, w)))
        return which, (ids, draw(st.one_of(st.none(), arrays(np.float64, (b, w)))))
    answers = draw(st.lists(st.one_of(st.none(), st.text(max_size=5), st.integers(),
                                      st.binary(max_size=3)), max_size=6))
    return which, (answers,)


@given(kernel_calls())
@settings(max_examples=int(os.environ.get("PYTTS_FUZZ_EXAMPLES", "600")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_fuzz_every_function_raises_value_error_or_answers_like_the_reference(call):
    core = _core()
    which, args = call
    try:
        out = getattr(core, which)(*args)
    except ValueError as exc:
        assert str(exc)
        return
    # Accepted: then the inputs were valid, and the reference agrees.
    if which == "sample_graphs":
        model, role, edges, logp, n_drawn = out
        np.testing.assert_array_equal(logp, core.log_prob(*args[:5], model, role, edges))
        if len(model) and math.isfinite(float(args[9])):
            assert core.feasible(model, role, edges, args[5], args[6], args[9]).all()
        return
    if which == "vote" and args[0].shape[1] == 0:  # the reference needs a non-empty row
        np.testing.assert_array_equal(out[0], -1)
        np.testing.assert_array_equal(out[1], 0.0)
        return
    expected = getattr(ref, which)(*args)
    if which == "log_prob":
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-11)
    elif which == "grad_log_prob":
        for g, e in zip(out, expected):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)
    elif isinstance(out, tuple):
        for o, e in zip(out, expected):
            np.testing.assert_array_equal(o, e)
    else:
        np.testing.assert_array_equal(out, expected)
