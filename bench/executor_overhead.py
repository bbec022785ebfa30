"""Orchestration overhead per LLM call: GraphExecutor + Evaluator against an instant client.

``python -m bench.executor_overhead`` evaluates a 7-node graph (4 answers, 2 fusers, 1 refiner)
on 200 arith questions through a client that answers at once, and compares the time per call
with a bare loop that makes the same number of calls through the same client with the same
concurrency. The difference is what pytts adds per call: prompts, role templates, seeds, the
dependency wait, extraction, the vote kernel and the accuracy bookkeeping.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from pytts import CollaborationGraph
from pytts.demo_pool import demo_pool
from pytts.evaluate import Evaluator
from pytts.execute import GraphExecutor
from pytts.llm.base import Completion
from pytts.tasks.arith import ArithTask

N_QUESTIONS = 200
REPEATS = 7


class InstantClient:
    """An LLMClient that answers every request at once with a fixed completion."""

    async def complete(self, model, messages, *, n=1, temperature=0.7, max_tokens=256,
                       seed=None, stop=None):
        return [Completion("The answer is 7.", 40, 6, 0.01, model)]

    async def aclose(self) -> None:
        return None


async def _bare(client: InstantClient, n_calls: int, concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)
    messages = [{"role": "user", "content": "2+5?"}]

    async def one() -> None:
        async with limit:
            await client.complete("m", messages, seed=1)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n_calls)))
    return time.perf_counter() - start


async def _pytts(evaluator: Evaluator, graph: CollaborationGraph) -> float:
    start = time.perf_counter()
    await evaluator.evaluate(graph)
    return time.perf_counter() - start


def measure() -> dict[str, float]:
    pool = demo_pool()
    task = ArithTask(n=N_QUESTIONS, seed=0)
    graph = CollaborationGraph.layered([[0, 1, 2, 3], [4, 5], [0]], pool.names, template=(4, 8))
    client = InstantClient()
    evaluator = Evaluator(GraphExecutor(client, pool, task), concurrency=32)
    n_calls = N_QUESTIONS * graph.n_nodes

    async def run() -> tuple[list[float], list[float]]:
        bare, full = [], []
        await _pytts(evaluator, graph)                      # warm caches (graph plan, imports)
        for _ in range(REPEATS):                            # interleaved: same machine state
            bare.append(await _bare(client, n_calls, 32))
            full.append(await _pytts(evaluator, graph))
        return bare, full

    bare, full = asyncio.run(run())
    per_bare = statistics.median(bare) / n_calls * 1e6
    per_full = statistics.median(full) / n_calls * 1e6
    return {"calls": n_calls, "bare_us": per_bare, "pytts_us": per_full,
            "overhead_us": per_full - per_bare}


def main() -> None:
    r = measure()
    print(f"{r['calls']} calls per evaluation, median of {REPEATS}")
    print(f"| path | us per call |\n|---|---|\n| bare asyncio loop | {r['bare_us']:.1f} |\n"
          f"| executor + evaluator | {r['pytts_us']:.1f} |\n"
          f"| overhead added by pytts | {r['overhead_us']:.1f} |")


if __name__ == "__main__":
    main()
