"""The ``pytts`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from rich.console import Console
from rich.table import Table

from .errors import PyttsError

EXIT_USAGE = 2


def _load_pool(path: str | None):
    from .demo_pool import demo_pool
    from .pool import ModelPool
    return ModelPool.from_file(path) if path else demo_pool()


def cmd_sample(args: argparse.Namespace, console: Console) -> int:
    """Sample graphs from a uniform probabilistic graph, keep those within the budget."""
    from .cost import Budget, CostModel
    from .kernels import BACKEND
    from .probgraph import ProbGraph

    pool = _load_pool(args.pool)
    cost = CostModel(pool, prompt_tokens=args.prompt_tokens)
    budget = Budget.parse(args.budget)
    flops_budget = budget.resolve(cost)
    pg = ProbGraph.uniform(args.depth, args.width, pool.names)
    batch, logp, stats = pg.sample(args.n, seed=args.seed, budget=flops_budget, cost=cost)
    from .kernels import graph_cost
    flops, latency = graph_cost(batch, cost)
    table = Table(title=f"{len(batch)} graphs within {flops_budget:.3g} FLOPs ({budget}); "
                        f"acceptance {stats.acceptance_rate:.1%} of {stats.n_drawn} draws "
                        f"[{BACKEND} kernels]")
    for col in ("#", "depth", "widths", "models", "TFLOPs", "latency s", "log p"):
        table.add_column(col, justify="right" if col not in ("models", "widths") else "left")
    for b, g in enumerate(batch.graphs(pool.names)):
        used = sorted({n.model_name for n in g.nodes()})
        table.add_row(str(b), str(g.depth), "x".join(map(str, g.layer_widths)), ", ".join(used),
                      f"{flops[b] / 1e12:.2f}", f"{latency[b]:.1f}", f"{logp[b]:.2f}")
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample", help="sample graphs within a FLOPs budget (kernel demo)")
    p.add_argument("--budget", default="8x qwen2.5-3b",
                   help="FLOPs per query: a number (2e12) or 'N x MODEL' (default: %(default)s)")
    p.add_argument("--pool", help="pool file (TOML/JSON); default: the built-in demo pool")
    p.add_argument("-n", "--n", type=int, default=12, help="graphs to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, default=4, help="template depth D")
    p.add_argument("--width", type=int, default=8, help="template width W")
    p.add_argument("--prompt-tokens", type=float, default=400.0,
                   help="mean task prompt length in tokens")
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except (PyttsError, ValueError) as exc:
        print(f"pytts {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
