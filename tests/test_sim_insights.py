"""The simulated presets reproduce the paper's three insights (docs/method.md), measured with the
Monte-Carlo ground truth `SimulatedPool.expected_accuracy` (seeded, so these are exact
statements about the calibration, not noisy samples).

Graph families used here, on the (4, 8) template under a fixed FLOPs budget:
- width w at depth 1: w parallel answers of one model, voted;
- depth d at width w: w parallel chains of d calls (an answer by model a, then d-1 refinements
  by model b), voted; "best" maximises over the models a and b that fit the budget.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytts.graph import CollaborationGraph, GraphBatch
from pytts.sim import SimulatedPool
from pytts.space import enumerate_graphs

TEMPLATE = (4, 8)
N_SAMPLES = 400   # Monte-Carlo runs per question: standard errors near 0.001 on 200 questions
MARGIN = 0.02     # an "optimum" must beat its rivals by at least two accuracy points


def parallel_chains(names, depth: int, width: int, answerer: int, refiner: int
                    ) -> CollaborationGraph:
    model = np.full(TEMPLATE, -1)
    model[0, :width] = answerer
    model[1:depth, :width] = refiner
    edges = np.zeros((TEMPLATE[0] - 1, TEMPLATE[1], TEMPLATE[1]))
    for layer in range(depth - 1):
        edges[layer, range(width), range(width)] = 1
    return CollaborationGraph(model, np.zeros(TEMPLATE), edges, names)


def best_by_shape(sim: SimulatedPool, budget: str, depths, widths) -> dict:
    """``{(depth, width): (accuracy, (answerer, refiner))}``: the best parallel-chains graph of
    each shape within the preset's budget (shapes where nothing fits are left out)."""
    names = sim.pool.names
    cost = sim.cost_model()
    limit = sim.budgets[budget].resolve(cost)
    candidates = []
    for a in range(len(names)):
        for b in range(len(names)):
            for d in depths:
                if d == 1 and b != a:
                    continue  # a depth-1 graph has no refiner
                candidates += [((d, w), (names[a], names[b]), parallel_chains(names, d, w, a, b))
                               for w in widths]
    batch = GraphBatch.from_graphs([g for _, _, g in candidates])
    flops, _ = cost.batch_cost(batch)
    keep = np.flatnonzero(flops <= limit)
    batch = GraphBatch(batch.model[keep], batch.role[keep], batch.edges[keep])
    means, _ = sim.expected_accuracy_batch(batch, n_samples=N_SAMPLES)
    best: dict = {}
    for i, mean in zip(keep, means):
        shape, models, _ = candidates[i]
        if shape not in best or mean > best[shape][0]:
            best[shape] = (float(mean), models)
    return best


def single_call(sim: SimulatedPool, name: str) -> float:
    graph = CollaborationGraph.layered([[sim.pool.index(name)]], sim.pool.names)
    return sim.expected_accuracy(graph)[0]


@pytest.fixture(scope="module")
def math_like() -> SimulatedPool:
    return SimulatedPool("math-like")


@pytest.fixture(scope="module")
def grids():
    """The best-by-shape grids of the presets' "high" budgets, computed once per preset."""
    cache: dict = {}

    def get(preset: str) -> dict:
        if preset not in cache:
            cache[preset] = best_by_shape(SimulatedPool(preset), "high", range(1, 5),
                                          range(1, 9))
        return cache[preset]
    return get


def interior_optimum(curve: list[float]) -> int:
    """Index of the curve's maximum, asserted to be interior and clear of both ends."""
    best = int(np.argmax(curve))
    assert 0 < best < len(curve) - 1, f"optimum at an end: {np.round(curve, 3)}"
    assert curve[best] - curve[0] >= MARGIN and curve[best] - curve[-1] >= MARGIN, \
        np.round(curve, 3)
    return best


# ------------------------------------------------------------------ insight 1
SIZE_TIERS = [("qwen2.5-1.5b", "llama3.2-1b"), ("qwen2.5-3b", "llama3.2-3b"),
              ("qwen2.5-7b", "llama3.1-8b")]


def test_math_like_prefers_qwen_and_mmlu_like_prefers_llama_at_every_size():
    math, mmlu = SimulatedPool("math-like"), SimulatedPool("mmlu-like")
    for qwen, llama in SIZE_TIERS:
        assert single_call(math, qwen) > single_call(math, llama) + 0.05
        assert single_call(mmlu, llama) > single_call(mmlu, qwen) + 0.03
    best = {name: max(sim.pool.names, key=lambda n: single_call(sim, n))
            for name, sim in (("math", math), ("mmlu", mmlu))}
    assert best == {"math": "qwen2.5-7b", "mmlu": "llama3.1-8b"}


def test_code_like_prefers_a_llama_writer_and_a_qwen_reviewer():
    sim = SimulatedPool("code-like")
    names = sim.pool.names
    writer = max(names, key=lambda n: single_call(sim, n))
    assert writer == "llama3.1-8b"
    chain = {reviewer: sim.expected_accuracy(CollaborationGraph.chain(
        [names.index(writer), names.index(reviewer)], names))[0]
        for reviewer in ("llama3.1-8b", "qwen2.5-7b")}
    assert chain["qwen2.5-7b"] > chain["llama3.1-8b"] + 0.05


def test_several_calls_of_a_smaller_model_beat_one_call_of_the_largest(math_like):
    sim, names = math_like, math_like.pool.names
    cost = sim.cost_model()
    largest = max(sim.pool, key=lambda m: m.params_b).name
    one_large = CollaborationGraph.layered([[names.index(largest)]], names)
    several = CollaborationGraph.layered([[names.index("qwen2.5-1.5b")] * 4], names)
    assert cost.graph_cost(several)[0] <= cost.graph_cost(one_large)[0]
    assert (sim.expected_accuracy(several, n_samples=N_SAMPLES)[0]
            > sim.expected_accuracy(one_large)[0] + 0.05)


def test_under_a_budget_the_largest_model_is_not_the_best_choice(grids):
    best = max(grids("math-like").values())
    assert "llama3.1-8b" not in best[1]


# ------------------------------------------------------------------ insight 2
@pytest.mark.parametrize("preset", ["math-like", "code-like"])
def test_width_has_an_interior_optimum_at_a_fixed_budget(grids, preset):
    grid = grids(preset)
    curve = [grid[1, w][0] for w in range(1, 9)]
    interior_optimum(curve)


@pytest.mark.parametrize("preset", ["math-like", "code-like"])
def test_depth_has_an_interior_optimum_at_a_fixed_budget(grids, preset):
    grid = grids(preset)
    curve = [grid[d, 1][0] for d in range(1, 5)]
    interior_optimum(curve)


def test_the_depth_optimum_is_task_specific(grids):
    # knowledge questions gain nothing from re-checking: mmlu-like is best answered in one step
    grid = grids("mmlu-like")
    curve = [max(acc for (d, _), (acc, _) in grid.items() if d == depth)
             for depth in range(1, 5)]
    assert int(np.argmax(curve)) == 0 and curve[0] - max(curve[1:]) >= MARGIN


def test_width_saturates_without_a_budget(math_like):
    # many votes of one model converge on what most of its samples say, right or wrong
    names = math_like.pool.names
    acc = {w: math_like.expected_accuracy(
        CollaborationGraph.layered([[names.index("qwen2.5-3b")] * w], names),
        n_samples=N_SAMPLES)[0] for w in (1, 5, 15)}
    assert acc[5] - acc[1] > 0.05
    assert acc[15] - acc[5] < (acc[5] - acc[1]) / 2


# ------------------------------------------------------------------ insight 3
@pytest.mark.parametrize("preset", ["math-like", "code-like"])
def test_the_best_width_depends_on_the_depth(grids, preset):
    grid = grids(preset)
    best_width = {d: max((w for dd, w in grid if dd == d), key=lambda w: grid[d, w][0])
                  for d in (1, 2)}
    assert best_width[1] != best_width[2]
    # and the difference matters: depth 2 at depth 1's best width loses clearly
    assert grid[2, best_width[2]][0] - grid[2, best_width[1]][0] >= MARGIN


# ------------------------------------------------------------------ the tiny preset
def test_tiny_preset_has_a_nontrivial_exhaustive_optimum():
    sim = SimulatedPool("tiny")
    cost = sim.cost_model()
    depth, width = sim.template
    batch = enumerate_graphs(depth, width, len(sim.pool), 2)
    flops, _ = cost.batch_cost(batch)
    limits = {name: b.resolve(cost) for name, b in sim.budgets.items()}
    keep = np.flatnonzero(flops <= limits["high"])
    batch = GraphBatch(batch.model[keep], batch.role[keep], batch.edges[keep])
    questions = sim.task(split="dev").questions
    means, _ = sim.expected_accuracy_batch(batch, questions, n_samples=200)
    best_single = max(sim.expected_accuracy(CollaborationGraph.layered([[k]], sim.pool.names),
                                            questions)[0] for k in range(len(sim.pool)))
    winners = {}
    for name, limit in limits.items():
        fits = flops[keep] <= limit
        top = int(np.flatnonzero(fits)[np.argmax(means[fits])])
        winners[name] = CollaborationGraph(batch.model[top], batch.role[top], batch.edges[top],
                                           sim.pool.names)
        assert means[top] > best_single + 0.03, name
    assert winners["low"].n_nodes == 2 and winners["high"].n_nodes == 3
