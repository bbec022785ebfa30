"""Checkpoint cost as a search grows: time per evaluation near the start and near the end of a
1,000-evaluation run, with and without a checkpoint, and the checkpoint's size at the end.

The searcher is real (`RandomSearch` on the simulator's math-like pool, template and high
budget); the evaluator is a cheap stand-in (a result derived from the graph's canonical key), so
the figures measure the search loop and its checkpoint, not LLM calls. A flat cost means the
time per evaluation at ~1,000 stays close to that at ~10.

Two clocks: wall time, and the CPU time of the event loop's thread (what the loop itself
spends; file writes happen on the checkpoint's writer thread). On a shared, loaded machine the
wall-clock figures are noisy: each figure is the median over ``--repeat`` runs (the modes take
turns, so they share the machine's conditions), and the loop's CPU time is the steadier measure
of growth.

    python bench/checkpoint.py [--evals 1000] [--batch-size 1] [--window 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pytts.evaluate import EvalResult
from pytts.graph import CollaborationGraph
from pytts.search import RandomSearch, SearchProgress, run_search
from pytts.sim import SimulatedPool

PRESET = "math-like"
BUDGET = "high"


class HashEvaluator:
    """A deterministic result per graph, derived from its canonical key (no LLM, microseconds).

    Correctness of each of ``n_questions`` questions is one bit of the key's digest stream, so
    results differ between graphs (the Pareto fronts and the best graph move as in a search).
    """

    def __init__(self, cost, n_questions: int = 100) -> None:
        self.cost = cost
        self.n_questions = n_questions

    async def evaluate(self, graph: CollaborationGraph) -> EvalResult:
        seed = int.from_bytes(hashlib.sha256(graph.canonical_key().encode()).digest()[:8], "big")
        correct = np.random.default_rng(seed).random(self.n_questions) < 0.5
        flops, latency = self.cost.graph_cost(graph)
        return EvalResult.from_scores(list(correct), mean_flops=flops, mean_latency_s=latency,
                                      calls_made=graph.n_nodes)


def run_once(n_evals: int, batch_size: int, checkpoint: Path | None
             ) -> tuple[list[float], list[float]]:
    """Wall-clock and loop-thread CPU times at the start and as each evaluation finished
    (index i: evaluation i)."""
    sim = SimulatedPool(PRESET)
    cost = sim.cost_model()
    searcher = RandomSearch(sim.pool, sim.template, cost, sim.budgets[BUDGET], seed=0)
    wall = [time.perf_counter()]
    cpu = [time.thread_time()]

    def on_progress(p: SearchProgress) -> None:
        if p.n_evals >= len(wall):
            wall.append(time.perf_counter())
            cpu.append(time.thread_time())

    report = asyncio.run(run_search(searcher, HashEvaluator(cost), n_evals,
                                    batch_size=batch_size, checkpoint=checkpoint,
                                    progress=on_progress))
    if report.n_evals != n_evals:
        raise SystemExit(f"the search stopped after {report.n_evals} evaluations "
                         f"({report.stopped}); the bench needs {n_evals}")
    return wall, cpu


def per_eval_ms(stamps: list[float], first: int, last: int) -> float:
    """Median milliseconds per evaluation over evaluations ``first..last`` (1-based)."""
    return float(statistics.median(np.diff(stamps)[first - 1:last] * 1e3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--window", type=int, default=20,
                        help="evaluations averaged at each end (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (default 3)")
    args = parser.parse_args()
    n, w = args.evals, args.window
    early, late = (1, w), (n - w + 1, n)
    print(f"RandomSearch on sim preset {PRESET!r} (budget {BUDGET!r}), {n} evaluations, "
          f"batch size {args.batch_size}; median ms per evaluation over evaluations "
          f"{early[0]}-{early[1]} (early) and {late[0]}-{late[1]} (late), median of "
          f"{args.repeat} runs")
    modes = ("no checkpoint", "checkpoint")
    figures: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            for mode in modes:
                ckpt = Path(tmp) / f"ckpt{run}" if mode == "checkpoint" else None
                wall, cpu = run_once(n, args.batch_size, ckpt)
                for clock, stamps in (("wall", wall), ("loop CPU", cpu)):
                    figures.setdefault((mode, clock), []).append(
                        (per_eval_ms(stamps, *early), per_eval_ms(stamps, *late),
                         stamps[-1] - stamps[0]))
        print(f"{'mode':<15}{'clock':<10}{'early':>8}{'late':>8}{'late/early':>12}{'total s':>9}")
        for (mode, clock), runs in figures.items():
            e, l_, total = (statistics.median(x) for x in zip(*runs))
            print(f"{mode:<15}{clock:<10}{e:>8.2f}{l_:>8.2f}{l_ / e:>11.2f}x{total:>9.1f}")
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.1f} KB"
                          for p in sorted((Path(tmp) / "ckpt0").iterdir()))
        print(f"checkpoint after {n} evaluations: {sizes}")


if __name__ == "__main__":
    main()
