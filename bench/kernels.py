"""Side-by-side timings of the compiled kernels (``pytts._core``), the NumPy reference
(``pytts._reference``) and a numba port (``bench.numba_impl``), printed as a ratio table.

Run ``python -m bench.kernels`` (``--quick`` for a smaller run). Every implementation is timed on
the same inputs in one process, through the array-level functions (no Python-face overhead);
each row reports the best thread CPU time of a few repeats and its ratio to the compiled kernel.
"""

from __future__ import annotations

import os

# OpenBLAS (pulled in by scipy) keeps worker threads spinning after use, which steals the other
# core of a small machine from whatever is being timed; none of the timed code needs BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from pytts import CostModel, ModelPool, ModelSpec, ProbGraph  # noqa: E402
from pytts import _reference as ref  # noqa: E402
from pytts.cost import flops_per_token  # noqa: E402

try:
    from pytts import _core as core
except ImportError as exc:  # the benchmark is about the extension: say so plainly
    raise SystemExit(f"pytts._core is not built ({exc}); run `python setup.py build_ext "
                     "--inplace` or `pip install -e .` first") from exc

try:
    from bench import numba_impl
except ImportError:  # numba is an optional (bench/test) dependency
    numba_impl = None

D, W, K, R = 4, 8, 6, 2
BASE_PROMPT = 100.0
PER_CALL = ("per call: pg.sample(1, seed)", "per call: pg.sample(1, seed, budget, cost)",
            "per call: sampled row -> CollaborationGraph")
PER_CALL_TARGET_US = (10.0, 15.0, 10.0)
REJECT = 0.45  # fraction of unconditioned draws the benchmark budget rejects


@dataclass(frozen=True)
class Workload:
    logits: tuple[np.ndarray, ...]
    costs: np.ndarray
    budget: float
    graphs: tuple[np.ndarray, np.ndarray, np.ndarray]  # n unconditioned samples
    ids: np.ndarray
    vote_weights: np.ndarray
    answers: list[str | None]


def make_workload(n: int, q: int, b: int, seed: int = 0) -> Workload:
    """Random-ish logits (N(0, 1)) on the D x W template, a pool of K models of very different
    sizes, and a budget at the (1 - REJECT) quantile of the unconditioned FLOPs."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=D), rng.normal(size=(D, D, W)), rng.normal(size=(D, W, K)),
              rng.normal(size=(D, W, R)), rng.normal(size=(D - 1, W, W)))
    costs = np.column_stack([flops_per_token(rng.uniform(0.5, 70, K)), rng.uniform(50, 500, K),
                             rng.uniform(500, 5000, K), rng.uniform(20, 100, K),
                             rng.uniform(0, 0.5, K)])
    model, role, edges, _, _ = core.sample_graphs(*logits, None, BASE_PROMPT, n, seed + 1,
                                                  math.inf, n)
    flops, _ = core.graph_cost(model, role, edges, costs, BASE_PROMPT)
    budget = float(np.quantile(flops, 1.0 - REJECT))
    # Answers as a vote sees them: a handful of distinct interned answers per question, ~10%
    # missing, skewed so that there is usually a clear winner.
    vocab = core.intern_answers([f"answer {k}" for k in range(8)])
    ids = rng.choice(vocab, size=(q, b), p=[0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])
    ids = np.where(rng.random((q, b)) < 0.1, -1, ids).astype(np.int64)
    weights = rng.uniform(0.0, 1.0, (q, b))
    answers = [None if k % 17 == 0 else f"{rng.integers(0, 10**6)}" for k in range(n)]
    return Workload(logits, costs, budget, (model, role, edges), ids, weights, answers)


def best_times(fns: list[tuple[Callable[[], object], int]]) -> list[float]:
    """Best CPU time of the calling thread of each function over its number of runs.

    Thread CPU time, not wall time: the targets are per core, every implementation timed here
    runs on the calling thread only, and on a shared machine wall time also counts the moments
    other processes held the core. The functions run round-robin (after one warm-up run each:
    page faults, numba's compilation, lazy imports), so that a noisy stretch of the machine
    hits all of them alike rather than one implementation's whole series.
    """
    for fn, _ in fns:
        fn()
    best = [math.inf] * len(fns)
    for rnd in range(max(reps for _, reps in fns)):
        for k, (fn, reps) in enumerate(fns):
            if rnd < reps:
                t0 = time.thread_time()
                fn()
                best[k] = min(best[k], time.thread_time() - t0)
    return best


@dataclass
class Row:
    operation: str
    impl: str
    seconds: float
    items: float
    unit: str


def run(n: int, q: int, b: int, repeat: int, ref_repeat: int) -> list[Row]:
    wl = make_workload(n, q, b)
    lg, costs, budget = wl.logits, wl.costs, wl.budget
    model, role, edges = wl.graphs
    rows: list[Row] = []
    max_draws = 100 * n
    pending: list[tuple[str, str, Callable[[], object], float, str, int]] = []

    def add(operation: str, impl: str, fn: Callable[[], object], items: float, unit: str,
            reps: int) -> None:
        if pending and pending[-1][0] != operation:
            flush()
        pending.append((operation, impl, fn, items, unit, reps))

    def flush() -> None:
        times = best_times([(fn, reps) for _, _, fn, _, _, reps in pending])
        for (operation, impl, _, items, unit, _), t in zip(pending, times):
            rows.append(Row(operation, impl, t, items, unit))
        pending.clear()

    # Sampling: each implementation's tables are built once (as a ProbGraph keeps them), so the
    # rows time the draws. The reference, a Python loop, draws a tenth as many graphs.
    samplers = {"core": core.Sampler(*lg), "reference": ref.Sampler(*lg)}
    if numba_impl is not None:
        samplers["numba"] = numba_impl.Sampler(*lg)
    out = samplers["core"].sample(costs, BASE_PROMPT, n, 7, budget, max_draws)
    drawn = out[4]
    for label, conditioned in ((f"sample+cost+feasible n={n} (reject ~{REJECT:.0%})", True),
                               (f"sample (no budget) n={n}", False)):
        limit = budget if conditioned else math.inf
        for impl, sampler in samplers.items():
            m = n if impl != "reference" else n // 10
            op = label
            if impl == "numba":
                check = sampler.sample(costs, BASE_PROMPT, n, 7, limit, max_draws)
                want = samplers["core"].sample(costs, BASE_PROMPT, n, 7, limit, max_draws)
                if not all(np.array_equal(x, y) for x, y in zip(check, want)):
                    op += " [numba differs!]"
            add(op, impl, lambda s=sampler, m=m, limit=limit: s.sample(
                costs, BASE_PROMPT, m, 7, limit, max_draws), m, "graphs",
                repeat if impl != "reference" else ref_repeat)

    op = f"graph_cost B={n}"
    add(op, "core", lambda: core.graph_cost(model, role, edges, costs, BASE_PROMPT), n, "graphs",
        repeat)
    add(op, "reference", lambda: ref.graph_cost(model, role, edges, costs, BASE_PROMPT), n,
        "graphs", ref_repeat)
    if numba_impl is not None:
        add(op, "numba", lambda: numba_impl.graph_cost(model, role, edges, costs, BASE_PROMPT), n,
            "graphs", repeat)

    op = f"feasible B={n}"
    add(op, "core", lambda: core.feasible(model, role, edges, costs, BASE_PROMPT, budget), n,
        "graphs", repeat)
    add(op, "reference", lambda: ref.feasible(model, role, edges, costs, BASE_PROMPT, budget), n,
        "graphs", ref_repeat)

    op = f"log_prob B={n}"
    add(op, "core", lambda: core.log_prob(*lg, model, role, edges), n, "graphs", repeat)
    add(op, "reference", lambda: ref.log_prob(*lg, model, role, edges), n, "graphs", ref_repeat)

    adv = np.random.default_rng(3).normal(size=n)
    op = f"grad_log_prob B={n}"
    add(op, "core", lambda: core.grad_log_prob(*lg, model, role, edges, adv), n, "graphs",
        repeat)
    add(op, "reference", lambda: ref.grad_log_prob(*lg, model, role, edges, adv), n, "graphs",
        ref_repeat)

    ids, weights = wl.ids, wl.vote_weights
    for label, w in (("counts", None), ("weighted", weights)):
        op = f"vote {label} Q={q} x B={b}"
        add(op, "core", lambda w=w: core.vote(ids, w), q, "rows", repeat)
        add(op, "reference", lambda w=w: ref.vote(ids, w), q, "rows", ref_repeat)
        if w is None:
            from scipy import stats
            # Not the same contract (missing answers are not skipped, ties go to the smallest
            # id), but the usual off-the-shelf answer to "most common value per row".
            add(op, "scipy.stats.mode", lambda: stats.mode(ids, axis=1), q, "rows", repeat)

    answers = wl.answers
    op = f"intern_answers {len(answers)} short str"
    add(op, "core", lambda: core.intern_answers(answers), len(answers), "strings", repeat)
    add(op, "reference", lambda: ref.intern_answers(answers), len(answers), "strings",
        ref_repeat)

    # Per call, through the Python face, as an ask/tell searcher calls it (ProbGraph and cost
    # model made once; the first call builds their cached tables).
    pool = ModelPool([ModelSpec(f"m{k}", "fam", float(costs[k, 0] / flops_per_token(1.0)),
                                out_tokens=float(costs[k, 1])) for k in range(K)])
    cost = CostModel(pool, prompt_tokens=BASE_PROMPT)
    pg = ProbGraph(*(a.copy() for a in lg), model_names=pool.names)
    per_call_budget = f"8x {pool.names[0]}"
    batch, _, _ = pg.sample(1, 0)
    calls = 2000 if repeat > 1 else 200
    for op, fn in ((PER_CALL[0], lambda: pg.sample(1, 5)),
                   (PER_CALL[1], lambda: pg.sample(1, 5, budget=per_call_budget, cost=cost)),
                   (PER_CALL[2], lambda: batch.graph(0, pool.names))):
        add(op, "core", lambda fn=fn: [fn() for _ in range(calls)], calls, "calls", repeat)

    flush()
    rows.append(Row("(acceptance of the conditioned sampler)", f"{n}/{drawn} draws", 0.0, 0, ""))
    return rows


def format_table(rows: list[Row]) -> str:
    core_time = {r.operation: r.seconds / r.items for r in rows if r.impl == "core" and r.items}
    lines = [f"{'operation':<44} {'impl':<17} {'time':>10} {'rate':>16} {'vs core':>9}",
             "-" * 100]
    last = None
    for r in rows:
        if not r.items:
            lines.append(f"{r.operation:<44} {r.impl}")
            continue
        if last is not None and r.operation != last:
            lines.append("")
        last = r.operation
        rate = r.items / r.seconds
        ratio = (r.seconds / r.items / core_time[r.operation] if r.operation in core_time
                 else float("nan"))
        lines.append(f"{r.operation:<44} {r.impl:<17} {r.seconds * 1e3:>8.2f}ms "
                     f"{rate / 1e6:>9.2f}M {r.unit:<6} {ratio:>8.1f}x")
    return "\n".join(lines)


def targets(rows: list[Row]) -> str:
    by = {(r.operation, r.impl): r for r in rows if r.items}
    lines = []
    for op, impl, want in (("sample+cost+feasible", "reference", 20.0),
                           ("sample+cost+feasible", "numba", 3.0),
                           ("sample (no budget)", "numba", 3.0),
                           ("vote counts", "reference", 10.0),
                           ("vote weighted", "reference", 10.0)):
        for (o, i), r in by.items():
            if o.startswith(op) and i == impl:
                core_row = by[(o, "core")]
                ratio = (r.seconds / r.items) / (core_row.seconds / core_row.items)
                lines.append(f"  core vs {impl:<10} on {op:<22} {ratio:7.1f}x (target >= {want:g}x)"
                             f" {'ok' if ratio >= want else 'MISSED'}")
    for (o, i), r in by.items():
        for op, want in (("sample+cost+feasible", 5.0), ("sample (no budget)", 8.0)):
            if o.startswith(op) and i == "core":
                rate = r.items / r.seconds / 1e6
                lines.append(f"  core {op}: {rate:.2f}M accepted graphs/s on one core "
                             f"(target >= {want:g}M) {'ok' if rate >= want else 'MISSED'}")
    for op, want in zip(PER_CALL, PER_CALL_TARGET_US):
        r = by[(op, "core")]
        us = r.seconds / r.items * 1e6
        lines.append(f"  {op}: {us:.1f} us (target <= {want:g} us) "
                     f"{'ok' if us <= want else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller inputs, one repeat")
    parser.add_argument("--repeat", type=int, default=5, help="repeats of the fast implementations")
    args = parser.parse_args(argv)
    n, q, b = (10_000, 1_000, 64) if args.quick else (100_000, 10_000, 64)
    repeat = 1 if args.quick else args.repeat
    rows = run(n, q, b, repeat=repeat, ref_repeat=1 if args.quick else 2)
    print(f"pytts kernels: D={D} W={W} K={K} R={R}; best thread CPU time of {repeat} runs "
          f"(reference: fewer); numba {'on' if numba_impl else 'not installed'}")
    print(format_table(rows))
    print("targets:")
    print(targets(rows))


if __name__ == "__main__":
    main()
