"""The LLM agent and optimizer against fake servers of each dialect: the reply schema goes out
in the form the server takes (and a refused form falls back, remembered per endpoint), and
prompts shrink to fit the context window the server reports, the config names, or an overflow
error states."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web
from fake_openai import FakeOpenAI
from test_search_fakes import ToyEvaluator, make_searcher, toy_cost

from pytts.config import SearchConfig
from pytts.defaults import AGENT_CONTEXT_FLOOR
from pytts.errors import ConfigError
from pytts.llm.bank import BankedClient, ResponseBank
from pytts.llm.dialects import NO_SCHEMA_FORM, SCHEMA_FORMS
from pytts.llm.openai import OpenAIClient, RetryPolicy
from pytts.llm.router import RoutedClient
from pytts.pool import ModelPool
from pytts.search import LLMAgent, LLMOptimizer, run_search
from pytts.search.llm_io import read_context

pytestmark = pytest.mark.server

LLAMA, OPENAI, VLLM = (form.name for form in SCHEMA_FORMS)
AGENT_REPLY = json.dumps({"feedback": "Keep the strong model; try one more layer.",
                          "anchor": None, "widths": None, "model_weights": {"l": 1.0, "m": 0.3,
                                                                            "s": 0.05},
                          "later_model_weights": None, "fuser_prob": 0.5, "edge_density": None,
                          "step_size": 0.4})
OPTIMIZER_REPLY = json.dumps({"graphs": [{"layers": [["l"], ["m"]]}, {"layers": [["m", "m"]]}]})


def form_of(body: dict) -> str | None:
    """Which schema form a chat request carries (None: no schema)."""
    fmt = body.get("response_format")
    if fmt is not None:
        return LLAMA if fmt.get("type") == "json_object" and "schema" in fmt else OPENAI
    return VLLM if "guided_json" in body else None


def schema_of(body: dict) -> dict | None:
    fmt = body.get("response_format") or {}
    return fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema") or \
        body.get("guided_json")


class DialectServer(FakeOpenAI):
    """An OpenAI-compatible server of a chosen dialect.

    ``accepts``: the schema forms it honours (any other is refused with a 400);
    ``n_ctx``: a context window it enforces like llama-cpp-python (a 400 that names the window
    when ``window_in_error``); ``props``: it reports ``n_ctx`` on ``GET /props`` (llama.cpp);
    ``vllm_card``: its model card carries ``max_model_len`` (vLLM); ``tokenizer``: it has
    llama-cpp-python's ``/extras/tokenize/count``. Its tokenizer is one token per 2.5
    characters (SmolLM2's runs from 1.9 on context JSON to 3.7 on prose). Chat bodies are kept
    in ``chat``; ``refused`` counts 400s.
    """

    def __init__(self, *, accepts: tuple[str, ...] = (LLAMA,), n_ctx: int | None = None,
                 props: bool = False, vllm_card: bool = False, tokenizer: bool = False,
                 window_in_error: bool = True, reply: str = AGENT_REPLY) -> None:
        super().__init__()
        self.accepts = accepts
        self.n_ctx = n_ctx
        self.props = props
        self.vllm_card = vllm_card
        self.tokenizer = tokenizer
        self.window_in_error = window_in_error
        self.reply = reply
        self.chat: list[dict] = []
        self.refused = 0

    @staticmethod
    def tokens(text: str) -> int:
        return math.ceil(len(text) / 2.5)

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self._models)
        if self.props:
            app.router.add_get("/props", self._props)
        if self.tokenizer:
            app.router.add_post("/extras/tokenize/count", self._count)

    async def _models(self, request: web.Request) -> web.Response:
        card = {"id": "agent", "object": "model", "owned_by": "me"}
        if self.vllm_card:
            card["max_model_len"] = self.n_ctx
        return web.json_response({"object": "list", "data": [card]})

    async def _props(self, request: web.Request) -> web.Response:
        return web.json_response({"default_generation_settings": {"n_ctx": self.n_ctx}})

    async def _count(self, request: web.Request) -> web.Response:
        return web.json_response({"count": self.tokens((await request.json())["input"])})

    def prompt_tokens(self, body: dict) -> int:
        # ChatML-like: 4 template tokens around each message, 3 for the reply's header
        return sum(self.tokens(m["content"]) + 4 for m in body["messages"]) + 3

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.chat.append(body)
        form = form_of(body)
        if form is not None and form not in self.accepts:
            self.refused += 1
            return web.json_response({"error": {"message": f"unsupported {form} field"}},
                                     status=400)
        asked = self.prompt_tokens(body)
        if self.n_ctx is not None and asked + body["max_tokens"] > self.n_ctx:
            self.refused += 1
            message = (f"This model's maximum context length is {self.n_ctx} tokens. However, "
                       f"you requested {asked + body['max_tokens']} tokens"
                       if self.window_in_error else "the request exceeds the available "
                       "context size, try increasing it")
            return web.json_response({"error": {"message": message,
                                                "code": "context_length_exceeded"}}, status=400)
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.reply}}],
            "usage": {"prompt_tokens": asked, "completion_tokens": 40, "total_tokens": asked + 40}})


async def run_agent(server: DialectServer, n_evals: int = 15, **agent_kwargs) -> LLMAgent:
    """Agent-REINFORCE on the toy landscape with an LLMAgent asking ``server``: 3 pilots, 4 role
    probes, then rounds of 4, one agent request per round (15 evaluations: 4 requests)."""
    client = OpenAIClient(server.base_url, retry=RetryPolicy(max_retries=0))
    agent = LLMAgent(client, "agent", **agent_kwargs)
    searcher = make_searcher("agent-reinforce", seed=0, template=(3, 3))
    searcher.agent = agent
    try:
        await run_search(searcher, ToyEvaluator(), n_evals, batch_size=3)
    finally:
        await client.aclose()
    return agent


# ------------------------------------------------------------------- the schema and its form
async def test_the_reply_schema_goes_out_in_the_llama_cpp_form_when_the_server_takes_it():
    async with DialectServer(accepts=(LLAMA,)) as server:
        agent = await run_agent(server)
    assert agent.n_calls == len(server.chat) == 4 and server.refused == 0
    assert agent.bad_replies == 0 and agent.channel.schema_form == LLAMA
    for body in server.chat:
        assert form_of(body) == LLAMA
        schema = schema_of(body)
        shown = {e["id"] for e in read_context(body["messages"][-1]["content"])["evaluated"]}
        assert set(schema["properties"]["anchor"]["enum"]) - {None} == shown
        assert set(schema["required"]) >= {"feedback", "step_size", "later_model_weights"}


async def test_a_server_that_refuses_every_form_gets_plain_requests_and_keeps_getting_them():
    async with DialectServer(accepts=()) as server:
        agent = await run_agent(server)
    forms = [form_of(body) for body in server.chat]
    # the first request tries each form once, then goes plain; later ones go plain at once
    assert forms == [LLAMA, OPENAI, VLLM, None, None, None, None]
    assert agent.channel.schema_form == NO_SCHEMA_FORM and agent.bad_replies == 0


async def test_an_openai_style_server_keeps_the_json_schema_form_after_one_refusal():
    async with DialectServer(accepts=(OPENAI, VLLM)) as server:
        agent = await run_agent(server)
    assert [form_of(body) for body in server.chat] == [LLAMA, OPENAI, OPENAI, OPENAI, OPENAI]
    assert server.chat[1]["response_format"]["json_schema"]["strict"] is True
    assert agent.channel.schema_form == OPENAI and agent.bad_replies == 0


async def test_a_vllm_server_is_asked_in_the_openai_form_and_reports_its_window():
    async with DialectServer(accepts=(LLAMA, OPENAI, VLLM), vllm_card=True,
                             n_ctx=4096) as server:
        agent = await run_agent(server)
    assert {form_of(body) for body in server.chat} == {OPENAI} and server.refused == 0
    assert (agent.channel.window, agent.channel.window_source) == (4096, "server")


# ------------------------------------------------------------------- fitting the window
def shown_graphs(body: dict) -> int:
    return len(read_context(body["messages"][-1]["content"])["evaluated"])


async def test_the_history_is_compacted_to_keep_the_prompt_inside_a_small_window():
    async with DialectServer(n_ctx=1800, props=True, tokenizer=True) as server:
        agent = await run_agent(server, n_evals=3 + 3 * 12, max_tokens=256)
    assert server.refused == 0 and agent.context_overflows == 0 and agent.bad_replies == 0
    assert agent.channel.summary() == {
        "context_window": 1800, "window_source": "server",
        "tokens_counted_by": "server tokenizer", "schema_form": LLAMA, "context_overflows": 0}
    assert all(server.prompt_tokens(b) + b["max_tokens"] <= 1800 for b in server.chat)
    assert all(b["max_tokens"] == 256 for b in server.chat)
    first = read_context(server.chat[0]["messages"][-1]["content"])
    last = read_context(server.chat[-1]["messages"][-1]["content"])
    assert "budget_flops" in first                       # in full while it fits ...
    assert shown_graphs(server.chat[-1]) < 20 and "budget_tflops" in last   # ... then compact


async def test_an_overflow_teaches_the_window_and_one_compact_retry_fits():
    async with DialectServer(n_ctx=2048) as server:    # says its window only when refusing
        agent = await run_agent(server, n_evals=3 + 3 * 12, max_tokens=256)
    assert server.refused == 1 and agent.context_overflows == 1 and agent.bad_replies == 0
    assert (agent.channel.window, agent.channel.window_source) == (2048, "overflow error")
    assert agent.channel.summary()["tokens_counted_by"] == "estimate"
    refused = next(i for i, b in enumerate(server.chat)
                   if server.prompt_tokens(b) + b["max_tokens"] > 2048)
    assert shown_graphs(server.chat[refused + 1]) < shown_graphs(server.chat[refused])
    assert all(server.prompt_tokens(b) + b["max_tokens"] <= 2048
               for b in server.chat[refused + 1:])


async def test_a_configured_window_is_used_when_the_server_does_not_report_one():
    async with DialectServer(n_ctx=2048, window_in_error=False) as server:
        agent = await run_agent(server, n_evals=3 + 3 * 12, max_tokens=256,
                                context_tokens=2048)
    assert server.refused == 0 and agent.context_overflows == 0 and agent.bad_replies == 0
    assert agent.channel.window_source == "config"


async def test_a_window_too_small_for_any_prompt_falls_back_and_says_what_to_raise(caplog):
    caplog.set_level(logging.WARNING, logger="pytts.search")
    async with DialectServer(n_ctx=600, props=True, tokenizer=True) as server:
        agent = await run_agent(server, n_evals=7)  # the pilots' and the probes' rounds
    assert server.chat == [] and agent.bad_replies == agent.context_overflows == 2
    error = agent.bad_reply_log[0].error
    assert "agent_context_tokens" in error and f"{AGENT_CONTEXT_FLOOR} tokens" in error
    assert "600-token context window (server)" in error
    logged = [r.getMessage() for r in caplog.records if "using the heuristic" in r.getMessage()]
    assert len(logged) == 2 and error in logged[0]


async def test_the_llm_optimizer_fits_its_prompt_and_sends_its_schema():
    async with DialectServer(n_ctx=1800, props=True, tokenizer=True,
                             reply=OPTIMIZER_REPLY) as server:
        client = OpenAIClient(server.base_url, retry=RetryPolicy(max_retries=0))
        cost = toy_cost()
        searcher = LLMOptimizer(cost.pool, (3, 3), cost, "5x m", seed=0, client=client,
                                model="opro", extra=1, max_tokens=512)
        await run_search(searcher, ToyEvaluator(), 30, batch_size=2)
        await client.aclose()
    assert server.refused == 0 and searcher.counts["n_context_overflows"] == 0
    assert searcher.counts["n_bad_replies"] == 0 and searcher.counts["n_from_llm"] >= 1
    for body in server.chat:
        assert form_of(body) == LLAMA and body["max_tokens"] == 512
        assert schema_of(body)["properties"]["graphs"]["maxItems"] == 3
        assert server.prompt_tokens(body) + body["max_tokens"] <= 1800
    assert shown_graphs(server.chat[-1]) < 20
    stats = searcher.reply_stats()
    assert (stats["requests"], stats["fell_back"], stats["context_overflows"]) == (
        searcher.counts["n_requests"], 0, 0)


# ------------------------------------------------------------------- the client layer
async def test_routed_and_banked_clients_carry_the_schema_and_bank_it_apart(tmp_path):
    schema = {"type": "object", "properties": {"x": {"enum": [1]}}, "required": ["x"]}
    messages = [{"role": "user", "content": "x?"}]
    async with DialectServer(reply='{"x": 1}') as server:
        pool = ModelPool.from_dicts([{"name": "m", "family": "f", "params_b": 1.0,
                                      "endpoint": server.base_url, "api_model": "agent"}])
        with ResponseBank(tmp_path / "bank.sqlite") as bank:
            client = BankedClient(RoutedClient(pool), bank)
            for _ in range(2):
                await client.complete("m", messages, seed=1, json_schema=schema)
                await client.complete("m", messages, seed=1)
            await client.aclose()
    # one call each: constrained and plain are different requests, each banked once
    assert [form_of(b) for b in server.chat] == [LLAMA, None]
    assert schema_of(server.chat[0]) == schema
    assert client.calls_made == 2 and client.calls_served == 2


def test_agent_context_tokens_is_a_checked_config_key():
    assert SearchConfig(agent_context_tokens=4096).agent_context_tokens == 4096
    for bad in (100, 0, "2k", 1.5):
        with pytest.raises(ConfigError, match="agent_context_tokens"):
            SearchConfig(agent_context_tokens=bad)


async def test_the_search_command_prints_and_records_how_the_agents_replies_went(tmp_path):
    reply = json.dumps({"feedback": "Probe a second layer.", "step_size": 0.3})
    async with DialectServer(accepts=(LLAMA,), n_ctx=4096, props=True, reply=reply) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pytts.cli", "search", "--demo", "--agent", "llm",
            "--agent-endpoint", server.base_url, "--agent-model", "agent", "--n-evals", "10",
            "--runs-dir", str(tmp_path), "--name", "r", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode == 0, err.decode()
    stats = json.loads((tmp_path / "r" / "llm_replies.json").read_text())
    assert stats["requests"] == len(server.chat) >= 2
    assert (stats["fell_back"], stats["context_overflows"]) == (0, 0)
    assert (stats["context_window"], stats["schema_form"]) == (4096, LLAMA)
    line = f"{stats['requests']} requests, 0 replies fell back, 0 context overflows"
    assert line in " ".join(out.decode().split())
    assert line in (tmp_path / "r" / "summary.md").read_text()
