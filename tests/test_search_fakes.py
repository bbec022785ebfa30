"""A toy pool, objective and evaluator for the search tests (and tests that they behave).

The toy accuracy of a graph is a deterministic function with the paper's shape: model skill
matters, width helps up to a point, a refining/fusing layer helps, a third layer hurts. Each of
``n_questions`` questions has a fixed difficulty, so results are exact and repeatable.
"""

from __future__ import annotations

import asyncio

import numpy as np

from pytts import CollaborationGraph, CostModel, ModelPool, ModelSpec
from pytts.evaluate import EvalResult
from pytts.graph import FUSER
from pytts.search import (
    TPE,
    Accuracy,
    AgentReinforce,
    Exhaustive,
    LLMOptimizer,
    RandomSearch,
    Reinforce,
)

SKILL = {"s": 0.35, "m": 0.5, "l": 0.6}


def toy_pool() -> ModelPool:
    return ModelPool([ModelSpec("s", "fa", 1.0, out_tokens=100, decode_tps=80),
                      ModelSpec("m", "fa", 3.0, out_tokens=100, decode_tps=50),
                      ModelSpec("l", "fb", 8.0, out_tokens=100, decode_tps=30)])


def toy_cost() -> CostModel:
    return CostModel(toy_pool(), prompt_tokens=100.0, template_tokens=20.0)


def toy_accuracy(graph: CollaborationGraph) -> float:
    skill = np.array([SKILL[n] for n in graph.model_names])
    widths = graph.layer_widths
    first = graph.model[0, : widths[0]]
    acc = skill[first].mean() + 0.05 * (widths[0] - 1) - 0.02 * (widths[0] - 1) ** 2
    for l in range(1, graph.depth):
        nodes = graph.model[l, : widths[l]]
        acc += 0.3 * skill[nodes].mean() - 0.1 * (l - 1)
        fused = [i for i in range(widths[l]) if len(graph.predecessors(l, i)) > 1]
        acc += 0.02 * sum(graph.role[l, i] == FUSER for i in fused) / widths[l]
    return float(np.clip(acc, 0.0, 1.0))


class ToyEvaluator:
    """Scores graphs with `toy_accuracy` on ``n_questions`` fixed-difficulty questions.

    ``delay_s`` makes each evaluation take that long (for kill tests); ``calls`` counts
    evaluations per canonical key.
    """

    def __init__(self, cost: CostModel | None = None, n_questions: int = 40,
                 delay_s: float = 0.0) -> None:
        self.cost = cost or toy_cost()
        self.n_questions = n_questions
        self.delay_s = delay_s
        self.calls: dict[str, int] = {}

    def result(self, graph: CollaborationGraph) -> EvalResult:
        acc = toy_accuracy(graph)
        difficulty = (np.arange(self.n_questions) + 0.5) / self.n_questions
        flops, latency = self.cost.graph_cost(graph)
        return EvalResult.from_scores(list(difficulty < acc), mean_flops=flops,
                                      mean_latency_s=latency, calls_made=graph.n_nodes)

    async def evaluate(self, graph: CollaborationGraph) -> EvalResult:
        key = graph.canonical_key()
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.result(graph)


BUDGET = "5x m"
TEMPLATE = (2, 2)

FACTORIES = {
    "random": lambda **kw: RandomSearch(**kw),
    "exhaustive": lambda **kw: Exhaustive(**kw),
    "reinforce": lambda **kw: Reinforce(**kw, batch_size=3),
    "tpe": lambda **kw: TPE(**kw, n_startup_trials=4),
    "llm-optimizer": lambda **kw: LLMOptimizer(**kw),
    "agent-reinforce": lambda **kw: AgentReinforce(**kw, round_size=3),
}


def make_searcher(name: str, seed: int = 0, template=TEMPLATE, budget=BUDGET, objective=None):
    cost = toy_cost()
    return FACTORIES[name](pool=cost.pool, template=template, cost=cost, budget=budget,
                           seed=seed, objective=objective or Accuracy())


# ------------------------------------------------------------------- tests of the fakes
def test_toy_accuracy_prefers_the_strong_model_and_saturates_with_width():
    names = toy_pool().names
    one = toy_accuracy(CollaborationGraph.layered([[2]], names))
    two = toy_accuracy(CollaborationGraph.layered([[2, 2]], names))
    four = toy_accuracy(CollaborationGraph.layered([[2] * 4], names))
    weak = toy_accuracy(CollaborationGraph.layered([[0]], names))
    assert weak < one < two and four < two


def test_toy_evaluator_is_deterministic_and_counts_calls():
    ev = ToyEvaluator()
    g = CollaborationGraph.layered([[1], [2]], toy_pool().names)
    a = asyncio.run(ev.evaluate(g))
    b = asyncio.run(ev.evaluate(g))
    assert a.to_dict() == b.to_dict()
    assert ev.calls[g.canonical_key()] == 2
    assert abs(a.accuracy - toy_accuracy(g)) <= 0.5 / 40 + 1e-12
