"""The searcher interface (Optuna-style ask/tell): a `Searcher` proposes graphs of one ``D x W``
template over one model pool, each within a FLOPs budget per query, and learns from their
`EvalResult`s scored by an `Objective`.

Its whole state (RNG, distributions, history, asked-but-not-told graphs) is a JSON-ready
``state_dict`` so a search can stop anywhere and continue exactly where it stopped. What only
grows (the history, the ``journal``) can be kept apart from the rest, which stays small: a
checkpoint appends those to logs and rewrites only the rest.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..cost import Budget, CostModel, as_flops
from ..errors import ConfigError
from ..evaluate import EvalResult
from ..graph import CollaborationGraph, GraphBatch, check_template
from ..pool import ModelPool
from ..probgraph import ProbGraph
from .history import TrialRecord
from .objective import Accuracy, Objective

T = TypeVar("T")

STATE_VERSION = 3
"""Version of the ``state_dict`` format. 2: the history and the journal can be kept apart;
3: canonical keys come from `CollaborationGraph.canonical_order`, so keys stored by earlier
versions no longer match the same graphs."""


class Searcher(ABC):
    """Proposes graphs (``ask``) and learns from their results (``tell``), Optuna-style.

    Constructed with the pool (a `ModelPool` or its names, which must match ``cost.pool``), the
    template ``(D, W)``, the `CostModel`, the budget (FLOPs, or anything `Budget.parse` takes),
    a seed and an objective. Every proposal is checked here to be a graph of the template within
    the budget; a searcher that proposes anything else is a bug and raises RuntimeError.

    Subclasses implement the coroutines ``_propose(n)`` and ``_observe(graph, result, record)``
    and, for their own state, ``_extra_state()`` / ``_load_extra_state(state)``. State that only
    grows goes to ``journal`` instead: JSON-ready entries, appended and never changed (they are
    back in ``journal`` when ``_load_extra_state`` runs). Searchers that talk to an LLM await
    inside the coroutines; use ``aask``/``atell`` (as `run_search` does) from async code.
    ``ask``/``tell`` run the coroutines to completion for synchronous callers.
    """

    name: ClassVar[str] = "searcher"

    def __init__(self, pool: ModelPool | Sequence[str], template: tuple[int, int],
                 cost: CostModel, budget: float | str | Budget, *, seed: int = 0,
                 objective: Objective | None = None) -> None:
        names = tuple(pool.names if isinstance(pool, ModelPool) else pool)
        if names != tuple(cost.pool.names):
            raise ConfigError(f"the searcher's pool {list(names)} differs from the cost model's "
                              f"{list(cost.pool.names)}")
        depth, width = (int(x) for x in template)
        check_template(depth, width)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.model_names: tuple[str, ...] = names
        self.template: tuple[int, int] = (depth, width)
        self.cost = cost
        self.budget: float = float(as_flops(Budget.parse(budget), cost))
        self.seed = int(seed)
        self.objective: Objective = objective if objective is not None else Accuracy()
        self.rng = np.random.default_rng(self.seed)
        self.history: list[TrialRecord] = []
        self.journal: list[dict[str, Any]] = []
        self.n_asked = 0
        self._pending: list[CollaborationGraph] = []
        self._value_by_key: dict[str, float] = {}

    # ------------------------------------------------------------- public API
    async def aask(self, n: int = 1) -> list[CollaborationGraph]:
        """Up to ``n`` graphs to evaluate next (fewer, possibly none, when a finite space is
        exhausted). Every graph is feasible; a graph may repeat an earlier proposal."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        graphs = list(await self._propose(int(n)))
        if len(graphs) > n:
            raise RuntimeError(f"{type(self).__name__} proposed {len(graphs)} graphs for n={n}")
        self._check_proposals(graphs)
        self._pending.extend(graphs)
        self.n_asked += len(graphs)
        return graphs

    async def atell(self, graph: CollaborationGraph, result: EvalResult, *,
                    reused: bool = False) -> TrialRecord:
        """Report ``result`` for a graph this searcher proposed and has not been told yet."""
        key = graph.canonical_key()
        for i, g in enumerate(self._pending):
            if g.canonical_key() == key:
                graph = self._pending.pop(i)
                break
        else:
            raise ValueError("tell() got a graph that is not pending (it was never asked, or "
                             "was told already)")
        value = float(self.objective.value(result))
        if not math.isfinite(value):
            raise ValueError(f"the objective gave {value} for this result")
        record = TrialRecord(len(self.history), graph, key, result, value, reused=bool(reused))
        self.history.append(record)
        self._value_by_key.setdefault(key, value)
        await self._observe(graph, result, record)
        return record

    def ask(self, n: int = 1) -> list[CollaborationGraph]:
        """`aask` for synchronous callers (not from inside a running event loop)."""
        return _run_sync(self.aask(n))

    def tell(self, graph: CollaborationGraph, result: EvalResult, *,
             reused: bool = False) -> TrialRecord:
        """`atell` for synchronous callers (not from inside a running event loop)."""
        return _run_sync(self.atell(graph, result, reused=reused))

    @property
    def pending(self) -> list[CollaborationGraph]:
        """Graphs asked but not yet told, in ask order."""
        return list(self._pending)

    def best(self) -> tuple[CollaborationGraph, EvalResult] | None:
        """The told graph with the highest objective value (earliest on ties), or None."""
        record = self.best_record()
        if record is None:
            return None
        return record.graph, record.result

    def best_record(self) -> TrialRecord | None:
        """The history record `best` is built from, or None."""
        best: TrialRecord | None = None
        for r in self.history:
            if best is None or r.value > best.value:
                best = r
        return best

    def seen(self, graph: CollaborationGraph) -> bool:
        """Whether ``graph`` (up to isomorphism) was told or is pending."""
        key = graph.canonical_key()
        return key in self._value_by_key or any(g.canonical_key() == key for g in self._pending)

    def seen_keys(self) -> set[str]:
        """Canonical keys of every told or pending graph."""
        return set(self._value_by_key) | {g.canonical_key() for g in self._pending}

    def graph_from_dict(self, data: dict[str, Any]) -> CollaborationGraph:
        """A graph of this searcher's pool from ``CollaborationGraph.to_dict()`` output."""
        return CollaborationGraph.from_dict(data, self.model_names)

    # ------------------------------------------------------------- persistence
    def state_dict(self, *, include_logs: bool = True) -> dict[str, Any]:
        """Everything needed to continue this search exactly: JSON-ready.

        ``include_logs=False`` leaves out the two parts that only grow, ``history`` and
        ``journal`` (a checkpoint keeps them in append-only files): the rest has a size that
        does not depend on how long the search has run.
        """
        state = {
            "searcher": self.name, "version": STATE_VERSION, "seed": self.seed,
            "template": list(self.template), "model_names": list(self.model_names),
            "budget": self.budget, "objective": self.objective.to_dict(),
            "rng": _rng_state(self.rng), "n_asked": self.n_asked,
            "n_told": len(self.history), "n_journal": len(self.journal),
            "pending": [g.to_dict() for g in self._pending],
            "extra": self._extra_state(),
        }
        if include_logs:
            state["history"] = [r.to_dict() for r in self.history]
            state["journal"] = list(self.journal)
        return state

    def load_state_dict(self, state: dict[str, Any], *,
                        history: Sequence[TrialRecord] | None = None,
                        journal: Sequence[dict[str, Any]] | None = None) -> None:
        """Continue from ``state_dict()`` output of a searcher built with the same settings.

        ``history`` and ``journal`` are given when ``state`` was saved without them
        (``include_logs=False``); they must be as long as they were then. ConfigError names the
        setting that differs (searcher, seed, template, pool, budget, objective): continuing
        under other settings would not be the same search.
        """
        expected = {"searcher": self.name, "version": STATE_VERSION, "seed": self.seed,
                    "template": list(self.template), "model_names": list(self.model_names),
                    "budget": self.budget, "objective": self.objective.to_dict()}
        for k, v in expected.items():
            if state.get(k) != v:
                raise ConfigError(f"cannot resume: the checkpoint's {k} is {state.get(k)!r}, "
                                  f"this searcher's is {v!r}")
        self.rng.bit_generator.state = state["rng"]
        self.n_asked = int(state["n_asked"])
        if history is None:
            history = [TrialRecord.from_dict(r, self.model_names) for r in state["history"]]
        if journal is None:
            journal = state["journal"]
        for name, log, n in (("history", history, state["n_told"]),
                             ("journal", journal, state["n_journal"])):
            if len(log) != n:
                raise ConfigError(f"cannot resume: the state was saved after {n} {name} "
                                  f"entries, {len(log)} were given")
        self.history = list(history)
        self.journal = list(journal)
        self._value_by_key = {}
        for r in self.history:
            self._value_by_key.setdefault(r.key, r.value)
        self._pending = [self.graph_from_dict(g) for g in state["pending"]]
        self._load_extra_state(state["extra"])

    # ------------------------------------------------------------- for subclasses
    @abstractmethod
    async def _propose(self, n: int) -> list[CollaborationGraph]:
        """Up to ``n`` feasible graphs."""

    async def _observe(self, graph: CollaborationGraph, result: EvalResult,  # noqa: B027
                       record: TrialRecord) -> None:
        """Optional hook: learn from one told result (``record`` is already in ``history``)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what `_extra_state` saved (nothing, unless a subclass saves something)."""

    def _next_seed(self) -> int:
        """A fresh kernel seed from this searcher's RNG stream."""
        return int(self.rng.integers(0, 2 ** 63))

    def flops(self, graphs: Sequence[CollaborationGraph]) -> np.ndarray:
        """FLOPs per query of each graph under this searcher's cost model."""
        if not graphs:
            return np.zeros(0)
        return self.cost.batch_cost(GraphBatch.from_graphs(list(graphs)))[0]

    def feasible(self, graphs: Sequence[CollaborationGraph]) -> np.ndarray:
        """``bool[len(graphs)]``: which graphs fit this searcher's template and budget."""
        ok = np.array([g.template == self.template and g.model_names == self.model_names
                       for g in graphs], dtype=bool)
        if ok.any():
            idx = np.flatnonzero(ok)
            ok[idx] = self.flops([graphs[i] for i in idx.tolist()]) <= self.budget
        return ok

    def sample(self, probgraph: ProbGraph, n: int) -> list[CollaborationGraph]:
        """``n`` graphs from ``probgraph`` conditioned on the budget (seeded from ``rng``)."""
        batch, _, _ = probgraph.sample(n, self._next_seed(), self.budget, self.cost)
        return list(batch.graphs(self.model_names))

    def sample_unseen(self, probgraph: ProbGraph, n: int, *, oversample: int = 8,
                      exclude: Iterable[str] = (), fill: bool = True) -> list[CollaborationGraph]:
        """``n`` graphs from ``probgraph`` within budget, preferring graphs not seen before.

        Draws ``oversample * n`` graphs (then 4x and 16x more while too few are new) and keeps
        distinct unseen ones (not seen by this searcher, not in ``exclude``) in draw order; if
        still short, ``fill`` tops up with seen ones (so the result is ``n`` long), else fewer
        are returned. The kept set is a sample of the distribution restricted to new graphs,
        not of the distribution itself: fine for proposing, not for unbiased gradients.
        """
        if n <= 0:
            return []
        taken = set(self.seen_keys()) | set(exclude)
        fresh: list[CollaborationGraph] = []
        rest: list[CollaborationGraph] = []
        drawn: set[bytes] = set()  # most repeats are identical rows: skip them before keying
        for growth in (1, 4, 16):
            batch, _, _ = probgraph.sample(oversample * growth * (n - len(fresh)),
                                           self._next_seed(), self.budget, self.cost)
            for b, row in enumerate(batch.row_keys()):
                if row in drawn:
                    continue
                drawn.add(row)
                g = batch.graph(b, self.model_names)
                key = g.canonical_key()
                (rest if key in taken else fresh).append(g)
                taken.add(key)
            if len(fresh) >= n:
                break
        return (fresh + rest)[:n] if fill else fresh[:n]

    def _check_proposals(self, graphs: Sequence[CollaborationGraph]) -> None:
        for g in graphs:
            if not isinstance(g, CollaborationGraph):
                raise RuntimeError(f"{type(self).__name__} proposed a {type(g).__name__}")
        bad = np.flatnonzero(~self.feasible(graphs))
        if bad.size:
            g = graphs[int(bad[0])]
            raise RuntimeError(f"{type(self).__name__} proposed a graph outside the "
                               f"{self.template} template or the budget of "
                               f"{self.budget:.3g} FLOPs: {g!r}")


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return _jsonable(rng.bit_generator.state)


def _jsonable(value: Any) -> Any:
    """Plain Python containers and numbers (numpy scalars and arrays converted)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("ask()/tell() cannot run inside an event loop; use "
                       "`await searcher.aask(n)` / `await searcher.atell(graph, result)`")
