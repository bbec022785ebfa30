"""A search run: resolve a `SearchConfig` into its parts, run it in a run directory, report.

Everything that can be wrong with a configuration is found by `resolve` before any file is
written or any server started, so a bad config leaves nothing behind. A run directory holds the
resolved config, the ResponseBank, the checkpoint (searcher state + history), the best graph,
a markdown summary and the plots; `pytts search --resume` continues it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import importlib.util
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import SearchConfig
from .cost import CostModel
from .environment import Environment, LocalEnvironment, environment_for
from .errors import ConfigError, PyttsError
from .evaluate import Evaluator
from .execute import GraphExecutor
from .graph import CollaborationGraph
from .llm.bank import BankedClient, ResponseBank
from .llm.base import LLMClient
from .llm.openai import check_http_url
from .pool import ModelPool
from .search import SEARCHERS, Accuracy, AccuracyLatency, Searcher, TrialRecord
from .search.checkpoint import HISTORY_FILE, STATE_FILE
from .search.racing import RacingPolicy
from .search.run import SearchProgress, SearchReport, run_search
from .tasks.base import Task

if TYPE_CHECKING:
    from .sim import SimulatedPool
    from .sim.reference import Reference

CONFIG_FILE = "config.toml"
BANK_FILE = "bank.sqlite"
BEST_FILE = "best_graph.json"
SUMMARY_FILE = "summary.md"
PLOTS_DIR = "plots"
LOCK_FILE = "run.lock"
RUN_FILE = "run.json"
RESUMABLE_KEYS = ("n_evals", "concurrency", "timeout_s")
"""Config keys a ``--resume`` may change: they bound the run, not what it computes."""
REPLIES_FILE = "llm_replies.json"
REFERENCE_CACHE = ".cache/reference"
"""Where in the runs directory simulated runs keep their landscapes' reference optima."""


@dataclass
class RunSetup:
    """The resolved parts of a run (no servers started, no files written yet); ``env`` is the
    run mode they came from."""

    config: SearchConfig
    pool: ModelPool
    task: Task
    cost: CostModel
    budget_flops: float
    template: tuple[int, int]
    env: Environment

    @property
    def sim(self) -> SimulatedPool | None:
        """The simulated pool of a simulated run (its ground truth), else None."""
        return self.env.simulator

    @property
    def local(self) -> bool:
        return isinstance(self.env, LocalEnvironment)

    @functools.cached_property
    def reference(self) -> Reference | None:
        """A simulated run's reference optimum at its budget and template
        (`pytts.sim.reference`), searched on first use, or read from the runs directory's
        cache (``<runs_dir>/.cache/reference``) where a run on the same landscape left it;
        None for a real run."""
        if self.sim is None:
            return None
        from .sim.reference import cached_reference_optimum
        return cached_reference_optimum(self.sim.preset, self.budget_flops,
                                        template=self.template,
                                        cache_dir=Path(self.config.runs_dir) / REFERENCE_CACHE)


def resolve(config: SearchConfig) -> RunSetup:
    """Check and assemble pool, task, costs, budget and template; ConfigError/BudgetError."""
    config.check_paths()
    env = environment_for(config)
    pool = env.pool()
    task = env.task(config)
    cost = env.cost(pool, task)
    budget_flops = env.budget(config.budget).resolve(cost)
    template = (config.depth or env.template[0], config.width or env.template[1])
    from .graph import check_template
    try:
        check_template(*template)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config.searcher not in SEARCHERS:
        raise ConfigError(f"searcher = {config.searcher!r}; use one of {', '.join(SEARCHERS)}")
    if config.searcher == "exhaustive":
        from .search.exhaustive import check_enumerable
        check_enumerable(template, len(pool))
    _check_prerequisites(config, pool)
    env.check(config)
    return RunSetup(config, pool, task, cost, budget_flops, template, env)


def _check_prerequisites(config: SearchConfig, pool: ModelPool) -> None:
    """ConfigError for what would otherwise fail only after the run directory exists: a bank
    file that is not a bank, a non-http(s) endpoint, an unset API key variable, an extra that is
    not installed (Ray, the embedded model)."""
    if config.bank:
        ResponseBank.check(config.bank)
    for model in pool:
        if model.endpoint:
            check_http_url(model.endpoint, f"model {model.name!r}: endpoint")
        if model.api_key_env and model.api_key_env not in os.environ:
            raise ConfigError(f"model {model.name!r}: environment variable "
                              f"{model.api_key_env!r} (api_key_env) is not set; export it or "
                              "drop api_key_env")
    if config.agent_endpoint:
        check_http_url(config.agent_endpoint, "agent_endpoint")
    if config.ray and importlib.util.find_spec("ray") is None:
        raise ConfigError(f'ray = {config.ray!r} needs Ray: pip install "pytts[ray]"')


def check_endpoints(setup: RunSetup, timeout_s: float = 5.0) -> None:
    """ConfigError unless every endpoint the run needs up before it starts (a pool file's, the
    agent's) answers ``GET /models``."""
    urls = setup.env.endpoints(setup.pool)
    if not urls:
        return
    if setup.config.agent == "llm" and setup.config.agent_endpoint:
        urls.append(setup.config.agent_endpoint)
    for url in urls:
        check_http_url(url, "endpoint")     # urlopen would also "reach" file:// and ftp://
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


def open_client(setup: RunSetup) -> contextlib.AbstractAsyncContextManager[
        tuple[LLMClient, ModelPool]]:
    """The LLM client of the run (and the pool with its real endpoints), closed afterwards.

    In local mode the embedded model server is started here and stopped on exit.
    """
    return setup.env.open_client(setup.config, setup.pool)


def wire_evaluator(setup: RunSetup, client: LLMClient, pool: ModelPool,
                   bank: ResponseBank | None) -> Evaluator:
    """The evaluator of a run: ``client`` behind ``bank`` (when given; a Ray worker passes the
    bank actor's proxy), an executor of the run's task, seed and reply length, and the run's
    concurrency. Every way of running graphs (a search, ``pytts eval``, a Ray worker) is wired
    here."""
    config = setup.config
    llm = BankedClient(client, bank) if bank is not None else client
    executor = GraphExecutor(llm, pool, setup.task, seed=config.seed,
                             max_tokens=config.max_tokens)
    return Evaluator(executor, concurrency=config.concurrency)


@contextlib.asynccontextmanager
async def open_evaluator(setup: RunSetup, bank: ResponseBank | None
                         ) -> AsyncIterator[tuple[Evaluator, ModelPool]]:
    """The run's client opened (`open_client`) and wired into an evaluator (`wire_evaluator`),
    with the pool it serves; the client is closed afterwards."""
    async with open_client(setup) as (client, pool):
        yield wire_evaluator(setup, client, pool, bank), pool


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
    final = SearchConfig.from_mapping({**config.__dict__, "name": name}).with_absolute_paths()
    (tmp / CONFIG_FILE).write_text(final.to_toml())
    # When the run began: the bank rows stored since are the calls this run paid for.
    (tmp / RUN_FILE).write_text(json.dumps({"created": time.time()}) + "\n")
    os.replace(tmp, run_dir)     # the directory appears whole or not at all
    return run_dir, final


def run_bank_path(run_dir: str | Path, config: SearchConfig) -> Path:
    """The ResponseBank file of a run: ``bank`` when configured, else the run's own."""
    return Path(config.bank) if config.bank else Path(run_dir) / BANK_FILE


def run_created(run_dir: str | Path) -> float:
    """When the run in ``run_dir`` was created (0.0 for runs older than ``run.json``)."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return 0.0
    try:
        created = json.loads(path.read_text())["created"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is damaged ({type(exc).__name__}: {exc}); it holds the "
                          'run\'s start time as {"created": SECONDS}') from None
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise ConfigError(f"{path}: created must be a number of seconds, got {created!r}")
    return float(created)


def discard_unused(run_dir: Path, config: SearchConfig) -> bool:
    """Remove ``run_dir`` when it holds no evaluation and no paid completion yet (a run that
    failed at its start); True if it was removed. A run with anything worth keeping stays."""
    history = run_dir / HISTORY_FILE
    if history.exists() and history.read_text().strip():
        return False
    bank_path = run_bank_path(run_dir, config)
    if bank_path.exists():
        try:
            with ResponseBank(bank_path) as bank:
                if bank.count_since(run_created(run_dir)):
                    return False
        except PyttsError:
            return False    # a bank that cannot be read is not known to be empty
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def check_checkpoint(run_dir: str | Path) -> None:
    """ConfigError naming ``state.json`` when it exists but is not a JSON object (damaged, or
    not written by pytts), before a resume hands it to the searcher."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return
    try:
        state = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as exc:        # UnicodeDecodeError and JSONDecodeError alike
        raise ConfigError(f"{path} is damaged ({exc}); restore it, or delete it to start "
                          "the search over (the bank keeps every paid call)") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} holds {type(state).__name__}, not a search checkpoint; "
                          "restore it, or delete it to start the search over")


def resume_config(run_dir: str | Path, flags: Mapping[str, Any]) -> SearchConfig:
    """The config of the run in ``run_dir`` with the ``flags`` (key -> value, None for "not
    given") that may change on a resume applied and written back (`RESUMABLE_KEYS`).

    ConfigError naming any other key whose flag would change the run: it was searched with its
    values, and silently ignoring a flag would mislead."""
    config = load_run_config(run_dir)
    given = {key: value for key, value in flags.items() if value is not None}
    wanted = config.merged(given)
    before, after = config.with_absolute_paths(), wanted.with_absolute_paths()
    changed = [key for key in given if getattr(before, key) != getattr(after, key)]
    fixed = [key for key in changed if key not in RESUMABLE_KEYS]
    if fixed:
        was = ", ".join(f"{key} = {getattr(config, key)!r}" for key in fixed)
        raise ConfigError(f"--resume cannot change {', '.join(fixed)} (run {run_dir} was "
                          f"searched with {was}); only {', '.join(RESUMABLE_KEYS)} may change "
                          "on a resume; start a new run for the rest")
    if changed:
        path = Path(run_dir) / CONFIG_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(wanted.to_toml())
        os.replace(tmp, path)
    return wanted


@contextlib.contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory's exclusive lock (``fcntl.flock`` on ``run.lock``) for the block.

    Another process that wants the run gets a ConfigError naming the pid holding it. The kernel
    drops the lock when its holder exits, however it exits, so a killed run leaves no stale lock.
    """
    with open(Path(run_dir) / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(f"run {run_dir} is in use by pid {holder}; wait for it to "
                              "finish or stop that process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


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
    bank = ResponseBank(run_bank_path(run_dir, config))
    agent_client = None
    try:
        async with open_evaluator(setup, bank) as (evaluator, pool):
            if config.agent_endpoint and config.searcher in ("agent-reinforce", "llm-optimizer"):
                from .llm.openai import OpenAIClient
                agent_client = OpenAIClient(config.agent_endpoint, timeout_s=config.timeout_s)
            if evaluator_factory is not None:
                evaluator = evaluator_factory(setup, pool, bank)
            searcher = make_searcher(setup, agent_client)
            report = await run_search(searcher, evaluator, config.n_evals,
                                      batch_size=config.batch_size, checkpoint=run_dir,
                                      progress=progress or False,
                                      racing=racing_policy(config, len(setup.task.questions)))
            replies = reply_stats(searcher)
            made, served = call_counts(bank, run_dir, report.history)
            report = dataclasses.replace(report, calls_made=made, calls_served=served)
    finally:
        if agent_client is not None:
            await agent_client.aclose()
        bank.close()
    write_outputs(run_dir, setup, report, replies)
    return report


def racing_policy(config: SearchConfig, n_questions: int) -> RacingPolicy | None:
    """Racing for a dev set of ``n_questions`` (`RacingPolicy.for_questions`: 80% raced in
    doubling stages, the rest confirms the returned graph); None when racing is off, the dev
    set is too small to split (under 20 questions), or candidates run on Ray workers (which
    score whole dev sets)."""
    if config.racing == "off" or config.ray or n_questions < 20:
        return None
    return RacingPolicy.for_questions(n_questions)


def call_counts(bank: ResponseBank, run_dir: str | Path,
                history: Sequence[TrialRecord]) -> tuple[int, int]:
    """(LLM calls made, completions served from the bank) by the run in ``run_dir``.

    Calls made are counted in the bank, as the completions it stored since the run began, so
    calls paid for before a crash count although the evaluation that made them was redone
    after the resume; served is what the recorded evaluations used beyond those.
    """
    made = bank.count_since(run_created(run_dir))
    used = sum(r.result.calls_made + r.result.calls_served
               for r in history if not r.reused)
    return made, max(used - made, 0)


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
             f"- searcher: `{config.searcher}`, objective: `{config.objective}`, "
             f"seed {config.seed}",
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
        on = f"{r.n_questions} questions"
        if r.samples is not None:  # a selection's fresh samples of the same questions
            on = (f"{r.n_questions} runs ({len(set(r.question_ids or ()))} questions, "
                  f"{len(set(r.samples))} samples)")
        lines += ["## Returned graph", "",
                  f"dev accuracy **{r.accuracy:.3f}** on {on} (95% CI "
                  f"{r.ci_low:.3f}-{r.ci_high:.3f}), {r.mean_flops:.3g} FLOPs and "
                  f"{r.mean_latency_s:.2f} s per query", ""]
        sel = report.selection
        if sel is not None and sel.difference is not None:
            low, high = sel.difference.interval()
            lines += [f"Chosen among the best raced graphs on confirmation questions and fresh "
                      f"samples: {100 * sel.difference.mean:+.1f} points over the runner-up "
                      f"on {sel.difference.n} shared runs (95% CI {100 * low:+.1f} to "
                      f"{100 * high:+.1f}).", ""]
        lines += ["```", report.best_graph.describe(), "```", ""]
        if setup.sim is not None:
            lines += simulated_truth_lines(setup, report)
    lines += ["## Pareto front (accuracy vs latency)", "", "| accuracy | latency s |", "|---|---|"]
    lines += [f"| {p.accuracy:.3f} | {p.cost:.2f} |" for p in report.pareto_latency.points()]
    lines += ["", "Plots: `plots/best_so_far.png`, `plots/accuracy_vs_flops.png`, "
              "`plots/accuracy_vs_latency.png`, `plots/best_graph.png`.", ""]
    return "\n".join(lines)


def simulated_truth_lines(setup: RunSetup, report: SearchReport) -> list[str]:
    """For a simulated run: the expected test accuracy of the returned graph, of the best
    single-model graph the run evaluated and of the landscape's reference optimum at the run's
    budget and template (`pytts.sim.reference`; the ground truth a real run cannot know).
    ValueError for a real run or a run that returned no graph."""
    from .sim import GroundTruth
    # the console line and summary.md share one reference search (a cached property)
    sim, graph, ref = setup.sim, report.best_graph, setup.reference
    if sim is None or graph is None or ref is None:
        raise ValueError("simulator ground truth needs a simulated run that returned a graph")
    truth = GroundTruth(sim.preset)
    returned = truth.expected_accuracy(graph)[0]
    singles = {r.key: r.graph for r in report.history
               if r.graph.vote_model is not None}
    best_single = max((truth.expected_accuracy(g)[0] for g in singles.values()), default=None)
    line = f"Expected test accuracy (simulator ground truth): returned graph **{returned:.3f}**"
    if best_single is not None:
        line += (f"; best single-model graph evaluated {best_single:.3f} "
                 f"({100 * (returned - best_single):+.1f} points)")
    line += (f"; reference optimum at this budget {ref.accuracy:.3f} +/- {ref.stderr:.4f} "
             f"(returned graph {100 * (returned - ref.accuracy):+.1f} points)")
    return [line + ".", ""]


def read_best(path: str | Path,
              model_names: Sequence[str] | None = None) -> tuple[CollaborationGraph, dict]:
    """The graph of a ``best_graph.json`` (or of a bare graph JSON) and its extra fields.

    ``model_names`` is the pool the graph's models are looked up in (default: the models the
    graph names). ConfigError naming the file for anything that is not such a graph."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is not a graph JSON file" + (" (it is a directory)"
                                                                 if path.is_dir() else ""))
    try:
        data = json.loads(path.read_text())
        graph_data = data.get("graph", data) if isinstance(data, dict) else None
        if not isinstance(graph_data, dict):
            raise TypeError("the top level is not an object (a graph, or {\"graph\": ...})")
        names = model_names if model_names is not None else sorted(
            {n["model"] for n in graph_data.get("nodes", [])})
        return CollaborationGraph.from_dict(graph_data, names), data
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a graph JSON ({type(exc).__name__}: {exc}); "
                          "pass a best_graph.json written by pytts search") from None
