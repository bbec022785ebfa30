"""The LLM agent end to end on the embedded SmolLM2-135M: the server reports its context window
and counts tokens, and Agent-REINFORCE on the simulated math-like demo gets a usable reply to
every request, with no context overflow; late in searches on generated landscape gen-2 (the one
whose prompts once overflowed), the agent and the LLM optimizer too; and the token estimate
errs high on the smallest prompts of every generated landscape."""

from __future__ import annotations

import pytest
from test_search_prompt_floor import CELLS, late_context

from pytts import runner
from pytts.config import SearchConfig
from pytts.evaluate import Evaluator
from pytts.execute import GraphExecutor
from pytts.llm.dialects import SCHEMA_FORMS, estimate_tokens
from pytts.llm.local import SERVED_MODEL, LocalServer
from pytts.llm.openai import OpenAIClient
from pytts.search import AgentReinforce, LLMAgent, LLMOptimizer, Searcher, run_search
from pytts.search.agent import Feedback, HeuristicAgent
from pytts.search.llm_io import AGENT_FEEDBACK_USER, AGENT_SYSTEM, AgentContext, render_context
from pytts.search.racing import RacingPolicy
from pytts.sim import SimPreset, SimulatedPool
from pytts.sim.evaluator import LatentEvaluator

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(1200)]


async def test_the_embedded_server_reports_its_window_and_counts_prompt_tokens(
        local_server: LocalServer) -> None:
    setup = runner.resolve(SearchConfig(pool="sim:math-like", task="sim"))
    context = {"pool": [m.name for m in setup.pool], "note": "0.125, 0.75, 9.32e12 " * 40}
    messages = [{"role": "system", "content": AGENT_SYSTEM},
                {"role": "user", "content": AGENT_FEEDBACK_USER.format(
                    round=1, context=render_context(context))}]
    async with OpenAIClient(local_server.base_url) as client:
        assert await client.context_window(SERVED_MODEL) == local_server.n_ctx
        counted = await client.count_tokens(SERVED_MODEL, messages)
        used = (await client.complete(SERVED_MODEL, messages, max_tokens=1))[0].prompt_tokens
    assert counted is not None and used <= counted <= used + 3 * 8
    assert estimate_tokens(messages) >= counted          # the estimate errs high


async def test_agent_reinforce_with_the_llm_agent_on_the_embedded_model(
        local_server: LocalServer) -> None:
    setup = runner.resolve(SearchConfig(pool="sim:math-like", task="sim", agent="llm",
                                        agent_endpoint=local_server.base_url,
                                        agent_model=SERVED_MODEL))
    async with OpenAIClient(local_server.base_url, timeout_s=600) as client:
        searcher = runner.make_searcher(setup, client)
        agent = searcher.agent
        assert isinstance(agent, LLMAgent)
        executor = GraphExecutor(setup.sim, setup.pool, setup.task, seed=0, max_tokens=512)
        n_pilots = len(setup.pool)
        # the pilots, then two rounds of four: three agent requests
        await run_search(searcher, Evaluator(executor), n_pilots + 2 * 4, batch_size=4)
    assert agent.n_calls == 3
    assert agent.bad_replies == 0, agent.bad_reply_log
    assert agent.context_overflows == 0
    assert [entry["source"] for entry in searcher.feedback_log] == ["llm"] * 3
    stats = agent.reply_stats()
    assert (stats["context_window"], stats["window_source"]) == (local_server.n_ctx, "server")
    assert stats["tokens_counted_by"] == "server tokenizer"
    assert stats["schema_form"] == SCHEMA_FORMS[0].name



class RecordingAgent(HeuristicAgent):
    """The heuristic agent, keeping every context it was asked about (to replay one to the
    LLM agent)."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[AgentContext] = []

    async def initialize(self, ctx: AgentContext) -> Feedback:
        self.contexts.append(ctx)
        return await super().initialize(ctx)

    async def feedback(self, ctx: AgentContext) -> Feedback:
        self.contexts.append(ctx)
        return await super().feedback(ctx)


async def late_search(searcher: Searcher, sim: SimulatedPool, n_evals: int = 32) -> None:
    """``n_evals`` evaluations of ``searcher`` as the benchmark runs them (racing, batches
    of 4), on the latent-code simulator."""
    evaluator = LatentEvaluator(sim, sim.task(250).questions, seed=0)
    await run_search(searcher, evaluator, n_evals, batch_size=4,
                     racing=RacingPolicy.for_questions(250))


async def test_on_landscape_gen_2_late_in_a_search_every_reply_is_usable_and_fits(
        local_server: LocalServer) -> None:
    # gen-2 (6 models, widths up to 8) overflowed the 2048-token window before the summary
    # views: its most compact JSON view took 1857 prompt tokens against 1480 of room.
    preset = SimPreset.generate(2)
    sim = SimulatedPool(preset)
    contexts, offline = [], []
    for budget in ("low", "high"):
        recorder = RecordingAgent()
        args = (sim.pool, preset.template, sim.cost_model(), preset.budgets[budget])
        await late_search(AgentReinforce(*args, seed=0, agent=recorder), sim)
        contexts.append(recorder.contexts[-1])
        offline.append(LLMOptimizer(*args, seed=0))
        await late_search(offline[-1], sim)
    async with OpenAIClient(local_server.base_url, timeout_s=600) as client:
        agent = LLMAgent(client, SERVED_MODEL)
        sources = [(await agent.feedback(ctx)).source for ctx in contexts]
        optimizers = []
        for done in offline:    # the same searches, continued with the LLM proposing
            optimizer = LLMOptimizer(done.cost.pool, done.template, done.cost, done.budget,
                                     seed=0, client=client, model=SERVED_MODEL)
            optimizer.load_state_dict(done.state_dict())
            assert len(await optimizer.aask(4)) == 4
            optimizers.append(optimizer)
    assert all(ctx.round >= 5 and len(ctx.scored) >= 24 for ctx in contexts)
    assert sources == ["llm", "llm"], agent.bad_reply_log
    assert agent.bad_replies == 0 and agent.context_overflows == 0
    stats = agent.reply_stats()
    assert (stats["context_window"], stats["window_source"]) == (local_server.n_ctx, "server")
    assert stats["tokens_counted_by"] == "server tokenizer"
    for optimizer, done in zip(optimizers, offline):    # one request each, on 32 results
        assert len(optimizer.history) == 32
        assert optimizer.counts["n_requests"] == done.counts["n_requests"] + 1
        assert optimizer.counts["n_bad_replies"] == 0
        assert optimizer.counts["n_context_overflows"] == 0
        assert optimizer.reply_stats()["tokens_counted_by"] == "server tokenizer"


async def test_the_token_estimate_errs_high_on_every_landscapes_smallest_prompts(
        local_server: LocalServer) -> None:
    async with OpenAIClient(local_server.base_url) as client:
        for land, budget in CELLS:
            ctx = late_context(land, budget, agent=True)
            prompts = [LLMAgent(client, SERVED_MODEL).prompt_variants(ctx)[-1]()]
            ctx = late_context(land, budget, agent=False)
            optimizer = LLMOptimizer(ctx.cost.pool, ctx.template, ctx.cost, ctx.budget, seed=0)
            prompts.append(optimizer.prompt_variants(ctx, 6)[-1]())
            for prompt in prompts:
                counted = await client.count_tokens(SERVED_MODEL, prompt.messages)
                assert counted is not None
                assert counted <= estimate_tokens(prompt.messages), (land, budget)
