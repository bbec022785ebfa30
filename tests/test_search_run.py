"""run_search: dedupe by canonical key, concurrency within a batch, stopping rules, progress,
Pareto fronts, and checkpoints that survive a crash or a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_search_fakes import FACTORIES, ToyEvaluator, make_searcher

from pytts import CollaborationGraph
from pytts.search import Checkpoint, run_search, run_search_sync
from pytts.search.base import Searcher

TESTS = Path(__file__).parent
REPO = TESTS.parent


def keys_values(history) -> list[tuple]:
    return [(r.key, r.value, r.reused, r.feedback) for r in history]


class Stubborn(Searcher):
    """Proposes the same graph for ever."""

    name = "stubborn"

    async def _propose(self, n):
        return [CollaborationGraph.layered([[0]], self.model_names, template=self.template)]


class CrashingEvaluator(ToyEvaluator):
    """Raises on evaluation number ``crash_at`` (1-based): a crash in the middle of a batch."""

    def __init__(self, crash_at: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.crash_at = crash_at
        self.n = 0

    async def evaluate(self, graph):
        self.n += 1
        if self.n == self.crash_at:
            raise RuntimeError("simulated crash")
        return await super().evaluate(graph)


def test_repeated_proposals_are_told_the_cached_result_without_evaluating():
    searcher = make_searcher("reinforce", seed=0)
    ev = ToyEvaluator()
    report = run_search_sync(searcher, ev, 20, batch_size=4)
    assert report.n_evals == 20 == sum(ev.calls.values())
    assert all(c == 1 for c in ev.calls.values())
    assert report.n_reused > 0
    assert len(report.history) == report.n_evals + report.n_reused
    assert sum(not r.reused for r in report.history) == 20


def test_search_stops_when_the_space_is_exhausted():
    searcher = make_searcher("exhaustive", seed=0)
    report = run_search_sync(searcher, ToyEvaluator(), 10_000, batch_size=16)
    assert report.stopped == "exhausted"
    assert report.n_evals == searcher.n_graphs


def test_search_stops_when_no_new_graph_comes():
    cost = make_searcher("random").cost
    searcher = Stubborn(cost.pool, (2, 2), cost, "5x m")
    report = run_search_sync(searcher, ToyEvaluator(), 50, max_stale_asks=7)
    assert report.stopped == "stale"
    assert report.n_evals == 1 and report.n_reused == 7


def test_a_batch_is_evaluated_concurrently():
    ev = ToyEvaluator(delay_s=0.2)
    start = time.perf_counter()
    report = run_search_sync(make_searcher("random", seed=0), ev, 8, batch_size=4)
    assert report.n_evals == 8
    assert time.perf_counter() - start < 1.2  # 8 x 0.2 s one at a time


def test_progress_callback_sees_every_evaluation_and_the_best():
    seen = []
    report = run_search_sync(make_searcher("random", seed=1), ToyEvaluator(), 9, batch_size=3,
                             progress=seen.append)
    evals = [p.n_evals for p in seen]
    assert evals == sorted(evals) and set(range(1, 10)) <= set(evals)
    assert seen[-1].best_value == report.best_value
    assert seen[-1].calls_made == report.calls_made > 0


def test_pareto_fronts_hold_exactly_the_non_dominated_graphs():
    report = run_search_sync(make_searcher("exhaustive", seed=0), ToyEvaluator(), 60,
                             batch_size=8)
    for front, field in ((report.pareto_latency, "mean_latency_s"),
                         (report.pareto_flops, "mean_flops")):
        points = [(r.key, r.result.accuracy, getattr(r.result, field)) for r in report.history]
        expected, pairs = set(), set()
        for key, acc, cost in points:
            dominated = any(a >= acc and c <= cost and (a > acc or c < cost)
                            for _, a, c in points)
            if not dominated and (acc, cost) not in pairs:  # ties: the first one stands
                expected.add(key)
            pairs.add((acc, cost))
        assert {p.key for p in front.points()} == expected
        assert len(expected) >= 2


def test_the_tradeoff_plot_marks_the_same_front_the_search_keeps():
    from pytts.plots import pareto_mask

    report = run_search_sync(make_searcher("exhaustive", seed=0), ToyEvaluator(), 60,
                             batch_size=8)
    acc = [r.result.accuracy for r in report.history]
    flops = [r.result.mean_flops for r in report.history]
    marked = {(a, c) for a, c, keep in zip(acc, flops, pareto_mask(acc, flops)) if keep}
    assert marked == {(p.accuracy, p.cost) for p in report.pareto_flops.points()}
    assert len(marked) >= 2


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_crashed_run_resumes_to_the_same_history(name, tmp_path):
    straight = run_search_sync(make_searcher(name, seed=7), ToyEvaluator(), 24, batch_size=4)

    crashing = CrashingEvaluator(crash_at=11)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_search_sync(make_searcher(name, seed=7), crashing, 24, batch_size=4,
                        checkpoint=tmp_path)
    finishing = ToyEvaluator()
    resumed = run_search_sync(make_searcher(name, seed=7), finishing, 24, batch_size=4,
                              checkpoint=tmp_path)
    assert keys_values(resumed.history) == keys_values(straight.history)
    assert resumed.n_evals == 24
    # evaluations finished before the crash were persisted, not paid for again
    assert all(crashing.calls.get(k, 0) + finishing.calls.get(k, 0) == 1
               for k in set(crashing.calls) | set(finishing.calls))
    assert keys_values(Checkpoint.read_history(tmp_path)) == keys_values(straight.history)


def test_a_finished_run_extends_from_its_checkpoint(tmp_path):
    straight = run_search_sync(make_searcher("agent-reinforce", seed=2), ToyEvaluator(), 20,
                               batch_size=3)
    first = run_search_sync(make_searcher("agent-reinforce", seed=2), ToyEvaluator(), 9,
                            batch_size=3, checkpoint=tmp_path)
    assert first.n_evals == 9
    more = run_search_sync(make_searcher("agent-reinforce", seed=2), ToyEvaluator(), 20,
                           batch_size=3, checkpoint=tmp_path)
    assert keys_values(more.history) == keys_values(straight.history)


def test_checkpoint_files_are_json(tmp_path):
    run_search_sync(make_searcher("tpe", seed=0), ToyEvaluator(), 5, checkpoint=tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["run"]["n_evals"] == 5 and state["searcher"]["searcher"] == "tpe"
    assert not (tmp_path / "state.json.tmp").exists()
    assert "history" not in state["searcher"] and "trials" not in state["searcher"]["extra"]
    assert len(Checkpoint.read_history(tmp_path)) == state["history_lines"] >= 5
    journal = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert len(journal) == state["journal_lines"] >= 5  # TPE's finished trials


_CHILD = """
import sys
from test_search_fakes import ToyEvaluator, make_searcher
from pytts.search import run_search_sync
run_search_sync(make_searcher(sys.argv[1], seed=3), ToyEvaluator(delay_s=0.03), 30,
                batch_size=3, checkpoint=sys.argv[2])
"""


@pytest.mark.parametrize("name", ["agent-reinforce", "tpe"])
def test_sigkilled_run_resumes_to_the_same_history(name, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, name, str(tmp_path)], env=env)
    history = tmp_path / "history.jsonl"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if history.exists() and len(history.read_text().splitlines()) >= 10:
                break
            time.sleep(0.01)
        assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    straight = run_search_sync(make_searcher(name, seed=3), ToyEvaluator(), 30, batch_size=3)
    resumed = run_search_sync(make_searcher(name, seed=3), ToyEvaluator(), 30, batch_size=3,
                              checkpoint=tmp_path)
    assert keys_values(resumed.history) == keys_values(straight.history)
    assert keys_values(Checkpoint.read_history(tmp_path)) == keys_values(straight.history)


async def test_run_search_works_inside_a_running_event_loop():
    report = await run_search(make_searcher("random", seed=0), ToyEvaluator(), 4)
    assert report.n_evals == 4 and report.best_graph is not None
    assert asyncio.get_running_loop().is_running()
