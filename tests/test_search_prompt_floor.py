"""The most compact prompts of the LLM agent and the LLM optimizer fit a context window of
`AGENT_CONTEXT_FLOOR` tokens beside their reply allowance, on every generated landscape at both
budgets, late in a long search, counted by the estimate that errs high; and they still carry
what the agent needs to act."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from pytts.defaults import AGENT_CONTEXT_FLOOR, AGENT_MAX_TOKENS, OPTIMIZER_MAX_TOKENS
from pytts.llm.base import Completion, Message
from pytts.llm.dialects import estimate_tokens
from pytts.probgraph import ProbGraph
from pytts.search import Accuracy, LLMAgent, LLMOptimizer, RandomSearch
from pytts.search.channel import LLMChannel, reply_and_room
from pytts.search.llm_io import (
    AgentContext,
    ScoredGraph,
    describe_compact,
    graph_to_compact,
    read_context,
)
from pytts.sim import SimPreset, SimulatedPool

LANDSCAPES = range(30)
"""The generated landscapes checked: the benchmark's fixed set (0..23) and more."""
HISTORY = 120
"""Distinct graphs evaluated before the request: a long search."""
LATEST = 4
"""Graphs of the round just evaluated (Agent-REINFORCE's round size)."""


def late_context(land: int, budget: str, *, agent: bool) -> AgentContext:
    """A late round of a long search on generated landscape ``land``, sized for the worst
    case: up to `HISTORY` feasible graphs drawn uniformly, scored so that the largest ones (by
    their JSON and summary lines) are the best and the latest round. The optimizer's context
    has no latest round and no distribution, as `LLMOptimizer` builds it."""
    preset = SimPreset.generate(land)
    sim = SimulatedPool(preset)
    cost = sim.cost_model()
    searcher = RandomSearch(sim.pool, preset.template, cost, preset.budgets[budget], seed=land)
    uniform = ProbGraph.uniform(*preset.template, searcher.model_names)
    graphs = searcher.sample_unseen(uniform, HISTORY, fill=False)
    graphs.sort(key=lambda g: len(json.dumps(graph_to_compact(g, short=True)))
                + len(describe_compact(g)))
    n = len(graphs)
    scored = [ScoredGraph(i, g, 0.3 + 0.5 * i / n, 0.29 + 0.5 * i / n, 50, 1.5,
                          cost.graph_cost(g)[0]) for i, g in enumerate(graphs)]
    latest = list(range(n - 1 - LATEST, n - 1)) if agent else []
    return AgentContext(preset.template, searcher.budget, cost, Accuracy(), scored, latest,
                        uniform if agent else None, 30)


CELLS = [(land, budget) for land in LANDSCAPES for budget in ("low", "high")]


@pytest.mark.parametrize(("land", "budget"), CELLS)
def test_the_smallest_agent_and_optimizer_prompts_fit_the_floor_window(land, budget):
    agent_ctx = late_context(land, budget, agent=True)
    smallest = LLMAgent(None, "agent").prompt_variants(agent_ctx)[-1]()  # type: ignore[arg-type]
    _, room = reply_and_room(AGENT_CONTEXT_FLOOR, AGENT_MAX_TOKENS)
    assert estimate_tokens(smallest.messages) <= room

    data = read_context(smallest.messages[-1]["content"])
    names = agent_ctx.cost.pool.names
    assert set(data["tflops_per_call"]) == set(names)      # the pool, each call's cost
    assert data["budget_tflops"] == pytest.approx(agent_ctx.budget / 1e12, abs=1e-3)
    shown = {entry["id"] for entry in data["evaluated"]}
    assert data["best_id"] == agent_ctx.best().id and data["latest_ids"] == agent_ctx.latest
    assert set(agent_ctx.latest) | {agent_ctx.best().id} <= shown
    anchors = smallest.schema["properties"]["anchor"]["enum"]
    assert set(agent_ctx.latest) | {agent_ctx.best().id} <= set(anchors)

    opt_ctx = late_context(land, budget, agent=False)
    preset = SimPreset.generate(land)
    cost = opt_ctx.cost
    optimizer = LLMOptimizer(cost.pool, preset.template, cost, opt_ctx.budget, seed=0)
    want = 4 + optimizer.extra
    smallest = optimizer.prompt_variants(opt_ctx, want)[-1]()
    _, room = reply_and_room(AGENT_CONTEXT_FLOOR, OPTIMIZER_MAX_TOKENS)
    assert estimate_tokens(smallest.messages) <= room
    data = read_context(smallest.messages[-1]["content"])
    assert data["n_requested"] == want and data["best_id"] == opt_ctx.best().id
    assert [entry["id"] for entry in data["evaluated"]] == [opt_ctx.best().id]


class EchoClient:
    """An `LLMClient` that answers every request with ``reply`` and keeps what it was sent; it
    cannot count tokens, so the channel estimates them."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.sent: list[tuple[list[Message], int]] = []

    async def complete(self, model: str, messages: Sequence[Message], *, n: int = 1,
                       temperature: float = 0.0, max_tokens: int = 0,
                       seed: int | None = None, stop: Sequence[str] | None = None,
                       json_schema: Mapping[str, Any] | None = None) -> list[Completion]:
        self.sent.append((list(messages), max_tokens))
        return [Completion(text=self.reply, prompt_tokens=0, completion_tokens=0,
                           latency_s=0.0, model=model, finish_reason="stop")]

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("land", [2, 11, 19])
async def test_at_the_floor_window_the_channel_sends_a_prompt_that_fits(land):
    ctx = late_context(land, "high", agent=True)
    client = EchoClient("{}")
    channel = LLMChannel(client, "agent", context_tokens=AGENT_CONTEXT_FLOOR)
    variants = LLMAgent(None, "agent").prompt_variants(ctx)  # type: ignore[arg-type]
    _, prompt = await channel.ask(variants, temperature=0.2, max_tokens=AGENT_MAX_TOKENS,
                                  seed=0)
    (messages, max_tokens), = client.sent
    assert channel.overflows == 0 and max_tokens == AGENT_MAX_TOKENS
    assert estimate_tokens(messages) + max_tokens <= AGENT_CONTEXT_FLOOR
    assert prompt.shown >= 1 + LATEST
