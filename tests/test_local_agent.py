"""The LLM agent end to end on the embedded SmolLM2-135M: the server reports its context window
and counts tokens, and Agent-REINFORCE on the simulated math-like demo gets a usable reply to
every request, with no context overflow."""

from __future__ import annotations

import pytest

from pytts import runner
from pytts.config import SearchConfig
from pytts.evaluate import Evaluator
from pytts.execute import GraphExecutor
from pytts.llm.dialects import SCHEMA_FORMS, estimate_tokens
from pytts.llm.local import SERVED_MODEL, LocalServer
from pytts.llm.openai import OpenAIClient
from pytts.search import LLMAgent, run_search
from pytts.search.llm_io import AGENT_FEEDBACK_USER, AGENT_SYSTEM, render_context

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
