"""The ``pytts`` command: search, eval, show, compare, sample, serve-local, doctor."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .errors import ConfigError, PyttsError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130      # the shell's code for a process ended by SIGINT


def _load_pool(path: str | None):
    from .demo_pool import demo_pool
    from .pool import ModelPool
    return ModelPool.from_file(path) if path else demo_pool()


SAMPLE_MAX = 1_000_000
"""Most graphs ``pytts sample`` draws (about 300 bytes each on the default template)."""
SAMPLE_ROWS_SHOWN = 20


def cmd_sample(args: argparse.Namespace, console: Console) -> int:
    """Sample graphs from a uniform probabilistic graph, keep those within the budget; show a
    summary and the first rows (all of them only when there are few)."""
    import numpy as np

    from .cost import Budget, CostModel
    from .kernels import BACKEND
    from .probgraph import ProbGraph

    if not 1 <= args.n <= SAMPLE_MAX:
        raise ConfigError(f"-n must be between 1 and {SAMPLE_MAX:,}, got {args.n:,}")
    pool = _load_pool(args.pool)
    cost = CostModel(pool, prompt_tokens=args.prompt_tokens)
    budget = Budget.parse(args.budget)
    flops_budget = budget.resolve(cost)
    pg = ProbGraph.uniform(args.depth, args.width, pool.names)
    batch, logp, stats = pg.sample(args.n, seed=args.seed, budget=flops_budget, cost=cost)
    flops, latency = cost.batch_cost(batch)
    shown = min(len(batch), SAMPLE_ROWS_SHOWN)
    table = Table(title=f"{len(batch)} graphs within {flops_budget:.3g} FLOPs ({budget}); "
                        f"acceptance {stats.acceptance_rate:.1%} of {stats.n_drawn} draws "
                        f"[{BACKEND} kernels]"
                        + (f"; the first {shown} shown" if shown < len(batch) else ""))
    for col in ("#", "depth", "widths", "models", "TFLOPs", "latency s", "log p"):
        table.add_column(col, justify="right" if col not in ("models", "widths") else "left")
    for b, g in enumerate(batch.take(np.arange(shown)).graphs(pool.names)):
        used = sorted({n.model_name for n in g.nodes()})
        table.add_row(str(b), str(g.depth), "x".join(map(str, g.layer_widths)), ", ".join(used),
                      f"{flops[b] / 1e12:.2f}", f"{latency[b]:.1f}", f"{logp[b]:.2f}")
    console.print(table)
    if len(batch):
        console.print(f"all {len(batch)}: TFLOPs mean {flops.mean() / 1e12:.2f} "
                      f"(min {flops.min() / 1e12:.2f}, max {flops.max() / 1e12:.2f}); latency "
                      f"mean {latency.mean():.1f} s (min {latency.min():.1f}, max "
                      f"{latency.max():.1f}); log p mean {logp.mean():.2f}")
    return 0


def _count(text: str) -> int:
    """An integer flag that may be written like 1e6."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(value)


def _config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per SearchConfig key (``n_questions`` -> ``--n-questions``)."""
    from .config import SearchConfig
    hints = typing.get_type_hints(SearchConfig)
    for f in dataclasses.fields(SearchConfig):
        hint = hints[f.name]
        kind = next((t for t in (int, float, str) if t in typing.get_args(hint) or t is hint), str)
        allowed = f.metadata.get("allowed")
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                            metavar=f.name.upper() if not allowed else None,
                            help=f"(config key {f.name}; default {f.default!r})"
                            + (f"; one of {', '.join(allowed)}" if allowed else ""))


def _flag_values(args: argparse.Namespace) -> dict:
    """The config keys given as flags (None: not given)."""
    from .config import SearchConfig
    return {k: getattr(args, k) for k in SearchConfig.keys()}


def _search_config(args: argparse.Namespace):
    from .config import SearchConfig
    from .environment import LocalEnvironment, SimEnvironment
    base = SearchConfig.from_file(args.config) if args.config else SearchConfig()
    if args.demo:
        base = base.merged(SimEnvironment.presets)
    if args.local:
        base = base.merged(LocalEnvironment.presets)
    return base.merged(_flag_values(args))


class _ProgressBar:
    """A rich progress bar fed by run_search's progress callback."""

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        self.progress = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("best {task.fields[best]}"),
                                 TextColumn("calls {task.fields[calls]}"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.task = self.progress.add_task("search", total=total, best="-", calls="-")

    def __enter__(self) -> _ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, p) -> None:
        best = "-" if p.best_accuracy is None else f"{p.best_accuracy:.3f}"
        self.progress.update(self.task, completed=p.n_evals, total=max(p.n_evals_target, 1),
                             best=best, calls=f"{p.calls_made} made/{p.calls_served} banked")


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    """Search for the best graph; write (or resume) a run directory."""
    from . import runner
    if args.resume:
        if args.config or args.demo or args.local:
            raise ConfigError("--resume continues a run as it was configured; drop --config, "
                              "--demo and --local")
        run_dir = Path(args.resume)
        runner.load_run_config(run_dir)        # not a run directory: say so before locking
        with runner.locked(run_dir):
            runner.check_checkpoint(run_dir)
            setup = runner.resolve(runner.resume_config(run_dir, _flag_values(args)))
            runner.check_endpoints(setup)
            return _run_search(args, console, setup, run_dir)
    config = _search_config(args)
    setup = runner.resolve(config)
    runner.check_endpoints(setup)
    run_dir, written = runner.prepare_run_dir(config)
    with runner.locked(run_dir):
        try:
            return _run_search(args, console, dataclasses.replace(setup, config=written),
                               run_dir)
        except Exception:
            # what could only fail once running (a server, a broken install) must not leave an
            # empty run directory that blocks the name
            runner.discard_unused(run_dir, written)
            raise


def _run_search(args: argparse.Namespace, console: Console, setup, run_dir: Path) -> int:
    from . import runner
    args.interrupted_hint = f"; resume with: pytts search --resume {run_dir}"
    evaluator_factory = None
    if setup.config.ray:
        from .distributed import ray_evaluator_factory
        evaluator_factory = ray_evaluator_factory(setup.config.ray)
    console.print(f"run directory: [bold]{run_dir}[/bold]")
    with _ProgressBar(console, setup.config.n_evals) as bar:
        report = asyncio.run(runner.execute_run(setup, run_dir, progress=bar,
                                                evaluator_factory=evaluator_factory))
    if report.best_graph is not None and report.best_result is not None:
        r = report.best_result
        console.print(f"returned graph: dev accuracy {r.accuracy:.3f} "
                      f"[{r.ci_low:.3f}, {r.ci_high:.3f}], {r.mean_flops:.3g} FLOPs, "
                      f"{r.mean_latency_s:.2f} s per query")
        console.print(report.best_graph.describe())
        if setup.sim is not None:
            console.print(runner.simulated_truth_lines(setup, report)[0].replace("**", ""))
    replies = runner.read_replies(run_dir)
    if replies is not None:
        console.print(runner.describe_replies(replies), markup=False)
    console.print(f"{report.n_evals} evaluations; {report.calls_made} LLM calls made, "
                  f"{report.calls_served} served from the bank; wrote {run_dir}/"
                  f"{runner.SUMMARY_FILE} and {run_dir}/{runner.PLOTS_DIR}/")
    return 0


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    """Score one graph (JSON) on the configured task."""
    from . import runner
    from .llm.bank import ResponseBank
    config = _search_config(args)
    setup = runner.resolve(config)
    runner.check_endpoints(setup)
    graph, _ = runner.read_best(args.graph, setup.pool.names)

    async def go():
        bank = ResponseBank(config.bank) if config.bank else None
        try:
            async with runner.open_evaluator(setup, bank) as (evaluator, _):
                return await evaluator.evaluate(graph)
        finally:
            if bank is not None:
                bank.close()

    result = asyncio.run(go())
    flops, latency = setup.cost.graph_cost(graph)
    console.print(graph.describe())
    console.print(f"accuracy {result.accuracy:.3f} [{result.ci_low:.3f}, {result.ci_high:.3f}] on "
                  f"{result.n_questions} questions ({result.n_failed} failed); measured "
                  f"{result.mean_flops:.3g} FLOPs, {result.mean_latency_s:.2f} s per query "
                  f"(cost model: {flops:.3g} FLOPs, {latency:.2f} s); calls {result.calls_made} "
                  f"made, {result.calls_served} banked")
    return 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    """Draw a graph JSON (text; ``--png`` for a picture)."""
    from .runner import read_best
    graph, _ = read_best(args.graph)
    console.print(graph.describe())
    console.print(f"depth {graph.depth}, widths {'x'.join(map(str, graph.layer_widths))}, "
                  f"{graph.n_nodes} calls; sinks {graph.sinks()}")
    if args.png:
        from .plots import draw_graph
        console.print(f"wrote {draw_graph(graph, args.png)}")
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    """A table of runs: searcher, evaluations, best accuracy and its costs, calls."""
    from .runner import BEST_FILE, load_run_config
    from .search.checkpoint import Checkpoint
    table = Table(title="pytts runs")
    for col in ("run", "searcher", "seed", "evals", "best acc", "95% CI", "FLOPs", "latency s",
                "calls made/banked"):
        table.add_column(col)
    for run in args.runs:
        config = load_run_config(run)
        history = Checkpoint.read_history(run) if (Path(run) / "history.jsonl").exists() else []
        evals = sum(1 for r in history if not r.reused)
        best_path = Path(run) / BEST_FILE
        acc = ci = flops = lat = "-"
        if best_path.exists():
            r = json.loads(best_path.read_text())["result"]
            acc, ci = f"{r['accuracy']:.3f}", f"{r['ci_low']:.2f}-{r['ci_high']:.2f}"
            flops, lat = f"{r['mean_flops']:.3g}", f"{r['mean_latency_s']:.2f}"
        made, banked = _call_counts(run, config, history)
        table.add_row(Path(run).name, config.searcher, str(config.seed), str(evals), acc, ci,
                      flops, lat, f"{made}/{banked}")
    console.print(table)
    return 0


def _call_counts(run: str, config, history) -> tuple[int, int]:
    """Calls made and served of a run, counted in its bank (see `runner.call_counts`)."""
    from .llm.bank import ResponseBank
    from .runner import call_counts, run_bank_path
    bank_path = run_bank_path(run, config)
    if not bank_path.is_file():
        return 0, sum(r.result.calls_served for r in history if not r.reused)
    with ResponseBank(bank_path) as bank:
        return call_counts(bank, run, history)


def cmd_serve_local(args: argparse.Namespace, console: Console) -> int:
    """Serve the embedded SmolLM2-135M model on an OpenAI-compatible endpoint."""
    from .llm.local import serve_local
    return serve_local(args.port, host=args.host, n_threads=args.threads)


def cmd_doctor(args: argparse.Namespace, console: Console) -> int:
    """Check this installation, one line per item; exit code 1 if any check failed."""
    from .doctor import run_checks
    failed = 0
    for check in run_checks(args.pool, local=not args.no_local, n_threads=args.threads):
        print(check.line(), flush=True)
        failed += not check.ok
    return EXIT_FAILED if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="search the best collaboration graph for a task and budget")
    p.add_argument("--config", help="TOML file of config keys (flags override it)")
    p.add_argument("--demo", action="store_true",
                   help="simulated pool (preset math-like): no files or servers needed")
    p.add_argument("--local", action="store_true",
                   help="the embedded SmolLM2 model on arith questions (started automatically)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished run")
    _config_flags(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="score one graph (JSON) on a task")
    p.add_argument("graph", help="graph JSON (e.g. runs/NAME/best_graph.json)")
    p.add_argument("--config", help="TOML file of config keys (flags override it)")
    p.add_argument("--demo", action="store_true", help="on the simulated math-like pool")
    p.add_argument("--local", action="store_true", help="on the embedded model")
    _config_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("show", help="draw a graph JSON")
    p.add_argument("graph")
    p.add_argument("--png", help="also write a PNG drawing to this path")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("compare", help="compare run directories")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sample", help="sample graphs within a FLOPs budget (kernel demo)")
    p.add_argument("--budget", default="8x qwen2.5-3b",
                   help="FLOPs per query: a number (2e12) or 'N x MODEL' (default: %(default)s)")
    p.add_argument("--pool", help="pool file (TOML/JSON); default: the built-in demo pool")
    p.add_argument("-n", "--n", type=_count, default=12,
                   help=f"graphs to sample (at most {SAMPLE_MAX:,}; 1e5 notation works)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, default=4, help="template depth D")
    p.add_argument("--width", type=int, default=8, help="template width W")
    p.add_argument("--prompt-tokens", type=float, default=400.0,
                   help="mean task prompt length in tokens")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("serve-local", help="serve the embedded model (OpenAI-compatible)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_serve_local)

    p = sub.add_parser("doctor", help="check the kernels, the embedded model and your endpoints")
    p.add_argument("--pool", help="pool file whose endpoints get one tiny request each")
    p.add_argument("--no-local", action="store_true", help="skip the embedded model")
    p.add_argument("--threads", type=int, default=2, help="threads of the embedded model")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # piped output (logs, CI) gets wide tables instead of rich's 80-column default
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        return args.func(args, console)
    except KeyboardInterrupt:
        print(f"pytts {args.command}: interrupted{getattr(args, 'interrupted_hint', '')}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (PyttsError, ValueError, OSError, MemoryError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, MemoryError):
            message = f"out of memory ({message}); ask for less"
        print(f"pytts {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
