"""Side-by-side timings of the simulator: the text path (GraphExecutor over a SimulatedPool)
against the latent-code kernel (`pytts.sim.evaluator.LatentEvaluator`), and the ground truth
(`expected_accuracy`) on the compiled kernel against its NumPy twin.

Run ``python -m bench.simulator`` (``--quick`` for fewer repeats). Every row is the best thread
CPU time of a few repeats, measured in one process on the same graph: a 7-node math-like graph
(four first answers, two fusers, a final fuser), scored on 50 dev questions (one run each) or
on the 200 test questions x 2000 samples of `expected_accuracy`'s defaults.
"""

from __future__ import annotations

import os

# OpenBLAS (pulled in by scipy) keeps worker threads spinning after use, which steals the other
# core of a small machine from whatever is being timed; none of the timed code needs BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from pytts.evaluate import Evaluator  # noqa: E402
from pytts.execute import GraphExecutor  # noqa: E402
from pytts.graph import CollaborationGraph  # noqa: E402
from pytts.sim import SimulatedPool, kernel, simulate_reference  # noqa: E402
from pytts.sim.evaluator import LatentEvaluator  # noqa: E402

LAYERS = [["qwen2.5-1.5b", "qwen2.5-3b", "llama3.2-3b", "llama3.1-8b"],
          ["qwen2.5-7b", "qwen2.5-3b"], ["qwen2.5-7b"]]


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best thread CPU time of ``fn`` over ``repeat`` runs (the machine is shared, so the
    minimum is the run least disturbed by others)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def run(repeat: int) -> list[tuple[str, str, float]]:
    """``(operation, implementation, seconds)`` rows."""
    sim = SimulatedPool("math-like")
    names = sim.pool.names
    graph = CollaborationGraph.layered([[names.index(m) for m in layer] for layer in LAYERS],
                                       names)
    task = sim.task(50)
    rows = []
    seeds = iter(range(10**6))  # a fresh executor seed per text run: no reuse between runs
    text = lambda: Evaluator(GraphExecutor(sim, sim.pool, task,  # noqa: E731
                                           seed=next(seeds))).evaluate_sync(graph)
    fast = LatentEvaluator(sim, task.questions)
    fast.evaluate_sync(graph)
    op = f"evaluate {graph.n_nodes}-node graph, 50 questions"
    rows.append((op, "text path", best_time(text, max(2, repeat // 4))))
    rows.append((op, "latent kernel", best_time(lambda: fast.evaluate_sync(graph), 10 * repeat)))

    op = "expected_accuracy, 200 questions x 2000 samples"
    sim.expected_accuracy(graph)  # builds the test questions and thresholds once
    core_impl = kernel._impl
    kernel._impl = simulate_reference
    try:
        rows.append((op, "NumPy twin", best_time(lambda: sim.expected_accuracy(graph),
                                                 max(2, repeat // 4))))
    finally:
        kernel._impl = core_impl
    rows.append((op, f"kernel ({kernel.BACKEND})",
                 best_time(lambda: sim.expected_accuracy(graph), repeat)))
    return rows


def format_table(rows: list[tuple[str, str, float]]) -> str:
    """One line per row: operation, implementation, milliseconds, and the ratio to the first
    implementation of the operation (how many times faster than it)."""
    lines = [f"{'operation':50} {'implementation':16} {'ms':>10} {'x faster':>9}"]
    first: dict[str, float] = {}
    for op, impl, seconds in rows:
        base = first.setdefault(op, seconds)
        lines.append(f"{op:50} {impl:16} {seconds * 1e3:10.3f} {base / seconds:9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    print(format_table(run(repeat=4 if args.quick else 20)))


if __name__ == "__main__":
    main()
