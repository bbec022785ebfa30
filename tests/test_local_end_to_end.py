"""The whole execution path against the real embedded model (SmolLM2-135M on llama.cpp)."""

from __future__ import annotations

import pytest

from pytts import CollaborationGraph, ModelPool
from pytts.evaluate import Evaluator
from pytts.execute import GraphExecutor
from pytts.llm.bank import BankedClient, ResponseBank
from pytts.llm.local import local_pool_specs
from pytts.llm.router import RoutedClient
from pytts.tasks.arith import ArithTask

pytestmark = [pytest.mark.server, pytest.mark.slow]


async def test_executor_runs_a_three_node_graph_on_the_real_model(local_server, tmp_path):
    pool = ModelPool.from_dicts(local_pool_specs(local_server.base_url))
    task = ArithTask(n=1, seed=0)
    routed = RoutedClient(pool, max_concurrency=2)
    bank = ResponseBank(tmp_path / "bank.sqlite")
    try:
        executor = GraphExecutor(BankedClient(routed, bank), pool, task, max_tokens=96)
        graph = CollaborationGraph.layered([[0, 1], [2]], pool.names)   # 2 answers, 1 fuser
        result = await executor.run(graph, task.questions[0])
    finally:
        await routed.aclose()
        bank.close()
    assert not result.failed, result.error
    assert [n.role for n in result.nodes] == ["assistant", "assistant", "fuser"]
    assert all(n.text and n.completion_tokens > 0 for n in result.nodes)
    fused = result.nodes[2]
    assert fused.prompt_tokens > max(n.prompt_tokens for n in result.nodes[:2])  # read inputs
    assert result.answer == fused.answer                          # the only sink
    assert result.flops == pytest.approx(
        2e9 * 0.135 * (result.prompt_tokens + result.completion_tokens))
    assert result.latency_s >= fused.latency_s + min(n.latency_s for n in result.nodes[:2])


async def test_evaluator_on_ten_arith_questions_then_replay_makes_no_call(local_server, tmp_path):
    pool = ModelPool.from_dicts(local_pool_specs(local_server.base_url))
    task = ArithTask(n=10, seed=3)
    graph = CollaborationGraph.layered([[0, 0]], pool.names)
    path = tmp_path / "bank.sqlite"

    routed = RoutedClient(pool, max_concurrency=2)
    bank = ResponseBank(path)
    try:
        first = await Evaluator(GraphExecutor(BankedClient(routed, bank), pool, task,
                                              max_tokens=96), concurrency=4).evaluate(graph)
    finally:
        await routed.aclose()
        bank.close()
    assert first.n_questions == 10 and first.n_failed == 0
    assert first.calls_made == 20 and first.calls_served == 0
    assert 0 <= first.ci_low <= first.accuracy <= first.ci_high <= 1

    # replay-only: a bank that may not call any server serves every call
    routed = RoutedClient(pool)
    bank = ResponseBank(path, replay_only=True)
    try:
        executor = GraphExecutor(BankedClient(routed, bank), pool, task, max_tokens=96)
        again = await Evaluator(executor, concurrency=4).evaluate(graph)
        assert again.calls_made == 0 and again.calls_served == 20
        assert again.correct == first.correct and again.answers == first.answers
        assert again.mean_flops == first.mean_flops
        assert again.mean_latency_s == pytest.approx(first.mean_latency_s)
        # a call the bank never saw is an error in replay-only mode, not a silent call
        wider = CollaborationGraph.layered([[0, 0, 0]], pool.names)
        result = await executor.run(wider, task.questions[0])
        errors = [n.error for n in result.nodes if n.error]
        assert len(errors) == 1 and "replay-only bank" in errors[0]
        assert result.answer is not None                        # the two banked answers voted
    finally:
        await routed.aclose()
        bank.close()
