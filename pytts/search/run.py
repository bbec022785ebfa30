"""run_search: drive a `Searcher` with an evaluator (ask -> evaluate -> tell), never paying twice
for the same graph, checkpointing after every evaluation and resuming from the checkpoint.

The checkpoint (`Checkpoint`) is saved after every ask, evaluation and tell: the told record is
appended to ``history.jsonl``, new searcher journal entries to ``journal.jsonl``, and a small
``state.json`` (the searcher's own state, the loop's state with results evaluated but not told
yet, and the log lengths) replaces the previous one. A single writer thread does the file work
in order, off the event loop, so the files always hold a prefix of the saves. Because tells
happen in ask order, each save is a consistent point of the run, and a resumed run redoes
deterministically whatever a kill lost, a run killed (even by SIGKILL) at any instant and
resumed ends with exactly the history of an uninterrupted run. A kill can lose only the last
few saves; an error raised by an evaluation (or a cancellation) waits for the saves first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, cast

from ..errors import ConfigError
from ..evaluate import EvalResult
from ..graph import CollaborationGraph
from .base import Searcher
from .checkpoint import Checkpoint
from .history import TrialRecord
from .objective import ParetoFront
from .racing import Race, RacingPolicy, Selection, SubsetEvaluator

log = logging.getLogger("pytts.search")


class GraphEvaluator(Protocol):
    """Anything that scores a graph on a dev set (`pytts.evaluate.Evaluator` is one)."""

    async def evaluate(self, graph: CollaborationGraph) -> EvalResult:
        ...


@dataclass
class SearchProgress:
    """A snapshot for progress displays, sent after every evaluation and every tell."""

    n_evals: int
    n_evals_target: int
    n_told: int
    n_reused: int
    best_value: float | None
    best_accuracy: float | None
    last_value: float | None
    calls_made: int
    calls_served: int


@dataclass
class SearchReport:
    """How a search ended: the best graph, the full history and the Pareto fronts.

    ``stopped`` is ``"budget"`` (``n_evals`` reached), ``"calls"`` (``max_calls`` reached),
    ``"exhausted"`` (the searcher had nothing left to propose) or ``"stale"`` (``max_stale_asks``
    asks in a row brought no new graph). With racing, ``best_graph``/``best_result`` are the
    returned graph of ``selection`` (chosen on confirmation questions, see `Race.select`), and
    ``selections`` holds the returned graph after each of the ``select_at`` evaluation counts
    with the calls a run that stopped there spent: its race calls and its finalists'
    confirmation runs (``selection_calls`` counts every selection's).
    """

    best_graph: CollaborationGraph | None
    best_result: EvalResult | None
    best_value: float | None
    history: list[TrialRecord]
    n_evals: int
    n_reused: int
    calls_made: int
    calls_served: int
    stopped: str
    pareto_latency: ParetoFront
    pareto_flops: ParetoFront
    selection: Selection | None = None
    selections: dict[int, tuple[Selection, int]] = field(default_factory=dict)
    selection_calls: int = 0


@dataclass
class _LoopState:
    """What the loop itself must remember across a restart."""

    n_evals: int = 0
    n_reused: int = 0
    calls_made: int = 0
    calls_served: int = 0
    stale_asks: int = 0
    batch_reused: list[bool] = field(default_factory=list)
    evaluated: dict[str, EvalResult] = field(default_factory=dict)
    against: str | None = None
    """Racing: the incumbent the current batch races against (fixed when it was asked)."""

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**data, "batch_reused": list(self.batch_reused),
                "evaluated": {k: r.to_dict() for k, r in self.evaluated.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _LoopState:
        evaluated = {k: EvalResult.from_dict(r) for k, r in data["evaluated"].items()}
        return cls(**{**data, "evaluated": evaluated})


def print_progress(p: SearchProgress) -> None:
    """The plain-text progress line used by ``progress=True``."""
    best = "-" if p.best_value is None else f"{p.best_value:.4f}"
    print(f"\r[search] evals {p.n_evals}/{p.n_evals_target}  told {p.n_told} "
          f"(reused {p.n_reused})  best {best}  calls made {p.calls_made} served "
          f"{p.calls_served}", end="", file=sys.stderr, flush=True)


async def run_search(searcher: Searcher, evaluator: GraphEvaluator, n_evals: int, *,
                     batch_size: int = 1, checkpoint: str | os.PathLike[str] | None = None,
                     progress: bool | Callable[[SearchProgress], None] = False,
                     max_stale_asks: int = 100, racing: RacingPolicy | None = None,
                     max_calls: int | None = None,
                     select_at: tuple[int, ...] = ()) -> SearchReport:
    """Search for ``n_evals`` evaluations (the count of graphs actually evaluated).

    Each round asks for up to ``batch_size`` graphs and evaluates the new ones concurrently; a
    graph seen before (same canonical key) is told its cached result at no cost, and the
    searcher is asked again. The search also stops when the searcher proposes nothing
    (exhausted) or ``max_stale_asks`` asks in a row bring no new graph. With ``checkpoint`` (a
    directory) everything is persisted after every evaluation and every tell, and an existing
    checkpoint is resumed; graphs pending in it are finished even past ``n_evals``. If an
    evaluation raises, the rest of its batch still finishes (and is persisted) before the error
    propagates. Resuming with a larger ``n_evals`` extends a finished run; it makes the same
    search as one long run when the first run stopped where an ask of the long run ended (some
    searchers plan rounds at ask time, so ask sizes matter): at a multiple of ``batch_size``,
    except that Agent-REINFORCE's pilot round ends an ask of its own.
    ``progress`` is True (a line on stderr) or a callback taking a `SearchProgress`.

    ``racing`` (a `RacingPolicy`; the evaluator must take question subsets, see
    `pytts.search.racing.SubsetEvaluator`) races every candidate against the incumbent on
    growing batches of questions (a batch asked before there is one races its members against
    each other) and chooses the returned graph on confirmation questions, for every searcher
    alike. ``max_calls`` stops asking once the LLM calls made reach it.
    """
    if n_evals < 0 or batch_size < 1 or max_stale_asks < 1:
        raise ConfigError(f"need n_evals >= 0, batch_size >= 1 and max_stale_asks >= 1; got "
                          f"{n_evals}, {batch_size}, {max_stale_asks}")
    if max_calls is not None and max_calls < 1:
        raise ConfigError(f"max_calls must be >= 1, got {max_calls}")
    ckpt = Checkpoint(checkpoint) if checkpoint is not None else None
    loop = _LoopState()
    saved = await asyncio.to_thread(ckpt.load) if ckpt is not None else None
    if saved is not None:
        searcher.load_state_dict(saved.state["searcher"], history=saved.history,
                                 journal=saved.journal)
        loop = _LoopState.from_dict(saved.state["run"])
        log.info("resuming %s from %s: %d evaluations, %d tells done", searcher.name,
                 checkpoint, loop.n_evals, len(searcher.history))
    writer = ckpt.writer() if ckpt is not None else None
    # A new checkpoint starts with whatever the searcher was told before this run.
    history_saved = len(searcher.history) if saved is not None else 0
    journal_saved = len(searcher.journal) if saved is not None else 0
    callback = print_progress if progress is True else (progress or None)
    cache: dict[str, EvalResult] = {}
    for r in searcher.history:
        cache.setdefault(r.key, r.result)
    cache.update(loop.evaluated)
    fronts = {c: ParetoFront.from_history(c, searcher.history) for c in ("latency", "flops")}
    # racing runs graphs on chosen questions: its evaluator is a SubsetEvaluator
    subset = cast(SubsetEvaluator, evaluator)
    race = Race(racing, len(subset.questions)) if racing is not None else None
    if race is not None:
        for r in searcher.history:
            if not r.reused:
                race.observe(r.key, r.graph, r.result)
    selections: dict[int, tuple[Selection, int]] = {}
    selection_calls = 0

    async def select() -> Selection | None:
        nonlocal selection_calls
        if race is None:
            return None
        before = race.calls
        chosen = await race.select(subset)
        selection_calls += race.calls - before
        return chosen

    def evaluate(graph: CollaborationGraph) -> Any:
        if race is None:
            return evaluator.evaluate(graph)
        against = race.entrants[loop.against].result if loop.against is not None else None
        return race.evaluate(subset, graph, against)

    def persist() -> None:
        """Save the checkpoint: new log lines first, then the state that counts them."""
        nonlocal history_saved, journal_saved
        if writer is None:
            return
        writer.append_history(searcher.history[history_saved:])
        writer.append_journal(searcher.journal[journal_saved:])
        history_saved, journal_saved = len(searcher.history), len(searcher.journal)
        writer.save_state({"searcher": searcher.state_dict(include_logs=False),
                           "run": loop.to_dict(), "history_lines": history_saved,
                           "journal_lines": journal_saved})

    def report_progress(last_value: float | None = None) -> None:
        if callback is None:
            return
        best = searcher.best_record()
        callback(SearchProgress(loop.n_evals, n_evals, len(searcher.history), loop.n_reused,
                                best.value if best else None,
                                best.result.accuracy if best else None, last_value,
                                loop.calls_made, loop.calls_served))

    stopped = "budget"
    try:
        while True:
            graphs = searcher.pending
            if graphs:
                reused = loop.batch_reused[-len(graphs):]
                if len(reused) != len(graphs):
                    reused = _reused_flags(graphs, cache)
            else:
                if loop.n_evals >= n_evals:
                    break
                if max_calls is not None and loop.calls_made >= max_calls:
                    stopped = "calls"
                    break
                if loop.stale_asks >= max_stale_asks:
                    stopped = "stale"
                    log.warning("%s proposed no new graph in %d asks in a row; stopping after %d "
                                "evaluations", searcher.name, loop.stale_asks, loop.n_evals)
                    break
                graphs = await searcher.aask(min(batch_size, n_evals - loop.n_evals))
                if not graphs:
                    stopped = "exhausted"
                    break
                reused = _reused_flags(graphs, cache)
                loop.batch_reused = reused
                loop.against = race.incumbent if race is not None else None
                persist()
            evaluated_before = loop.n_evals
            keys = [g.canonical_key() for g in graphs]
            told = 0

            # the batch is passed in, not closed over: the closure must see this iteration's
            async def tell_ready(graphs: list[CollaborationGraph], keys: list[str],
                                 reused: list[bool]) -> None:
                nonlocal told
                while told < len(graphs) and keys[told] in cache:
                    key = keys[told]
                    record = await searcher.atell(graphs[told], cache[key], reused=reused[told])
                    loop.evaluated.pop(key, None)
                    loop.n_reused += int(reused[told])
                    if not reused[told]:
                        for front in fronts.values():
                            front.add(key, record.graph, record.result)
                        if race is not None:
                            race.observe(key, record.graph, record.result)
                    persist()
                    told += 1
                    report_progress(record.value)
                    n_real = len(searcher.history) - loop.n_reused
                    if n_real in select_at and n_real not in selections and race is not None:
                        chosen = await select()
                        if chosen is not None:
                            # what a run stopped here spends: its race calls and its
                            # finalists' confirmation (not earlier selections' finalists')
                            selections[n_real] = (chosen, loop.calls_made + chosen.confirm_calls)

            await tell_ready(graphs, keys, reused)
            todo = {}
            for key, run in _evaluations(graphs, keys, cache, race, loop.against is None,
                                         evaluator, evaluate):
                todo[asyncio.ensure_future(run)] = key
            order = {key: i for i, key in reversed(list(enumerate(keys)))}
            failure: BaseException | None = None
            try:
                while todo:
                    done, _ = await asyncio.wait(todo, return_when=asyncio.FIRST_COMPLETED)
                    for task in sorted(done, key=lambda t: order[todo[t]]):
                        key = todo.pop(task)
                        if task.exception() is not None:
                            # Keep the batch's other evaluations (persisted as they finish), then
                            # raise: a resumed run must not pay for them again.
                            failure = failure or task.exception()
                            continue
                        result = task.result()
                        cache[key] = loop.evaluated[key] = result
                        loop.n_evals += 1
                        loop.calls_made += result.calls_made
                        loop.calls_served += result.calls_served
                        persist()
                        report_progress()
                    if failure is None:
                        await tell_ready(graphs, keys, reused)
                if failure is not None:
                    raise failure
            finally:
                for task in todo:
                    task.cancel()
                if todo:
                    await asyncio.gather(*todo, return_exceptions=True)
            loop.stale_asks = 0 if loop.n_evals > evaluated_before else loop.stale_asks + 1
            persist()
    finally:
        if writer is not None:
            await writer.close()  # everything saved is on disk before we return or raise
    best = searcher.best()
    best_record = searcher.best_record()
    best_graph, best_result = (best[0], best[1]) if best else (None, None)
    best_value = best_record.value if best_record else None
    selection = await select()
    if selection is not None:
        best_graph, best_result = selection.graph, selection.result
        best_value = float(searcher.objective.value(selection.result))
    if callback is print_progress:
        print(file=sys.stderr)
    return SearchReport(best_graph, best_result, best_value, list(searcher.history),
                        loop.n_evals, loop.n_reused, loop.calls_made, loop.calls_served,
                        stopped, fronts["latency"], fronts["flops"], selection, selections,
                        selection_calls)


def _evaluations(graphs: list[CollaborationGraph], keys: list[str], cache: dict[str, EvalResult],
                 race: Race | None, no_incumbent: bool, evaluator: GraphEvaluator,
                 evaluate: Callable[[CollaborationGraph], Awaitable[EvalResult]]
                 ) -> list[tuple[str, Awaitable[EvalResult]]]:
    """The evaluations a batch still needs, one per distinct graph not in ``cache``: each
    raced against the incumbent by ``evaluate``, or, for a raced batch asked while there is
    no incumbent, against each other (`pytts.search.racing.OpeningRace`)."""
    members: dict[str, CollaborationGraph] = {}
    for g, key in zip(graphs, keys):
        members.setdefault(key, g)
    missing = [key for key in members if key not in cache]
    if race is None or not no_incumbent or len(members) < 2 or not missing:
        return [(key, evaluate(members[key])) for key in missing]
    opening = race.opening(evaluator, list(members.values()),  # type: ignore[arg-type]
                           [cache.get(key) for key in members])
    return [(key, opening.evaluate(i)) for i, key in enumerate(members) if key not in cache]


def _reused_flags(graphs: list[CollaborationGraph], cache: dict[str, Any]) -> list[bool]:
    """True where a graph was evaluated before this batch or repeats an earlier one of it."""
    seen = set(cache)
    flags = []
    for g in graphs:
        key = g.canonical_key()
        flags.append(key in seen)
        seen.add(key)
    return flags


def run_search_sync(searcher: Searcher, evaluator: GraphEvaluator, n_evals: int,
                    **kwargs: Any) -> SearchReport:
    """`run_search` from synchronous code (runs its own event loop)."""
    return asyncio.run(run_search(searcher, evaluator, n_evals, **kwargs))
