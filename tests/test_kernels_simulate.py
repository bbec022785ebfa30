"""The simulator's latent-code kernel: the C++ kernel and its NumPy twin give identical bits, its
arguments are checked, its draws are keyed (common random numbers) and its codes follow the
latent model."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import require_core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytts.graph import FUSER, MAX_WIDTH, CollaborationGraph
from pytts.sim import PRESETS, SimulatedPool, kernel, simulate_reference
from pytts.sim.draws import OUTCOME_BITS, fold, mix64, outcome_field, run_bits
from pytts.sim.latent import CORRECT, MISSING, NOISE_BASE, Thresholds
from pytts.sim.task import question_keys

pytestmark = pytest.mark.sanitize  # also run against the ASan/UBSan build

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = PRESETS["math-like"].model_names


@st.composite
def graphs(draw, depth: int, width: int) -> CollaborationGraph:
    """A random valid graph on a depth x width template: random models, roles and inputs."""
    n_layers = draw(st.integers(1, depth))
    widths = [draw(st.integers(1, width)) for _ in range(n_layers)]
    model = np.full((depth, width), -1, np.int16)
    role = np.zeros((depth, width), np.int8)
    edges = np.zeros((depth - 1, width, width), np.uint8)
    for layer, w in enumerate(widths):
        model[layer, :w] = draw(st.lists(st.integers(0, len(NAMES) - 1), min_size=w, max_size=w))
        if layer:
            role[layer, :w] = draw(st.lists(st.integers(0, 1), min_size=w, max_size=w))
            for slot in range(w):
                preds = draw(st.sets(st.integers(0, widths[layer - 1] - 1), min_size=1))
                edges[layer - 1, sorted(preds), slot] = 1
    return CollaborationGraph(model, role, edges, NAMES)


@st.composite
def cases(draw, long_runs: bool = False):
    """Random graphs, preset, questions, samples and seed, as kernel arguments; ``long_runs``
    draws hundreds of consecutive sample numbers instead of a few arbitrary ones."""
    depth, width = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    batch = draw(st.lists(graphs(depth, width), min_size=1, max_size=4))
    preset = PRESETS[draw(st.sampled_from(sorted(PRESETS)))]
    sim = SimulatedPool(preset)
    questions = sim.task(draw(st.integers(1, 6)), split=draw(st.sampled_from(["dev", "test"])),
                         seed=draw(st.integers(0, 3))).questions
    names = sim.pool.names
    batch = [CollaborationGraph(g.model.clip(max=len(names) - 1), g.role, g.edges, names)
             for g in batch]
    sim_graphs = kernel.SimGraphs.of(batch, names)
    th = Thresholds.of(preset, questions, sim_graphs.max_fuser_inputs)
    if long_runs:
        samples = np.arange(draw(st.integers(1, 700)), dtype=np.uint64) + np.uint64(
            draw(st.integers(0, 2**32)))
    else:
        samples = np.array(draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=6)),
                           np.uint64)
    seed = draw(st.integers(0, 2**64 - 1))
    return kernel.kernel_arguments(sim_graphs, th, question_keys(questions), samples, seed)


@given(cases())
@SETTINGS
def test_the_kernel_and_its_numpy_twin_give_identical_bits(args):
    core = require_core()
    graph_arrays = args[:3]
    np.testing.assert_array_equal(core.sim_node_keys(*graph_arrays),
                                  simulate_reference.sim_node_keys(*graph_arrays))
    codes, winner = core.sim_runs(*args)
    ref_codes, ref_winner = simulate_reference.sim_runs(*args)
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(winner, ref_winner)
    for lone in (False, True):
        for got, want in zip(core.sim_expect(*args, lone), simulate_reference.sim_expect(*args,
                                                                                         lone)):
            np.testing.assert_array_equal(got, want)


@given(cases(), st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None)
def test_corrupted_arguments_raise_value_errors_never_crash(args, seed):
    core = require_core()
    rng = np.random.default_rng(seed)
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    b, d, w = args[0].shape
    choice = rng.integers(5)
    if choice == 0:
        args[0][rng.integers(b), rng.integers(d), rng.integers(w)] = rng.integers(-3, 40)
    elif choice == 1:
        args[1][rng.integers(b), rng.integers(d), rng.integers(w)] = rng.integers(-2, 4)
    elif choice == 2 and d > 1:
        args[2][rng.integers(b), rng.integers(d - 1), rng.integers(w), rng.integers(w)] = \
            rng.integers(0, 3)
    elif choice == 3:
        args[4][rng.integers(b), rng.integers(d * w)] = rng.integers(-1, d * w + 3)
    else:
        args[7] = args[7][:, :, :1].copy()  # pick covers only one-input fusers
    try:
        codes, winner = core.sim_runs(*args)
    except ValueError as exc:
        assert any(name in str(exc) for name in ("model", "role", "edges", "sinks", "inputs"))
    else:
        assert codes.shape[:3] == winner.shape
    try:
        core.sim_expect(*args, True)
    except ValueError:
        pass


@given(cases(long_runs=True))
@settings(max_examples=25, deadline=None)
def test_the_twins_agree_on_runs_that_fill_vectors_and_blocks(args):
    # Hundreds of samples reach the kernel's vector loops, their scalar tails and its
    # 512-sample blocks; a lone sink's inputs are drawn by class only there.
    core = require_core()
    for lone in (False, True):
        for got, want in zip(core.sim_expect(*args, lone), simulate_reference.sim_expect(*args,
                                                                                         lone)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("layers, roles", [
    ([[0, 1, 2, 3], [4]], [[0] * 4, [0]]),                   # a lone refiner over four attempts
    ([[0, 1, 2], [4, 5], [5]], [[0] * 3, [0, 0], [1]]),       # refiners feeding a lone fuser
    ([[0, 1, 2, 3], [4, 5], [5]], [[0] * 4, [1, 0], [0]]),    # fuser and refiner, lone refiner
    ([[0, 1, 2, 3, 4, 5], [3], [5]], [[0] * 6, [1], [1]]),    # a fuser of six (a wide table)
])
def test_the_twins_agree_on_every_kind_of_lone_sink(layers, roles):
    # A lone sink's ancestors that only feed counts are drawn by class, the others exactly:
    # these graphs put refiners of several inputs (whose check reads a plurality of exact codes)
    # under fusers and refiners, over enough samples to meet every tie.
    core = require_core()
    sim = SimulatedPool("math-like")
    questions = sim.task(8).questions
    graph = CollaborationGraph.layered(layers, sim.pool.names, roles=roles)
    sim_graphs = kernel.SimGraphs.of([graph], sim.pool.names)
    args = kernel.kernel_arguments(sim_graphs, Thresholds.of(sim.preset, questions, 6),
                                   question_keys(questions), np.arange(2000), 7)
    for got, want in zip(core.sim_expect(*args, True), simulate_reference.sim_expect(*args, True)):
        np.testing.assert_array_equal(got, want)


def _one(graph, th, questions, samples=(0,), seed=0):
    sim_graphs = kernel.SimGraphs.of([graph], NAMES)
    return kernel.run_codes(sim_graphs, th, question_keys(questions), samples, seed)


@pytest.fixture(scope="module")
def math_rows():
    sim = SimulatedPool("math-like")
    questions = sim.task(40).questions
    return questions, Thresholds.of(sim.preset, questions, 4)


@pytest.mark.parametrize("name, value, message", [
    ("fail", np.zeros(3, np.int32), "fail must have dtype int64"),
    ("samples", np.zeros(0, np.uint64), "samples must not be empty"),
    ("keys", np.zeros((1, 1, 1), np.uint64), "keys must have shape"),
    ("pick", np.zeros((6, 40, 2), np.int64), "pick must have shape"),
    ("sinks", np.zeros((1, 3), np.int16), "sinks must have shape"),
    ("cuts", np.full((40, 3), 2**16 + 1, np.int64), r"cuts \(flat index 0\) = 65537 is outside"),
    ("fail", np.full(6, -1, np.int64), "fail .* is outside"),
])
def test_the_binding_names_the_bad_argument(math_rows, name, value, message):
    core = require_core()
    questions, th = math_rows
    graph = CollaborationGraph.layered([[0, 1], [2]], NAMES)
    args = dict(zip(["model", "role", "edges", "keys", "sinks", "fail", "right", "pick", "cuts",
                     "keep", "question_keys", "samples", "seed"],
                    kernel.kernel_arguments(kernel.SimGraphs.of([graph], NAMES), th,
                                   question_keys(questions), [0], 0)))
    args[name] = value
    with pytest.raises(ValueError, match=message):
        core.sim_runs(**args)


def test_the_face_refuses_thresholds_too_narrow_for_a_fuser_and_bad_samples(math_rows):
    questions, _ = math_rows
    narrow = Thresholds.of(PRESETS["math-like"], questions, 2)
    wide = CollaborationGraph.layered([[0, 1, 2], [3]], NAMES)
    with pytest.raises(ValueError, match="fusers of up to 2 inputs"):
        _one(wide, narrow, questions)
    with pytest.raises(ValueError, match="samples must be a non-empty"):
        _one(CollaborationGraph.layered([[0]], NAMES), narrow, questions, samples=[])
    with pytest.raises(ValueError, match="seed must be an integer"):
        _one(CollaborationGraph.layered([[0]], NAMES), narrow, questions, seed=-1)


def test_pytts_force_reference_selects_the_numpy_twin():
    code = "from pytts.sim import kernel; print(kernel.BACKEND)"
    env = dict(os.environ, PYTTS_FORCE_REFERENCE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "reference"


# ------------------------------------------------------------------ semantics
def test_the_hash_is_splitmix64_and_fold_separates_its_arguments():
    # splitmix64's first output from state 0 is the finalizer of the golden ratio increment
    assert int(mix64(np.uint64(0x9E3779B97F4A7C15))[0]) == 0xE220A8397B1DCDAF
    assert fold(1, 2)[0] != fold(2, 1)[0]


def test_graphs_that_share_a_node_share_its_draws(math_rows):
    questions, th = math_rows
    base = CollaborationGraph.layered([[0, 1], [2]], NAMES, template=(3, 3))
    longer = CollaborationGraph.layered([[0, 1], [2], [3]], NAMES, template=(3, 3))
    other_input = CollaborationGraph.layered([[0, 4], [2]], NAMES, template=(3, 3))
    samples = np.arange(200)
    codes = [_one(g, th, questions, samples)[0][0] for g in (base, longer, other_input)]
    keys = kernel.SimGraphs.of([base, longer, other_input], NAMES).keys
    # the fuser (1, 0) is the same node in `longer`, another node where one input differs
    assert keys[0, 1, 0] == keys[1, 1, 0] != keys[2, 1, 0]
    assert np.array_equal(codes[0][..., 1, 0], codes[1][..., 1, 0])
    assert np.array_equal(codes[0][..., 0, 0], codes[2][..., 0, 0])
    assert not np.array_equal(codes[0][..., 1, 0], codes[2][..., 1, 0])


def test_a_first_answer_is_right_exactly_when_its_outcome_draw_says_so(math_rows):
    questions, th = math_rows
    graph = CollaborationGraph.layered([[2]], NAMES)
    samples = np.arange(300)
    codes, winner = _one(graph, th, questions, samples, seed=5)
    keys = kernel.SimGraphs.of([graph], NAMES).keys[0].reshape(-1)
    outcome = outcome_field(run_bits(5, question_keys(questions), keys, samples))[:, 0, :]
    right = th.right[2][:, 0][:, None]
    fail = th.fail[2]
    assert np.array_equal(codes[0, :, :, 0, 0] == CORRECT, (outcome >= fail) & (outcome < right))
    assert np.array_equal(codes[0, :, :, 0, 0] == MISSING, outcome < fail)
    assert np.array_equal(winner[0], codes[0, :, :, 0, 0])
    # the rate follows the thresholds: 40 x 300 draws
    p = ((right - fail) / 2**OUTCOME_BITS).mean()
    assert abs((winner == CORRECT).mean() - p) < 4 * np.sqrt(p * (1 - p) / winner.size)


def test_fresh_wrong_answers_name_the_node_that_wrote_them_and_copies_keep_the_name():
    sim = SimulatedPool("code-like")  # mostly free-form wrong answers
    questions = sim.task(30).questions
    th = Thresholds.of(sim.preset, questions, 2)
    graph = CollaborationGraph.layered([[3, 3], [4]], sim.pool.names,
                                       roles=[[0, 0], [FUSER]])
    codes, _ = kernel.run_codes(kernel.SimGraphs.of([graph], sim.pool.names), th,
                                question_keys(questions), np.arange(100), 1)
    first = codes[0, :, :, 0, 1]
    assert set(np.unique(first[first >= NOISE_BASE])) == {NOISE_BASE + 1}
    fused = codes[0, :, :, 1, 0]
    assert set(np.unique(fused[fused >= NOISE_BASE])) == {NOISE_BASE, NOISE_BASE + 1,
                                                          NOISE_BASE + MAX_WIDTH}


def test_expected_scores_of_a_lone_sink_average_to_the_drawn_votes(math_rows):
    questions, th = math_rows
    graph = CollaborationGraph.layered([[0, 1, 4], [2]], NAMES)
    sim_graphs = kernel.SimGraphs.of([graph], NAMES)
    keys, samples = question_keys(questions), np.arange(4000)
    mean_total, _ = kernel.score_sums(sim_graphs, th, keys, samples, 3)
    drawn_total, drawn_sq = kernel.score_sums(sim_graphs, th, keys, samples, 3,
                                              lone_sink_mean=False)
    assert np.array_equal(drawn_total, drawn_sq)  # 0/1 scores
    mean, drawn = mean_total.mean() / 4000, drawn_total.mean() / 4000
    assert abs(mean - drawn) < 4 * np.sqrt(drawn * (1 - drawn) / (4000 * len(questions)))
