"""LLM-driven search against a local fake OpenAI server that replies with whatever the test
scripts: bad replies are counted, logged and replaced by the fallback; the search never stops."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web
from fake_openai import FakeOpenAI
from test_search_fakes import ToyEvaluator, make_searcher, toy_cost

from pytts.errors import AgentReplyError
from pytts.llm.openai import OpenAIClient, RetryPolicy
from pytts.search import Accuracy, HeuristicAgent, LLMAgent, LLMOptimizer, run_search
from pytts.search.llm_io import (
    AgentContext,
    ScoredGraph,
    graph_from_compact,
    graph_to_compact,
    parse_feedback,
    read_context,
)

pytestmark = pytest.mark.server

VALID = json.dumps({"feedback": "Model l wins; put all weight on it.", "anchor": None,
                    "model_weights": {"l": 1.0, "m": 0.0, "s": 0.0}, "step_size": 0.5})
BAD = {
    "garbage": "\x00\x01%%%",
    "truncated": '{"feedback": "widen the first layer", "step_size": 0.',
    "out of range": json.dumps({"feedback": "go", "step_size": 3.5}),
    "prose": "I think you should use more of the bigger model, maybe two layers.",
    "unknown model": json.dumps({"feedback": "x", "step_size": 0.3,
                                 "model_weights": {"gpt-9": 1.0}}),
    "widths vs depth": json.dumps({"feedback": "x", "step_size": 0.3, "depth": 2,
                                   "widths": [1, 1, 1]}),
    "no such anchor": json.dumps({"feedback": "x", "step_size": 0.3, "anchor": 999}),
    "not a number": '{"feedback": "x", "step_size": 0.3, "depth": NaN}',
    "infeasible region": json.dumps({"feedback": "x", "step_size": 0.3, "widths": [3, 3, 3]}),
}


class ScriptedServer(FakeOpenAI):
    """Answers each chat request with the next scripted content (then VALID for ever);
    the content "HTTP 500" makes that request fail with a server error instead."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__()
        self.replies = list(replies)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        content = self.replies.pop(0) if self.replies else VALID
        if content == "HTTP 500":
            return web.Response(status=500, text="boom")
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})


async def test_bad_agent_replies_are_counted_logged_and_fall_back(caplog):
    script = list(BAD.values()) + ["HTTP 500"]
    caplog.set_level(logging.WARNING, logger="pytts.search")
    async with ScriptedServer(script) as server:
        client = OpenAIClient(server.base_url, retry=RetryPolicy(max_retries=0))
        agent = LLMAgent(client, "agent-model")
        searcher = make_searcher("agent-reinforce", seed=0, template=(3, 3), budget="2x m")
        searcher.agent = agent
        # 3 pilots, then rounds of 3: every scripted reply and two valid ones get used
        report = await run_search(searcher, ToyEvaluator(), 3 + 3 * (len(script) + 1),
                                  batch_size=3)
        await client.aclose()
    assert report.stopped == "budget"
    assert agent.bad_replies == len(script) == searcher.bad_replies
    sources = [entry["source"] for entry in searcher.feedback_log]
    assert sources[: len(script)] == ["fallback"] * len(script)
    assert sources[len(script):] and set(sources[len(script):]) == {"llm"}
    warnings = [r for r in caplog.records if r.name == "pytts.search"
                and "unusable" in r.getMessage()]
    assert len(warnings) == len(script)
    assert len(agent.bad_reply_log) == len(script)
    assert sum(1 for r in report.history if r.feedback) == len(searcher.feedback_log)
    # every request carried the system prompt and the context the agent needs
    first = server.requests[0]
    assert first["model"] == "agent-model"
    ctx = read_context(first["messages"][-1]["content"])
    assert {m["model"] for m in ctx["pool"]} == {"s", "m", "l"} and ctx["evaluated"]


async def test_a_valid_llm_update_is_applied():
    async with ScriptedServer([VALID] * 3) as server:
        client = OpenAIClient(server.base_url, retry=RetryPolicy(max_retries=0))
        searcher = make_searcher("agent-reinforce", seed=0, template=(3, 3))
        searcher.agent = LLMAgent(client, "agent-model")
        searcher.use_probes = False  # the pilots' round and one search round: two feedbacks
        await run_search(searcher, ToyEvaluator(), 6, batch_size=3)
        await client.aclose()
    assert searcher.bad_replies == 0
    assert [e["source"] for e in searcher.feedback_log] == ["llm", "llm"]
    probs = dict(zip(searcher.model_names, searcher.probgraph.mean_model_probs()))
    assert probs["l"] > 0.5 > probs["s"]
    assert "Model l wins" in searcher.history[-1].feedback


async def test_llm_optimizer_replaces_unusable_proposals_with_random_ones():
    names = toy_cost().pool.names
    good = {"layers": [[{"model": "l"}], [{"model": "m", "inputs": [0]}]]}
    replies = [
        "no json here",
        json.dumps({"graphs": [good, {"layers": [[{"model": "gpt-9"}]]},
                               {"layers": [[{"model": "l"}] * 3, [{"model": "l"}] * 3]}]}),
        json.dumps({"graphs": [good]}),  # a duplicate of an evaluated graph
    ]
    async with ScriptedServer(replies) as server:
        client = OpenAIClient(server.base_url, retry=RetryPolicy(max_retries=0))
        cost = toy_cost()
        searcher = LLMOptimizer(cost.pool, (3, 3), cost, "5x m", seed=0, client=client,
                                model="opro", extra=0)
        report = await run_search(searcher, ToyEvaluator(), 6, batch_size=2)
        await client.aclose()
    assert report.n_evals == 6
    c = searcher.counts
    assert c["n_bad_replies"] == 1 and c["n_invalid"] == 1 and c["n_infeasible"] == 1
    assert c["n_duplicates"] == 1 and c["n_from_llm"] >= 1
    assert c["n_from_llm"] + c["n_random"] == 6
    assert graph_from_compact(good, names, (3, 3)).canonical_key() in {r.key for r in
                                                                       report.history}
    assert not searcher.offline


# ------------------------------------------------------------------- parsing, unit level
def _context(budget: str = "5x m") -> AgentContext:
    s = make_searcher("agent-reinforce", seed=0, template=(3, 3), budget=budget)
    ev = ToyEvaluator()
    scored = []
    for i, g in enumerate(s.ask(3)):
        r = ev.result(g)
        scored.append(ScoredGraph(i, g, r.accuracy, r.accuracy, r.n_questions,
                                  r.mean_latency_s, r.mean_flops))
    return AgentContext(s.template, s.budget, s.cost, Accuracy(), scored, [0, 1, 2],
                        s.probgraph, 1)


@pytest.mark.parametrize("case", sorted(BAD))
def test_parse_feedback_rejects_each_kind_of_bad_reply(case):
    with pytest.raises(AgentReplyError):
        parse_feedback(BAD[case], _context("2x m"))


def test_parse_feedback_reads_a_fenced_reply_and_keeps_its_fields():
    reply = ("Sure! Here is my update:\n```json\n" + json.dumps(
        {"feedback": "deeper", "anchor": 1, "widths": [2, 1], "fuser_prob": 0.8,
         "step_size": 0.4, "extra": "ignored"}) + "\n```")
    text, update = parse_feedback(reply, _context())
    assert text == "deeper"
    assert (update.anchor, update.depth, update.widths, update.fuser_prob,
            update.step_size) == (1, 2, [2, 1], 0.8, 0.4)


def test_compact_graph_json_round_trips():
    s = make_searcher("random", seed=0, template=(3, 3))
    for g in s.ask(20):
        back = graph_from_compact(json.loads(json.dumps(graph_to_compact(g))), s.model_names,
                                  s.template)
        assert back.canonical_key() == g.canonical_key()


def test_heuristic_agent_feedback_is_deterministic():
    ctx = _context()
    a = HeuristicAgent().initial_feedback(ctx)
    b = HeuristicAgent().initial_feedback(ctx)
    assert a.to_dict() == b.to_dict()
    assert a.source == "heuristic" and a.update.anchor is None  # pilots say nothing of depth
    best = max(ctx.scored, key=lambda s: s.value)
    weights = a.update.model_weights
    assert max(weights, key=weights.get) == best.graph.model_names[best.graph.model[0, 0]]
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("reply, message", [
    ('Thinking about {this}. Answer: {"feedback": "ok", "step_size": 0.2} done', None),
    ('{"feedback": "ok", "step_size": 0.2', "cut off"),
    ("no braces at all", "no JSON object"),
])
def test_extract_json_object_finds_json_in_prose_and_names_truncation(reply, message):
    from pytts.search.llm_io import extract_json_object
    if message is None:
        assert extract_json_object(reply) == {"feedback": "ok", "step_size": 0.2}
    else:
        with pytest.raises(AgentReplyError, match=message):
            extract_json_object(reply)
