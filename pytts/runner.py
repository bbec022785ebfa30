"""A search run: resolve a `SearchConfig` into its parts, run it in a run directory, report.

Everything that can be wrong with a configuration is found by `resolve` before any file is
written or any server started, so a bad config leaves nothing behind. A run directory holds the
resolved config, the ResponseBank, the checkpoint (searcher state + history), the best graph,
a markdown summary and the plots; `pytts search --resume` continues it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable

from .config import SearchConfig
from .cost import Budget, CostModel
from .errors import ConfigError
from .evaluate import Evaluator
from .execute import GraphExecutor
from .graph import CollaborationGraph
from .llm.bank import BankedClient, ResponseBank
from .llm.base import LLMClient
from .pool import ModelPool
from .search import SEARCHERS, Accuracy, AccuracyLatency, Searcher
from .search.run import SearchProgress, SearchReport, run_search
from .tasks.base import Task

CONFIG_FILE = "config.toml"
BANK_FILE = "bank.sqlite"
BEST_FILE = "best_graph.json"
SUMMARY_FILE = "summary.md"
PLOTS_DIR = "plots"
REPLIES_FILE = "llm_replies.json"

LOCAL_TEMPLATE = (2, 3)
LOCAL_BUDGET = "4x smollm2-135m-fewshot"
FILE_TEMPLATE = (4, 8)
_PLACEHOLDER_URL = "http://127.0.0.1:1/v1"


@dataclass
class RunSetup:
    """The resolved parts of a run (no servers started, no files written yet)."""

    config: SearchConfig
    pool: ModelPool
    task: Task
    cost: CostModel
    budget_flops: float
    template: tuple[int, int]
    sim: object | None = None          # a SimulatedPool in sim mode

    @property
    def local(self) -> bool:
        return self.config.pool == "local"


def resolve(config: SearchConfig) -> RunSetup:
    """Check and assemble pool, task, costs, budget and template; ConfigError/BudgetError."""
    sim = None
    if config.pool.startswith("sim:"):
        from .llm.sim import SimulatedPool
        sim = SimulatedPool(config.pool[4:], seed=config.seed)
        pool = sim.pool
        task: Task = sim.task(config.n_questions, split="dev", seed=config.seed)
        cost = sim.cost_model()
        template = sim.template
        default_budget: Budget | str = sim.budgets["low"]
    else:
        if config.pool == "local":
            from .llm.local import local_pool_specs
            pool = ModelPool.from_dicts(local_pool_specs(_PLACEHOLDER_URL))
            template, default_budget = LOCAL_TEMPLATE, LOCAL_BUDGET
        else:
            pool = ModelPool.from_file(config.pool)
            template, default_budget = FILE_TEMPLATE, ""
            missing = [m.name for m in pool if not m.endpoint]
            if missing:
                raise ConfigError(f"pool {config.pool}: model(s) {missing} have no endpoint; set "
                                  "endpoint = \"http://HOST:PORT/v1\" for each")
        from .tasks.registry import load_task
        task = load_task(config.task, path=config.dataset, n=config.n_questions, seed=config.seed)
        cost = CostModel(pool, task.prompt_tokens)
    if config.budget is None and not default_budget:
        raise ConfigError("budget is required for a pool file: FLOPs (2e12) or 'N x MODEL'")
    budget_flops = Budget.parse(config.budget or default_budget).resolve(cost)
    template = (config.depth or template[0], config.width or template[1])
    from .graph import check_template
    try:
        check_template(*template)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config.searcher not in SEARCHERS:
        raise ConfigError(f"searcher = {config.searcher!r}; use one of {', '.join(SEARCHERS)}")
    return RunSetup(config, pool, task, cost, budget_flops, template, sim)


def check_endpoints(setup: RunSetup, timeout_s: float = 5.0) -> None:
    """ConfigError unless every endpoint of a pool file answers ``GET /models``."""
    if setup.sim is not None or setup.local:
        return
    urls = sorted({m.endpoint for m in setup.pool if m.endpoint})
    if setup.config.agent == "llm" and setup.config.agent_endpoint:
        urls.append(setup.config.agent_endpoint)
    for url in urls:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/models", timeout=timeout_s):
                pass
        except urllib.error.HTTPError:
            pass        # it answered: an auth or routing error is not "unreachable"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"endpoint {url} is unreachable ({reason}); start the server or "
                              "fix its endpoint in the pool file") from None


def make_searcher(setup: RunSetup, agent_client: LLMClient | None = None) -> Searcher:
    """The configured searcher over the setup's pool, template, costs and budget."""
    config = setup.config
    objective = (AccuracyLatency(config.latency_penalty) if config.objective == "accuracy-latency"
                 else Accuracy())
    kwargs: dict = {"seed": config.seed, "objective": objective}
    if config.searcher == "agent-reinforce":
        from .search import HeuristicAgent, LLMAgent
        kwargs["agent"] = (LLMAgent(agent_client, config.agent_model or "", seed=config.seed,
                                    context_tokens=config.agent_context_tokens)
                           if agent_client is not None else HeuristicAgent())
    elif config.searcher == "llm-optimizer" and agent_client is not None:
        kwargs.update(client=agent_client, model=config.agent_model,
                      context_tokens=config.agent_context_tokens)
    cls = SEARCHERS[config.searcher]
    return cls(setup.pool, setup.template, setup.cost, setup.budget_flops, **kwargs)


@contextlib.asynccontextmanager
async def open_client(setup: RunSetup) -> AsyncIterator[tuple[LLMClient, ModelPool]]:
    """The LLM client of the run (and the pool with its real endpoints), closed afterwards.

    In local mode the embedded model server is started here and stopped on exit.
    """
    from .llm.router import RoutedClient
    config = setup.config
    if setup.sim is not None:
        yield setup.sim, setup.pool  # type: ignore[misc]
        return
    if setup.local:
        from .llm.local import LocalServer, local_pool_specs
        with LocalServer() as server:
            pool = ModelPool.from_dicts(local_pool_specs(server.base_url))
            client = RoutedClient(pool, max_concurrency=2, timeout_s=config.timeout_s)
            try:
                yield client, pool
            finally:
                await client.aclose()
        return
    client = RoutedClient(setup.pool, max_concurrency=config.concurrency,
                          timeout_s=config.timeout_s)
    try:
        yield client, setup.pool
    finally:
        await client.aclose()


def default_run_name(config: SearchConfig) -> str:
    pool = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(config.pool).stem if "/" in config.pool
                  or config.pool.endswith((".toml", ".json")) else config.pool).strip("-")
    return f"{config.searcher}-{pool}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(config: SearchConfig) -> tuple[Path, SearchConfig]:
    """Create ``runs/<name>/`` with the resolved config; ConfigError if it exists already.

    Returns the directory and the config as written (with its name filled in)."""
    name = config.name or default_run_name(config)
    run_dir = Path(config.runs_dir) / name
    if run_dir.exists():
        raise ConfigError(f"run directory {run_dir} exists; resume it with --resume {run_dir} "
                          "or choose another --name")
    tmp = run_dir.with_name(f".{name}.creating")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    final = SearchConfig.from_mapping({**config.__dict__, "name": name})
    (tmp / CONFIG_FILE).write_text(final.to_toml())
    os.replace(tmp, run_dir)     # the directory appears whole or not at all
    return run_dir, final


def load_run_config(run_dir: str | Path) -> SearchConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    return SearchConfig.from_file(path)


async def execute_run(setup: RunSetup, run_dir: Path, *,
                      progress: Callable[[SearchProgress], None] | None = None,
                      evaluator_factory: Callable | None = None) -> SearchReport:
    """Run (or resume) the search of ``setup`` in ``run_dir`` and write its outputs."""
    config = setup.config
    bank_path = Path(config.bank) if config.bank else run_dir / BANK_FILE
    bank = ResponseBank(bank_path)
    agent_client = None
    try:
        async with open_client(setup) as (client, pool):
            banked = BankedClient(client, bank)
            if config.agent_endpoint and config.searcher in ("agent-reinforce", "llm-optimizer"):
                from .llm.openai import OpenAIClient
                agent_client = OpenAIClient(config.agent_endpoint, timeout_s=config.timeout_s)
            executor = GraphExecutor(banked, pool, setup.task, seed=config.seed,
                                     max_tokens=config.max_tokens)
            evaluator = (evaluator_factory(setup, pool, bank) if evaluator_factory is not None
                         else Evaluator(executor, concurrency=config.concurrency))
            searcher = make_searcher(setup, agent_client)
            report = await run_search(searcher, evaluator, config.n_evals,
                                      batch_size=config.batch_size, checkpoint=run_dir,
                                      progress=progress or False)
            replies = reply_stats(searcher)
    finally:
        if agent_client is not None:
            await agent_client.aclose()
        bank.close()
    write_outputs(run_dir, setup, report, replies)
    return report


def reply_stats(searcher: Searcher) -> dict | None:
    """How the searcher's LLM (its agent's, or its own) answered: requests, replies that fell
    back, context overflows, and what was learned of the server; None when it asks no LLM."""
    from .search.channel import AsksLLM
    asker = getattr(searcher, "agent", searcher)
    return asker.reply_stats() if isinstance(asker, AsksLLM) else None


def describe_replies(stats: dict) -> str:
    """One line for the CLI and summary.md from `reply_stats`."""
    window = (f"context window {stats['context_window']} tokens ({stats['window_source']})"
              if stats["context_window"] else "context window unknown")
    return (f"LLM {stats['model']}: {stats['requests']} requests, {stats['fell_back']} replies "
            f"fell back, {stats['context_overflows']} context overflows; {window}; prompt tokens "
            f"by {stats['tokens_counted_by'] or '-'}; reply schema sent as "
            f"{stats['schema_form'] or '-'}")


def read_replies(run_dir: str | Path) -> dict | None:
    """The `reply_stats` a finished run recorded in ``llm_replies.json``, if any."""
    path = Path(run_dir) / REPLIES_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_outputs(run_dir: Path, setup: RunSetup, report: SearchReport,
                  replies: dict | None = None) -> None:
    """best_graph.json, summary.md, the plots and (when an LLM was asked) llm_replies.json of
    a finished search."""
    from . import plots
    if replies is not None:
        (run_dir / REPLIES_FILE).write_text(json.dumps(replies, indent=2))
    history = [r for r in report.history if not r.reused]
    if report.best_graph is not None:
        data = {"graph": report.best_graph.to_dict(), "result": report.best_result.to_dict()
                if report.best_result else None, "objective": report.best_value}
        (run_dir / BEST_FILE).write_text(json.dumps(data, indent=2))
        plots.draw_graph(report.best_graph, run_dir / PLOTS_DIR / "best_graph.png",
                         title=f"best graph: accuracy {report.best_result.accuracy:.3f}"
                         if report.best_result else "")
    if history:
        results = [r.result for r in history]
        acc = [r.accuracy for r in results]
        plots.plot_best_so_far([r.value for r in history], run_dir / PLOTS_DIR / "best_so_far.png",
                               label=setup.config.objective,
                               title=f"{setup.config.searcher}: best so far")
        plots.plot_tradeoff(acc, [r.mean_flops / 1e12 for r in results],
                            run_dir / PLOTS_DIR / "accuracy_vs_flops.png",
                            xlabel="TFLOPs per query", title="accuracy vs compute")
        plots.plot_tradeoff(acc, [r.mean_latency_s for r in results],
                            run_dir / PLOTS_DIR / "accuracy_vs_latency.png",
                            xlabel="latency per query (s)", title="accuracy vs latency")
    (run_dir / SUMMARY_FILE).write_text(summary_markdown(setup, report, replies))


def summary_markdown(setup: RunSetup, report: SearchReport, replies: dict | None = None) -> str:
    config = setup.config
    lines = [f"# pytts search: {config.name or ''}", "",
             f"- searcher: `{config.searcher}`, objective: `{config.objective}`, seed {config.seed}",
             f"- pool: `{config.pool}` ({', '.join(setup.pool.names)})",
             f"- task: `{config.task}`, {len(setup.task.questions)} dev questions",
             f"- budget: {setup.budget_flops:.3g} FLOPs per query; template "
             f"{setup.template[0]}x{setup.template[1]}",
             f"- evaluations: {report.n_evals} (+{report.n_reused} repeated proposals served "
             f"from history); stopped: {report.stopped}",
             f"- LLM calls made: {report.calls_made}, served from the bank: {report.calls_served}"]
    if replies is not None:
        lines.append(f"- {describe_replies(replies)}")
    lines.append("")
    if report.best_graph is not None and report.best_result is not None:
        r = report.best_result
        lines += ["## Best graph", "",
                  f"accuracy **{r.accuracy:.3f}** (95% CI {r.ci_low:.3f}-{r.ci_high:.3f}), "
                  f"{r.mean_flops:.3g} FLOPs and {r.mean_latency_s:.2f} s per query", "",
                  "```", report.best_graph.describe(), "```", ""]
    lines += ["## Pareto front (accuracy vs latency)", "", "| accuracy | latency s |", "|---|---|"]
    lines += [f"| {p.accuracy:.3f} | {p.cost:.2f} |" for p in report.pareto_latency.points()]
    lines += ["", "Plots: `plots/best_so_far.png`, `plots/accuracy_vs_flops.png`, "
              "`plots/accuracy_vs_latency.png`, `plots/best_graph.png`.", ""]
    return "\n".join(lines)


def read_best(path: str | Path) -> tuple[CollaborationGraph, dict]:
    """The graph of a ``best_graph.json`` (or of a bare graph JSON) and its extra fields."""
    data = json.loads(Path(path).read_text())
    graph_data = data.get("graph", data)
    names = sorted({n["model"] for n in graph_data.get("nodes", [])})
    return CollaborationGraph.from_dict(graph_data, names), data
