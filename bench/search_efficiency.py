"""Search efficiency on generated landscapes: what each searcher *returns* after k evaluations,
scored against each landscape's reference optimum.

Run ``python -m bench.search_efficiency [--quick]``. Landscapes are `SimPreset.generate(seed)`
worlds (wide priors, nobody tuned for them): a fixed set (seeds 0..``--landscapes``-1) and a
set drawn at run time (``--drawn`` seeds from the clock, reported separately), each at its two
budgets. Every searcher runs ``--seeds`` times per landscape and budget through `run_search`
with racing (`RacingPolicy.for_questions(250)`: 25, 50, 100, 200 race questions, 50
confirmation questions and 3 fresh samples for the finalists, as the CLI races a dev set of
that size) on the simulator's
latent-code kernel (`LatentEvaluator`, one sample per question, keyed by the run's seed: all
searchers of one seed see the same dev noise; calls a run made before are served, as by the
product's bank). After 8, 16, 32 and 64 evaluations the
graph the search would hand a user (its confirmed selection) is scored by its expected accuracy
on the test split; the reference optimum comes from `pytts.sim.reference`.

Reported per searcher (``search_efficiency.md`` in ``--out``): median expected accuracy of the
returned graph and median regret to the optimum at each checkpoint, LLM calls spent by then,
paired win-rates against every other searcher, the gain over the searcher's best pilot where the
best pilot is far from the optimum, and the calls needed to come within 2 points of the optimum.
Agent-REINFORCE's ablations and racing-off rows are in the same table. The wall time of the
whole benchmark is printed and written. ``--noise-floor`` adds Agent-REINFORCE on seeds the grid
did not use, to tell its real per-landscape losses from those 5 seeds' luck alone makes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import math
import os
import statistics
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytts.graph import FUSER
from pytts.search import TPE, AgentReinforce, LLMOptimizer, RandomSearch, Reinforce, run_search
from pytts.search.racing import RacingPolicy
from pytts.sim import GroundTruth, SimPreset, SimulatedPool
from pytts.sim.evaluator import LatentEvaluator
from pytts.sim.reference import reference_optimum

CHECKPOINTS = (8, 16, 32, 64)
SELECT_AT = (4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64)
"""Where the returned graph is taken: the table's checkpoints and, between them, the points
that time when a search first comes within 2 points of the optimum."""
DRAWN_BASE = 10_000
"""Landscape seeds drawn at run time start here (fixed ones are 0, 1, ...)."""
MAX_STALE_ASKS = 10
"""Asks in a row with no new graph before a search counts as exhausted (every searcher)."""
DEV_QUESTIONS = 250
"""Each search's dev set: raced and confirmed by `RacingPolicy.for_questions` (25, 50, 100,
200 race questions, 50 confirmation questions), as the CLI races its dev set."""
TRUTH_SAMPLES = 300
RAISE_MARGIN = 0.0025
"""How far a returned graph must beat the reference search to raise the reference optimum
(`raised_references`): the returned graph's accuracy (`TRUTH_SAMPLES` samples) and the
reference's (thousands) each carry a Monte-Carlo error of about 0.05 points."""

# name -> (searcher class, keyword arguments, racing on)
SEARCHERS: dict[str, tuple[type, dict[str, Any], bool]] = {
    "agent-reinforce": (AgentReinforce, {}, True),
    "random": (RandomSearch, {}, True),
    "tpe": (TPE, {}, True),
    "reinforce": (Reinforce, {}, True),
    "llm-optimizer (offline)": (LLMOptimizer, {}, True),
    "ar: pilots only": (AgentReinforce, {"feedback": False, "surrogate": False,
                                         "moves": False, "probes": False}, True),
    "ar: no role probes": (AgentReinforce, {"probes": False}, True),
    "ar: no local moves": (AgentReinforce, {"moves": False}, True),
    "ar: no trust region": (AgentReinforce, {"trust_region": False}, True),
    "ar: uniform start": (AgentReinforce, {"pilots": False}, True),
    "ar: + REINFORCE step": (AgentReinforce, {"reinforce_lr": 0.5}, True),
    "agent-reinforce (racing off)": (AgentReinforce, {}, False),
    "random (racing off)": (RandomSearch, {}, False),
    # not in the default grid ("all"): name them with --searchers
    "ar: no surrogate": (AgentReinforce, {"surrogate": False}, True),
    "tpe (racing off)": (TPE, {}, False),
    # the REINFORCE baseline's learning rate (default 0.3) checked against smaller ones
    **{f"reinforce (lr {lr})": (Reinforce, {"lr": lr}, True) for lr in (0.1, 0.03, 0.01)},
}
DEFAULT_GRID = tuple(list(SEARCHERS)[:13])
MAIN = ("agent-reinforce", "random", "tpe", "reinforce", "llm-optimizer (offline)")


LLM_AGENT_ROW = "agent-reinforce (LLM agent)"
"""The row of Agent-REINFORCE with an LLM as its agent (``--llm-agent``), run apart."""
NOISE_ROW = "agent-reinforce (other seeds)"
"""Agent-REINFORCE again on seeds the grid did not use (``--noise-floor``): how often the
same searcher falls more than 1 point below a rival's median by the luck of 5 seeds alone."""
NOISE_RUNS = "search_efficiency_noise_floor.jsonl"


@dataclass(frozen=True)
class RunSpec:
    """One search run of the benchmark (``agent_endpoint``/``agent_model``: the LLM agent's
    OpenAI-compatible server and model, for `LLM_AGENT_ROW`)."""

    landscape: int
    budget: str
    searcher: str
    seed: int
    n_evals: int
    agent_endpoint: str | None = None
    agent_model: str | None = None


def _truth_of(truth: GroundTruth, graph: Any, cache: dict[str, float]) -> float:
    """``graph``'s expected test accuracy, once per run and graph (by ``canonical_key``, in
    ``cache``). A graph with the very arrays of one scored before on this landscape, by any
    run of this worker, takes that score: the same number, since the truth's draws are keyed by
    the arrays (the searchers of a landscape share their pilots and many of their graphs)."""
    key = graph.canonical_key()
    if key not in cache:
        scored = _scored(truth.preset.name)
        exact = graph.model.tobytes() + graph.role.tobytes() + graph.edges.tobytes()
        if exact not in scored:
            scored[exact] = truth.expected_accuracy(graph, n_samples=TRUTH_SAMPLES)[0]
        cache[key] = scored[exact]
    return cache[key]


@functools.lru_cache(maxsize=4)
def _scored(landscape: str) -> dict[bytes, float]:
    """Expected test accuracy by graph arrays, of the graphs this worker scored on
    ``landscape`` (at most four landscapes kept, as `_landscape` keeps)."""
    return {}


@functools.lru_cache(maxsize=4)
def _landscape(landscape: int) -> tuple[SimPreset, SimulatedPool, tuple[Any, ...], GroundTruth]:
    """A landscape's preset, simulated pool, dev questions and ground truth. None of them
    changes during a run, and a worker runs a landscape's runs one after another: made once
    per worker, not once per run (making them was about a third of a random search's run)."""
    preset = SimPreset.generate(landscape)
    sim = SimulatedPool(preset)
    return preset, sim, tuple(sim.task(DEV_QUESTIONS).questions), GroundTruth(preset)


def run_one(spec: RunSpec) -> dict[str, Any]:
    """One search; the returned graph's expected accuracy and the calls at each checkpoint."""
    preset, sim, questions, truth = _landscape(spec.landscape)
    cost = sim.cost_model()
    cls, kwargs, racing_on = ((AgentReinforce, {}, True) if spec.searcher == LLM_AGENT_ROW
                              else SEARCHERS[spec.searcher])
    evaluator = LatentEvaluator(sim, questions, seed=spec.seed)
    policy = RacingPolicy.for_questions(DEV_QUESTIONS)
    if not racing_on:  # every candidate runs on every race question
        policy = dataclasses.replace(policy, stages=policy.stages[-1:])

    async def search() -> tuple[Any, Any]:
        def make(**extra: Any) -> Any:
            return cls(sim.pool, preset.template, cost, preset.budgets[spec.budget],
                       seed=spec.seed, **kwargs, **extra)

        def run(searcher: Any) -> Any:
            return run_search(searcher, evaluator, spec.n_evals, batch_size=4, racing=policy,
                              select_at=SELECT_AT, max_stale_asks=MAX_STALE_ASKS)

        if spec.searcher != LLM_AGENT_ROW:
            searcher = make()
            return searcher, await run(searcher)
        from pytts.llm.openai import OpenAIClient
        from pytts.search import LLMAgent
        async with OpenAIClient(spec.agent_endpoint or "", timeout_s=600) as client:
            searcher = make(agent=LLMAgent(client, spec.agent_model or "", seed=spec.seed))
            return searcher, await run(searcher)

    start = time.process_time()
    searcher, report = asyncio.run(search())
    # A search that ran out of new graphs (a budget that leaves few) stops early: what it
    # returns at every later checkpoint is its final selection.
    final_calls = report.calls_made + (report.selection.confirm_calls
                                       if report.selection is not None else 0)
    for k in SELECT_AT:
        if report.n_evals < k <= spec.n_evals and k not in report.selections \
                and report.selection is not None:
            report.selections[k] = (report.selection, final_calls)
    cpu = time.process_time() - start
    cache: dict[str, float] = {}
    returned = {k: (_truth_of(truth, sel.graph, cache), calls)
                for k, (sel, calls) in report.selections.items()}
    pilots = [r for r in report.history if r.graph.vote_model is not None]
    best_pilot = max((_truth_of(truth, r.graph, cache) for r in pilots), default=None)
    evaluated = [r for r in report.history if not r.reused]
    # what the search found (the best graph it evaluated, by the truth no searcher sees), so
    # the table can tell search from selection
    found, best = {}, 0.0
    for i, r in enumerate(evaluated, start=1):
        best = max(best, _truth_of(truth, r.graph, cache))
        if i in CHECKPOINTS:
            found[i] = best
    return {"spec": asdict(spec), "returned": returned, "best_pilot": best_pilot,
            "best_evaluated": found,
            "cpu_s": cpu, "bad_replies": getattr(searcher, "bad_replies", 0),
            "agent_requests": getattr(getattr(searcher, "agent", None), "n_calls", 0),
            "context_overflows": getattr(getattr(searcher, "agent", None),
                                         "context_overflows", 0),
            "calls_made": report.calls_made + report.selection_calls,
            "calls_served": report.calls_served,
            # the bank's saving on vote-only graphs: calls a wider or repeated vote of the same
            # model(s) took from samples already made
            "vote_calls_served": sum(r.result.calls_served for r in evaluated
                                     if r.graph.depth == 1)}


def _reference_job(args: tuple[int, str]) -> tuple[int, str, dict[str, Any]]:
    landscape, budget = args
    ref = reference_optimum(SimPreset.generate(landscape), budget)
    g = ref.graph
    kind = ("single call" if g.n_nodes == 1 else "one-layer vote" if g.depth == 1 else
            "with fusers" if bool((g.role[1:][g.active[1:]] == FUSER).any()) else "refinement")
    return landscape, budget, {"accuracy": ref.accuracy, "stderr": ref.stderr,
                               "best_single": ref.best_single, "n_scored": ref.n_scored,
                               "graph": g.describe(), "kind": kind}


def _calls_to_within(run: dict[str, Any], refs: dict[tuple[int, str], dict[str, Any]],
                     points: float = 0.02) -> float:
    """LLM calls spent when the run's returned graph first came within ``points`` of the
    optimum (infinite if it never did)."""
    s = run["spec"]
    opt = refs[(s["landscape"], s["budget"])]["accuracy"]
    for _, (acc, calls) in sorted((int(k), v) for k, v in run["returned"].items()):
        if opt - acc <= points:
            return float(calls)
    return math.inf


def raised_references(refs: dict[tuple[int, str], dict[str, Any]],
                      runs: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """The reference optima, each raised to the best graph a run returned where one beat it.

    The reference search is long but not exhaustive; a searcher that returns a better graph
    shows the optimum is at least that good, and a regret below zero would flatter everyone.
    Only a rise above `RAISE_MARGIN` counts: below it, the two figures differ by their
    Monte-Carlo error. A raised reference keeps the search's figure as ``search_accuracy``.
    """
    best: dict[tuple[int, str], float] = {}
    for r in runs:
        cell = (r["spec"]["landscape"], r["spec"]["budget"])
        for acc, _ in r["returned"].values():
            best[cell] = max(best.get(cell, -math.inf), acc)
    out = {}
    for cell, ref in refs.items():
        top = best.get(cell, -math.inf)
        out[cell] = ref if top <= ref["accuracy"] + RAISE_MARGIN else {
            **ref, "accuracy": top, "search_accuracy": ref["accuracy"]}
    return out


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def landscape_margins(runs: list[dict[str, Any]], name: str, others: list[str]
                      ) -> list[tuple[float, int, str, int]]:
    """Per landscape, budget and checkpoint, ``name``'s median returned accuracy over seeds
    less the best median of ``others`` there: ``(margin, landscape, budget, checkpoint)``."""
    medians: dict[tuple[int, str, int], dict[str, list[float]]] = {}
    for r in runs:
        s = r["spec"]
        if s["searcher"] != name and s["searcher"] not in others:
            continue
        for k in CHECKPOINTS:
            got = r["returned"].get(str(k), r["returned"].get(k))
            if got is not None:
                medians.setdefault((s["landscape"], s["budget"], k), {}).setdefault(
                    s["searcher"], []).append(got[0])
    out = []
    for (land, budget, k), by in medians.items():
        rivals = [_median(xs) for n, xs in by.items() if n != name]
        if name in by and rivals:
            out.append((_median(by[name]) - max(rivals), land, budget, k))
    return out


def summarise(runs: list[dict[str, Any]], refs: dict[tuple[int, str], dict[str, Any]],
              names: list[str]) -> tuple[str, dict[str, Any]]:
    """The markdown table(s) and the figures behind them."""
    cells: dict[tuple[int, str, int], dict[str, dict[str, Any]]] = {}
    for r in runs:
        s = r["spec"]
        cells.setdefault((s["landscape"], s["budget"], s["seed"]), {})[s["searcher"]] = r
    figures: dict[str, Any] = {}
    # the checkpoints the runs reached (a shorter benchmark, --evals 32, has no column at 64)
    checkpoints = [k for k in CHECKPOINTS
                   if any(str(k) in r["returned"] or k in r["returned"] for r in runs)]
    lines = ["| searcher | " + " | ".join(f"acc@{k}" for k in checkpoints) + " | "
             + " | ".join(f"regret@{k}" for k in checkpoints) + " | calls@32 | "
             "gain over best pilot (far cells) | calls to within 2 pts (median) | "
             f"within 2 pts by {checkpoints[-1] if checkpoints else '-'} | "
             "calls served by the bank (votes) |",
             "|---" * (2 * len(checkpoints) + 6) + "|"]
    for name in names:
        acc = {k: [] for k in checkpoints}
        regret = {k: [] for k in checkpoints}
        calls32, gains, to_within, served, vote_served, made = [], [], [], [], [], []
        for (land, budget, _), by in cells.items():
            r = by.get(name)
            if r is None:
                continue
            opt = refs[(land, budget)]["accuracy"]
            for k in checkpoints:
                got = r["returned"].get(str(k), r["returned"].get(k))
                if got is not None:
                    acc[k].append(got[0])
                    regret[k].append(opt - got[0])
            got32 = r["returned"].get("32", r["returned"].get(32))
            if got32 is not None:
                calls32.append(got32[1])
                if r["best_pilot"] is not None and opt - r["best_pilot"] > 0.03:
                    gains.append(got32[0] - r["best_pilot"])
            to_within.append(_calls_to_within(r, refs))
            made.append(r.get("calls_made", 0))
            served.append(r.get("calls_served", 0))
            vote_served.append(r.get("vote_calls_served", 0))
        figures[name] = {"acc": {k: _median(v) for k, v in acc.items()},
                         "regret": {k: _median(v) for k, v in regret.items()},
                         "calls32": _median(calls32), "gain_far": _median(gains),
                         "n_far": len(gains), "calls_to_2pts": _median(to_within),
                         "reached_2pts": float(np.mean([math.isfinite(x) for x in to_within]))
                         if to_within else float("nan"),
                         "served_share": sum(served) / max(1, sum(served) + sum(made)),
                         "vote_served_share": sum(vote_served) / max(1, sum(served) + sum(made))}
        f = figures[name]
        lines.append(f"| {name} | " + " | ".join(f"{f['acc'][k]:.3f}" for k in checkpoints)
                     + " | " + " | ".join(f"{100 * f['regret'][k]:.1f}" for k in checkpoints)
                     + f" | {f['calls32']:.0f} | {100 * f['gain_far']:+.1f} pts "
                     f"({f['n_far']} runs) | {f['calls_to_2pts']:.0f} | "
                     f"{f['reached_2pts']:.0%} | {f['served_share']:.0%} "
                     f"({f['vote_served_share']:.0%}) |")
    # paired win-rates of Agent-REINFORCE against every other searcher, per checkpoint
    wins = ["", "Paired win-rate of agent-reinforce (its returned graph better; ties half) "
                "against each searcher, same landscape, budget and seed:", "",
            "| against | " + " | ".join(f"@{k}" for k in checkpoints) + " |",
            "|---" * (len(checkpoints) + 1) + "|"]
    figures["win_rate"] = {}
    for other in names:
        if other == "agent-reinforce":
            continue
        rates = []
        for k in checkpoints:
            score = []
            for by in cells.values():
                a, b = by.get("agent-reinforce"), by.get(other)
                if a is None or b is None:
                    continue
                ga, gb = a["returned"].get(str(k), a["returned"].get(k)), \
                    b["returned"].get(str(k), b["returned"].get(k))
                if ga is None or gb is None:
                    continue
                score.append(1.0 if ga[0] > gb[0] + 1e-9 else 0.5 if abs(ga[0] - gb[0]) <= 1e-9
                             else 0.0)
            rates.append(float(np.mean(score)) if score else float("nan"))
        figures["win_rate"][other] = rates
        wins.append(f"| {other} | " + " | ".join(f"{x:.0%}" for x in rates) + " |")
    # worst landscape margin against the best baseline
    margins = landscape_margins(runs, "agent-reinforce", [n for n in MAIN
                                                         if n != "agent-reinforce"])
    worst = min(margins) if margins else None
    figures["worst_margin"] = worst
    below = sorted(m for m in margins if m[0] < -0.01)
    figures["cells_below_1pt"] = [len(below), len(margins)]
    tail = [""]
    figures["calls_paired"] = {}
    for other in ("tpe", "reinforce", "random"):
        if other not in names or "agent-reinforce" not in names:
            continue
        ratios, only_ar, only_other, neither = [], 0, 0, 0
        for by in cells.values():
            a, b = by.get("agent-reinforce"), by.get(other)
            if a is None or b is None:
                continue
            ca, cb = _calls_to_within(a, refs), _calls_to_within(b, refs)
            if math.isfinite(ca) and math.isfinite(cb):
                ratios.append(ca / cb)
            else:
                only_ar += math.isfinite(ca)
                only_other += math.isfinite(cb)
                neither += not (math.isfinite(ca) or math.isfinite(cb))
        figures["calls_paired"][other] = {"median_ratio": _median(ratios), "both": len(ratios),
                                          "only_ar": only_ar, "only_other": only_other,
                                          "neither": neither}
        tail.append(f"Calls to come within 2 points, agent-reinforce against {other} on the "
                    f"same landscape, budget and seed: where both did ({len(ratios)} runs) "
                    f"agent-reinforce needed a median {_median(ratios):.2f}x the calls; "
                    f"only agent-reinforce did in {only_ar} runs, only {other} in "
                    f"{only_other}, neither in {neither}.")
    ar_calls = figures.get("agent-reinforce", {}).get("calls_to_2pts")
    if ar_calls is not None:
        ratios = [f"{other} {figures[other]['calls_to_2pts']:.0f} "
                  f"(agent-reinforce needs {ar_calls / figures[other]['calls_to_2pts']:.2f}x)"
                  for other in ("tpe", "reinforce", "random") if other in figures]
        tail.append(f"LLM calls to come within 2 points of the optimum, median over runs (a run "
                    f"that never does counts as infinite): agent-reinforce {ar_calls:.0f}"
                    + "".join(f"; {r}" for r in ratios) + ".")
    if worst is not None:
        tail.append(f"Worst median margin of agent-reinforce against the best main baseline in "
                    f"one landscape and checkpoint: {100 * worst[0]:+.1f} points "
                    f"(gen-{worst[1]} {worst[2]}, @{worst[3]}). It is more than 1 point below "
                    f"in {len(below)} of {len(margins)} landscape-budget-checkpoint cells"
                    + (": " + ", ".join(f"gen-{m[1]} {m[2]} @{m[3]} {100 * m[0]:+.1f}"
                                        for m in below[:12]) if below else "") + ".")
    return "\n".join(lines + wins + tail), figures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--landscapes", type=int, default=24)
    ap.add_argument("--drawn", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--evals", type=int, default=64)
    ap.add_argument("--searchers", default="all",
                    help="comma-separated names, 'main' or 'all' (the default grid: "
                         "every name but the last two of SEARCHERS)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true",
                    help="4 fixed landscapes, 2 drawn, 2 seeds, 32 evaluations, main searchers")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild the report from the runs and references saved in --out")
    ap.add_argument("--llm-agent", metavar="URL",
                    help="also run Agent-REINFORCE with an LLM agent served at URL (an "
                         "OpenAI-compatible /v1, e.g. `pytts serve-local`) on the first "
                         "--llm-agent-landscapes fixed landscapes, seed 0, 32 evaluations, one "
                         "run at a time; with --report-only, only these runs are made")
    ap.add_argument("--llm-agent-model", default="smollm2-135m-instruct")
    ap.add_argument("--llm-agent-landscapes", type=int, default=4)
    ap.add_argument("--noise-floor", action="store_true",
                    help="also run agent-reinforce on the fixed landscapes with seeds the grid "
                         "did not use, and report how often it is more than 1 point below "
                         "itself and the baselines by chance; with --report-only, only these "
                         "runs are made")
    args = ap.parse_args(argv)
    if args.quick:
        args.landscapes, args.drawn, args.seeds, args.evals = 4, 2, 2, 32
        args.searchers = "main"
    names = (list(DEFAULT_GRID) if args.searchers == "all" else list(MAIN)
             if args.searchers == "main" else args.searchers.split(","))
    unknown = [n for n in names if n not in SEARCHERS]
    if unknown:
        ap.error(f"unknown searcher(s) {unknown}; known: {list(SEARCHERS)}")
    out = Path(args.out)
    if args.report_only:
        runs = [json.loads(line) for line in
                (out / "search_efficiency_runs.jsonl").read_text().splitlines() if line]
        refs = {(int(k.split("/")[0]), k.split("/")[1]): r for k, r in json.loads(
            (out / "search_efficiency_refs.json").read_text()).items()}
        for run in runs:
            run["returned"] = {int(k): v for k, v in run["returned"].items()}
        lands = sorted({land for land, _ in refs})
        sets = {"fixed": [x for x in lands if x < DRAWN_BASE],
                "drawn at run time": [x for x in lands if x >= DRAWN_BASE]}
        previous = out / "search_efficiency.json"
        wall = json.loads(previous.read_text())["wall_s"] if previous.exists() else math.nan
        names = [n for n in names if any(r["spec"]["searcher"] == n for r in runs)]
        if args.llm_agent:
            run_llm_agent(out, args)
        if args.noise_floor:
            run_noise_floor(out, args, sets["fixed"])
        write_report(out, runs, refs, names, sets, args, wall)
        return
    start = time.time()
    fixed = list(range(args.landscapes))
    drawn_base = DRAWN_BASE + int(time.time()) % 1_000_000
    drawn = [drawn_base + i for i in range(args.drawn)]
    sets = {"fixed": fixed, "drawn at run time": drawn}
    out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [(land, b) for lands in sets.values() for land in lands for b in ("low", "high")]
        refs = {(l, b): r for l, b, r in pool.map(_reference_job, jobs)}
        (out / "search_efficiency_refs.json").write_text(json.dumps(
            {f"{l}/{b}": r for (l, b), r in refs.items()}))
        specs = [RunSpec(l, b, n, s, args.evals) for l, b in jobs for n in names
                 for s in range(args.seeds)]
        runs = save_runs(out / "search_efficiency_runs.jsonl",
                         pool.map(run_one, specs, chunksize=2))
    wall = time.time() - start
    if args.llm_agent:
        run_llm_agent(out, args)
    if args.noise_floor:
        run_noise_floor(out, args, fixed)
    write_report(out, runs, refs, names, sets, args, wall)


LLM_AGENT_RUNS = "search_efficiency_llm_agent.jsonl"


def save_runs(path: Path, runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``runs``, each appended to ``path`` (JSON lines) as it finishes, so that a long benchmark
    stopped midway keeps the runs it made."""
    saved = []
    with open(path, "w") as log:
        for run in runs:
            saved.append(run)
            log.write(json.dumps(run, default=str) + "\n")
            log.flush()
    return saved


def run_llm_agent(out: Path, args: argparse.Namespace) -> None:
    """The LLM-agent rows: one run at a time (one server), appended to `LLM_AGENT_RUNS`."""
    save_runs(out / LLM_AGENT_RUNS,
              (run_one(RunSpec(land, budget, LLM_AGENT_ROW, 0, 32, args.llm_agent,
                               args.llm_agent_model))
               for land in range(args.llm_agent_landscapes) for budget in ("low", "high")))


def run_noise_floor(out: Path, args: argparse.Namespace, landscapes: list[int]) -> None:
    """Agent-REINFORCE on ``landscapes`` with seeds ``seeds .. 2 seeds - 1`` (the grid used
    ``0 .. seeds - 1``), saved to `NOISE_RUNS` under `NOISE_ROW`."""
    specs = [RunSpec(land, budget, "agent-reinforce", seed, args.evals)
             for land in landscapes for budget in ("low", "high")
             for seed in range(args.seeds, 2 * args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        save_runs(out / NOISE_RUNS, ({**run, "spec": {**run["spec"], "searcher": NOISE_ROW}}
                                     for run in pool.map(run_one, specs, chunksize=2)))


def noise_floor_section(out: Path, runs: list[dict[str, Any]]) -> list[str]:
    """How many landscape-budget-checkpoint cells Agent-REINFORCE on other seeds is more than
    1 point below the grid's Agent-REINFORCE and below the best main baseline, next to the
    grid's own count: the part of the per-landscape criterion that 5 seeds' luck alone fails."""
    path = out / NOISE_RUNS
    if not path.exists():
        return []
    copy = [json.loads(line) for line in path.read_text().splitlines() if line]
    lands = {r["spec"]["landscape"] for r in copy}
    grid = [r for r in runs if r["spec"]["landscape"] in lands]
    baselines = [n for n in MAIN if n != "agent-reinforce"]

    def below(name: str, others: list[str]) -> list[tuple[float, int, str, int]]:
        margins = landscape_margins(grid + copy, name, others)
        return sorted(m for m in margins if m[0] < -0.01)

    self_margins = landscape_margins(grid + copy, NOISE_ROW, ["agent-reinforce"])
    self_below = [m for m in self_margins if m[0] < -0.01]
    copy_below, grid_below = below(NOISE_ROW, baselines), below("agent-reinforce", baselines)
    both = sorted({m[1:] for m in copy_below} & {m[1:] for m in grid_below})
    n_cells = len(self_margins)
    seeds = sorted({r["spec"]["seed"] for r in copy})
    return [f"## Noise floor of the per-landscape margin ({len(copy)} runs)", "",
            f"Agent-REINFORCE again on the fixed landscapes with seeds {seeds[0]}-{seeds[-1]} "
            f"(the grid's are 0-{seeds[0] - 1}), same code. Its median is more than 1 point "
            f"below the grid's Agent-REINFORCE in {len(self_below)} of {n_cells} "
            f"landscape-budget-checkpoint cells: that many cells a searcher identical to a "
            f"rival loses by the luck of {len(seeds)} seeds. Against the best main baseline it "
            f"is more than 1 point below in {len(copy_below)} cells (the grid's seeds: "
            f"{len(grid_below)}); below with both sets of seeds in {len(both)}"
            + (": " + ", ".join(f"gen-{l} {b} @{k}" for l, b, k in both) if both else "")
            + ".", ""]


def llm_agent_section(out: Path, runs: list[dict[str, Any]],
                      refs: dict[tuple[int, str], dict[str, Any]]) -> list[str]:
    """The LLM-agent rows against the heuristic agent's runs on the same cells and seed."""
    path = out / LLM_AGENT_RUNS
    if not path.exists():
        return []
    llm = [json.loads(line) for line in path.read_text().splitlines() if line]
    if not llm:
        return []
    for run in llm:
        run["returned"] = {int(k): v for k, v in run["returned"].items()
                           if int(k) <= run["spec"]["n_evals"]}
    cells = {(r["spec"]["landscape"], r["spec"]["budget"]) for r in llm}
    heuristic = [dict(r, returned={k: v for k, v in r["returned"].items() if int(k) <= 32})
                 for r in runs if r["spec"]["searcher"] == "agent-reinforce"
                 and r["spec"]["seed"] == 0
                 and (r["spec"]["landscape"], r["spec"]["budget"]) in cells]
    table, _ = summarise(heuristic + llm, refs, ["agent-reinforce", LLM_AGENT_ROW])
    requests = sum(r.get("agent_requests", 0) for r in llm)
    bad = sum(r.get("bad_replies", 0) for r in llm)
    overflows = sum(r.get("context_overflows", 0) for r in llm)
    model = llm[0]["spec"].get("agent_model")
    return [f"## Agent-REINFORCE with an LLM agent ({model}), {len(llm)} runs", "",
            f"The agent is a {model} served locally: a weak model, so these rows show that the "
            f"loop runs end to end on an LLM's replies, not what a strong agent would do. "
            f"Seed 0, 32 evaluations, on {len(cells)} fixed landscape-budget cells, against "
            f"the heuristic agent's runs of the same cells and seed. {requests} agent "
            f"requests: {bad} replies fell back to the heuristic, {overflows} context "
            f"overflows.", "", table, ""]


def write_report(out: Path, runs: list[dict[str, Any]],
                 refs: dict[tuple[int, str], dict[str, Any]], names: list[str],
                 sets: dict[str, list[int]], args: argparse.Namespace, wall: float) -> None:
    """``search_efficiency.md`` and ``.json`` in ``out``, printed too."""
    policy = RacingPolicy.for_questions(DEV_QUESTIONS)
    report = ["# Search efficiency on generated landscapes", "",
              f"{args.seeds} seed{'s' * (args.seeds != 1)}, {args.evals} evaluations, racing "
              f"{policy.stages} + {policy.confirm} confirmation questions, top {policy.top} "
              f"finalists with {policy.resamples} fresh samples of the dev questions "
              "(racing off: every candidate on all race questions), batch 4. Accuracy: "
              "expected accuracy on the test split of the graph the search returns; regret in "
              "points to the reference optimum; calls: LLM calls (race and selection runs) "
              "spent by then.", ""]
    refs = raised_references(refs, runs)
    kinds: dict[str, int] = {}
    for r in refs.values():
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    rises = [100 * (r["accuracy"] - r["search_accuracy"]) for r in refs.values()
             if "search_accuracy" in r]
    report += ["Reference optima by kind (all landscapes and budgets): "
               + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ". "
               f"A searcher returned a graph better by over {100 * RAISE_MARGIN:.2f} points than "
               f"the reference search found in "
               f"{len(rises)} of {len(refs)} landscape-budget cells; there the reference is "
               f"that graph's accuracy (largest rise {max(rises, default=0.0):.1f} points).",
               ""]
    dump: dict[str, Any] = {}
    for set_name, lands in sets.items():
        if not lands:  # e.g. --landscapes 0: only drawn ones
            continue
        chosen = [r for r in runs if r["spec"]["landscape"] in lands]
        table, figures = summarise(chosen, refs, names)
        report += [f"## {set_name} landscapes ({', '.join(f'gen-{l}' for l in lands)})", "",
                   table, ""]
        dump[set_name] = figures
    report += llm_agent_section(out, runs, refs)
    report += noise_floor_section(out, runs)
    cpu: dict[str, float] = {}
    for r in runs:
        cpu[r["spec"]["searcher"]] = cpu.get(r["spec"]["searcher"], 0.0) + r["cpu_s"]
    total = sum(cpu.values())
    share = ", ".join(f"{n} {100 * c / total:.0f}%" for n, c in
                      sorted(cpu.items(), key=lambda kv: -kv[1])[:3])
    report.append(f"Wall time of the whole benchmark: {wall / 60:.1f} min on {args.workers} "
                  f"worker(s) ({len(runs)} runs). The searches' own CPU time: "
                  f"{total / 60:.1f} min ({total / 60 / max(args.workers, 1):.1f} min per "
                  f"worker); largest shares: {share}.")
    text = "\n".join(report)
    (out / "search_efficiency.md").write_text(text + "\n")
    (out / "search_efficiency.json").write_text(json.dumps(
        {"figures": dump, "refs": {f"{l}/{b}": r for (l, b), r in refs.items()},
         "wall_s": wall, "cpu_s": cpu}, default=str))
    print(text)


if __name__ == "__main__":
    main()
