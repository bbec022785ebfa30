"""GraphExecutor and Evaluator against a local fake OpenAI server: concurrency, failures, costs."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from fake_openai import FakeOpenAI

from pytts import CollaborationGraph, EndpointUnreachableError, LLMError, ModelPool
from pytts.evaluate import Evaluator
from pytts.execute import GraphExecutor
from pytts.llm.openai import RetryPolicy
from pytts.llm.router import RoutedClient
from pytts.tasks.arith import ArithTask

DELAY_S = 0.25


def _pool(base_url: str) -> ModelPool:
    """Pool names mapped onto the fake server's behaviours."""
    spec = {"family": "fake", "params_b": 1.0, "endpoint": base_url}
    return ModelPool.from_dicts([
        {"name": "slow", "api_model": "slow", **spec},
        {"name": "ok", "api_model": "ok", **spec},
        {"name": "broken", "api_model": "400", **spec},
        {"name": "down", "api_model": "drop", **spec},
    ])


@pytest.fixture
async def fake():
    async with FakeOpenAI(slow_s=DELAY_S) as server:
        yield server


async def test_parallel_branches_overlap_width_8_depth_2_takes_two_delays(fake):
    pool = _pool(fake.base_url)
    task = ArithTask(n=1, seed=0)
    client = RoutedClient(pool, max_concurrency=64)
    try:
        executor = GraphExecutor(client, pool, task)
        graph = CollaborationGraph.layered([[0] * 8, [0] * 8], pool.names)
        start = time.perf_counter()
        result = await executor.run(graph, task.questions[0])
        elapsed = time.perf_counter() - start
    finally:
        await client.aclose()
    assert fake.hits["slow"] == 16
    assert 2 * DELAY_S <= elapsed < 4 * DELAY_S, elapsed       # not 16 delays
    assert len(result.nodes) == 16 and not result.failed
    # FLOPs from real usage: 16 calls x 2e9 x 1B params x (prompt + completion tokens)
    assert result.flops == pytest.approx(
        2e9 * (result.prompt_tokens + result.completion_tokens))
    assert result.calls_made == 16 and result.calls_served == 0


async def test_a_failed_node_is_reported_and_the_vote_uses_what_arrived(fake):
    pool = _pool(fake.base_url)
    task = ArithTask(n=1, seed=0)
    client = RoutedClient(pool, retry=RetryPolicy(max_retries=0))
    try:
        executor = GraphExecutor(client, pool, task)
        graph = CollaborationGraph.layered([[1, 2, 1]], pool.names)
        result = await executor.run(graph, task.questions[0])
        assert not result.failed
        errors = [n for n in result.nodes if n.error]
        assert [n.model for n in errors] == ["broken"] and "400" in errors[0].error
        arrived = [n.answer for n in result.nodes if n.error is None]
        assert len(arrived) == 2 and result.answer in arrived    # voted on what arrived
        all_broken = CollaborationGraph.layered([[2], [1]], pool.names)
        dead = await executor.run(all_broken, task.questions[0])
        assert dead.failed and "no sink answered" in dead.error
        assert dead.nodes[1].error and "every predecessor failed" in dead.nodes[1].error
    finally:
        await client.aclose()


class _Silent:
    """A client whose calls never return (a server that accepted and went quiet)."""

    async def complete(self, model, messages, **kwargs):
        await asyncio.sleep(3600)

    async def aclose(self) -> None:
        pass


async def test_a_call_past_the_executor_timeout_is_a_timeout_error_on_its_node():
    pool = _pool("http://127.0.0.1:1/v1")
    task = ArithTask(n=1, seed=0)
    executor = GraphExecutor(_Silent(), pool, task, timeout_s=0.05)
    result = await executor.run(CollaborationGraph.layered([[1]], pool.names), task.questions[0])
    assert result.failed and "no reply within timeout_s = 0.05s" in result.nodes[0].error


async def test_evaluator_reports_accuracy_interval_and_raises_when_everything_failed(fake):
    pool = _pool(fake.base_url)
    task = ArithTask(n=6, seed=1)
    client = RoutedClient(pool, retry=RetryPolicy(max_retries=0))
    try:
        evaluator = Evaluator(GraphExecutor(client, pool, task), concurrency=4)
        result = await evaluator.evaluate(CollaborationGraph.layered([[1]], pool.names))
        assert result.n_questions == 6 and len(result.correct) == 6
        assert 0 <= result.ci_low <= result.accuracy <= result.ci_high <= 1
        assert result.calls_made == 6 and result.mean_flops > 0
        with pytest.raises(LLMError, match="every question failed"):
            await evaluator.evaluate(CollaborationGraph.layered([[2]], pool.names))
    finally:
        await client.aclose()


async def test_same_call_in_two_graphs_gets_the_same_seed_and_parallel_copies_differ(fake):
    pool = _pool(fake.base_url)
    task = ArithTask(n=1, seed=0)
    client = RoutedClient(pool)
    try:
        executor = GraphExecutor(client, pool, task, seed=7)
        await executor.run(CollaborationGraph.layered([[1, 1, 1]], pool.names), task.questions[0])
        seeds_wide = [r["seed"] for r in fake.requests]
        fake.requests.clear()
        await executor.run(CollaborationGraph.layered([[1, 1]], pool.names), task.questions[0])
        seeds_narrow = [r["seed"] for r in fake.requests]
    finally:
        await client.aclose()
    assert len(set(seeds_wide)) == 3                            # parallel samples differ
    # the k-th identical call of any graph has the same seed: the narrow graph's calls are
    # two of the wide graph's (common random numbers)
    assert len(set(seeds_narrow)) == 2 and set(seeds_narrow) < set(seeds_wide)


async def test_evaluator_stops_after_one_wave_when_no_call_reaches_the_endpoint(fake, caplog):
    caplog.set_level(logging.DEBUG, "pytts.llm")
    pool = _pool(fake.base_url)
    task = ArithTask(n=20, seed=0)
    client = RoutedClient(pool, retry=RetryPolicy(2, backoff_base_s=0.01))
    try:
        evaluator = Evaluator(GraphExecutor(client, pool, task), concurrency=4)
        with pytest.raises(EndpointUnreachableError, match="first 4 question") as info:
            await evaluator.evaluate(CollaborationGraph.layered([[3, 3]], pool.names))
    finally:
        await client.aclose()
    assert info.value.endpoint == fake.base_url and "\n" not in str(info.value)
    # The wave: 4 questions x 2 calls x 3 attempts, plus first attempts of the questions that
    # started as it ended; all 20 questions would have made 120.
    assert 24 <= fake.hits["drop"] < 48
    assert [r.levelno >= logging.WARNING for r in caplog.records].count(True) == 1


async def test_evaluator_does_not_stop_early_while_some_calls_get_through(fake):
    pool = _pool(fake.base_url)
    task = ArithTask(n=8, seed=0)
    client = RoutedClient(pool, retry=RetryPolicy(1, backoff_base_s=0.01))
    try:
        evaluator = Evaluator(GraphExecutor(client, pool, task), concurrency=4)
        result = await evaluator.evaluate(CollaborationGraph.layered([[1, 3]], pool.names))
    finally:
        await client.aclose()
    assert result.n_failed == 0 and result.calls_made == 8
    assert fake.hits["drop"] == 16 and fake.hits["ok"] == 8


def test_wilson_interval_gives_scipys_floats_without_importing_scipy_stats():
    from scipy.stats import binomtest

    from pytts.evaluate import wilson_interval
    for n in (1, 2, 7, 40, 333):
        for k in sorted({0, 1, n // 3, n - 1, n}):
            for confidence in (0.9, 0.95, 0.99):
                ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
                assert wilson_interval(k, n, confidence) == (ci.low, ci.high), (k, n, confidence)
    assert wilson_interval(0, 0) == (0.0, 1.0)
