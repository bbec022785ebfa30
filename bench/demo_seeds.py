"""The demo's search over many seeds: how often the search ``pytts search --demo`` runs returns
a graph within 1 point of its landscape's reference optimum.

The demo is one run of one seed, and whether it lands within a point of the optimum depends on
that seed's dev noise. This runs the same search (preset, budget, dev-set size, evaluations,
batch and racing as ``--demo`` sets them: `SimEnvironment.presets` over `SearchConfig`'s
defaults) on the simulator's latent-code evaluator for ``--seeds`` seeds, and reports each
returned graph's expected test accuracy against the reference optimum and the best
single-model graph. Run ``python -m bench.demo_seeds [--seeds 24] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from concurrent.futures import ProcessPoolExecutor

from pytts.config import SearchConfig
from pytts.environment import SimEnvironment, environment_for
from pytts.search import AgentReinforce, run_search
from pytts.search.racing import RacingPolicy
from pytts.sim import GroundTruth
from pytts.sim.evaluator import LatentEvaluator
from pytts.sim.reference import reference_optimum

WITHIN = 0.01
"""How close to the optimum counts as found (the search issue's demo target)."""


def demo_config() -> SearchConfig:
    """The settings ``pytts search --demo`` runs with."""
    return SearchConfig().merged(SimEnvironment.presets)


def demo_environment(config: SearchConfig) -> SimEnvironment:
    """The simulated environment the CLI builds for ``config`` (the demo's pool, task and
    budgets)."""
    env = environment_for(config)
    assert isinstance(env, SimEnvironment)  # the demo's pool is a simulated preset
    return env


def returned_accuracy(seed: int) -> float:
    """Expected test accuracy of the graph the demo's search returns with this seed."""
    config = demo_config()
    env = demo_environment(config)
    sim = env.simulator
    evaluator = LatentEvaluator(sim, env.task(config).questions, seed=seed)
    searcher = AgentReinforce(sim.pool, sim.template, sim.cost_model(),
                              sim.budgets[config.budget], seed=seed)
    report = asyncio.run(run_search(searcher, evaluator, config.n_evals,
                                    batch_size=config.batch_size,
                                    racing=RacingPolicy.for_questions(config.n_questions)))
    assert report.selection is not None  # racing is on: the search selects
    return GroundTruth(sim.preset).expected_accuracy(report.selection.graph)[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    config = demo_config()
    ref = reference_optimum(demo_environment(config).simulator.preset, config.budget)
    with ProcessPoolExecutor(args.workers) as pool:
        accs = list(pool.map(returned_accuracy, range(args.seeds)))
    found = sum(ref.accuracy - a <= WITHIN for a in accs)
    print(f"demo search ({config.pool}, {config.budget} budget, {config.n_questions} dev "
          f"questions, {config.n_evals} evaluations), seeds 0-{args.seeds - 1}, latent-code "
          f"evaluator")
    print("returned graphs' expected test accuracy: "
          + ", ".join(f"{a:.3f}" for a in accs))
    print(f"median {statistics.median(accs):.3f}, mean {statistics.mean(accs):.4f}; reference "
          f"optimum {ref.accuracy:.3f}, best single-model graph {ref.best_single:.3f}; within "
          f"{100 * WITHIN:.0f} point of the optimum in {found} of {len(accs)} seeds")


if __name__ == "__main__":
    main()
