"""The searcher interface (Optuna-style ask/tell), search objectives, the Pareto front, and the
graph-space moves shared by the searchers that explore around good graphs.

Every searcher proposes graphs of one ``D x W`` template over one model pool, each within a FLOPs
budget per query, and learns from `EvalResult`s scored by an `Objective`. Its whole state (RNG,
distributions, history, asked-but-not-told graphs) is a JSON-ready ``state_dict`` so a search can
stop anywhere and continue exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Coroutine, Iterable, Sequence, TypeVar

import numpy as np

from ..cost import Budget, CostModel, as_flops
from ..errors import ConfigError
from ..evaluate import EvalResult
from ..graph import ASSISTANT, FUSER, CollaborationGraph, GraphBatch, check_template
from ..pool import ModelPool
from ..probgraph import ProbGraph

log = logging.getLogger("pytts.search")

T = TypeVar("T")

STATE_VERSION = 1


# ===================================================================== objectives
class Objective(ABC):
    """What a search maximises: a number computed from one graph's `EvalResult`."""

    kind: ClassVar[str]

    @abstractmethod
    def value(self, result: EvalResult) -> float:
        """The score of ``result`` (higher is better)."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Objective) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        params = {k: v for k, v in self.to_dict().items() if k != "kind"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


class Accuracy(Objective):
    """Dev-set accuracy."""

    kind = "accuracy"

    def value(self, result: EvalResult) -> float:
        return float(result.accuracy)


class AccuracyLatency(Objective):
    """Accuracy minus ``penalty_per_s`` x mean per-query latency (seconds): the paper's joint
    accuracy-latency objective as a scalar."""

    kind = "accuracy-latency"

    def __init__(self, penalty_per_s: float) -> None:
        if not (math.isfinite(penalty_per_s) and penalty_per_s >= 0):
            raise ConfigError(f"penalty_per_s must be a finite number >= 0, got {penalty_per_s!r}")
        self.penalty_per_s = float(penalty_per_s)

    def value(self, result: EvalResult) -> float:
        return float(result.accuracy) - self.penalty_per_s * float(result.mean_latency_s)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "penalty_per_s": self.penalty_per_s}


def objective_from_dict(data: dict[str, Any]) -> Objective:
    """Rebuild an objective from ``Objective.to_dict()``."""
    kind = data.get("kind")
    if kind == Accuracy.kind:
        return Accuracy()
    if kind == AccuracyLatency.kind:
        return AccuracyLatency(float(data["penalty_per_s"]))
    raise ConfigError(f"unknown objective {kind!r}; known: {Accuracy.kind}, "
                      f"{AccuracyLatency.kind}")


# ===================================================================== history
@dataclass
class TrialRecord:
    """One told graph: what was proposed, how it did, and what the searcher made of it.

    ``number`` counts tells from 0; ``reused`` marks a repeated proposal that was told the cached
    result of an earlier evaluation (no evaluation was spent); ``feedback`` is the textual
    gradient an agent wrote after the round this graph closed (None for other searchers/tells).
    """

    number: int
    graph: dict[str, Any]
    key: str
    result: dict[str, Any]
    value: float
    reused: bool = False
    feedback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialRecord":
        return cls(**data)

    def eval_result(self) -> EvalResult:
        return EvalResult.from_dict(self.result)


# ===================================================================== Pareto front
@dataclass(frozen=True)
class ParetoPoint:
    """A graph's position in (accuracy up, cost down) space."""

    key: str
    accuracy: float
    cost: float
    graph: dict[str, Any] = field(compare=False, hash=False, repr=False)


class ParetoFront:
    """The non-dominated graphs for accuracy (maximised) against one cost (minimised).

    ``cost`` names the `EvalResult` field used: ``"latency"`` (``mean_latency_s``) or
    ``"flops"`` (``mean_flops``). A point dominates another when it is at least as accurate and
    at most as costly, and strictly better in one of the two.
    """

    COSTS = {"latency": "mean_latency_s", "flops": "mean_flops"}

    def __init__(self, cost: str) -> None:
        if cost not in self.COSTS:
            raise ConfigError(f"Pareto cost must be one of {sorted(self.COSTS)}, got {cost!r}")
        self.cost = cost
        self._points: dict[str, ParetoPoint] = {}

    def add(self, key: str, graph: dict[str, Any], result: EvalResult | dict[str, Any]) -> bool:
        """Offer one evaluated graph; True if it joined the front (dominated points leave)."""
        data = result.to_dict() if isinstance(result, EvalResult) else result
        point = ParetoPoint(key, float(data["accuracy"]), float(data[self.COSTS[self.cost]]),
                            graph)
        if key in self._points:
            return False
        if any(self._dominates(p, point) or (p.accuracy == point.accuracy
                                              and p.cost == point.cost)
               for p in self._points.values()):
            return False
        self._points = {k: p for k, p in self._points.items() if not self._dominates(point, p)}
        self._points[key] = point
        return True

    @staticmethod
    def _dominates(a: ParetoPoint, b: ParetoPoint) -> bool:
        return (a.accuracy >= b.accuracy and a.cost <= b.cost
                and (a.accuracy > b.accuracy or a.cost < b.cost))

    def points(self) -> list[ParetoPoint]:
        """The front, cheapest first."""
        return sorted(self._points.values(), key=lambda p: (p.cost, -p.accuracy))

    def __len__(self) -> int:
        return len(self._points)

    @classmethod
    def from_history(cls, cost: str, records: Iterable[TrialRecord]) -> "ParetoFront":
        front = cls(cost)
        for r in records:
            front.add(r.key, r.graph, r.result)
        return front


# ===================================================================== searcher
class Searcher(ABC):
    """Proposes graphs (``ask``) and learns from their results (``tell``), Optuna-style.

    Constructed with the pool (a `ModelPool` or its names, which must match ``cost.pool``), the
    template ``(D, W)``, the `CostModel`, the budget (FLOPs, or anything `Budget.parse` takes),
    a seed and an objective. Every proposal is checked here to be a graph of the template within
    the budget; a searcher that proposes anything else is a bug and raises RuntimeError.

    Subclasses implement the coroutines ``_propose(n)`` and ``_observe(graph, result, record)``
    and, for their own state, ``_extra_state()`` / ``_load_extra_state(state)``. Searchers that
    talk to an LLM await inside them; use ``aask``/``atell`` (as `run_search` does) from async
    code. ``ask``/``tell`` run the coroutines to completion for synchronous callers.
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
        record = TrialRecord(len(self.history), graph.to_dict(), key, result.to_dict(), value,
                             reused=bool(reused))
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
        return self.graph_from_dict(record.graph), record.eval_result()

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
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this search exactly: JSON-ready."""
        return {
            "searcher": self.name, "version": STATE_VERSION, "seed": self.seed,
            "template": list(self.template), "model_names": list(self.model_names),
            "budget": self.budget, "objective": self.objective.to_dict(),
            "rng": _rng_state(self.rng), "n_asked": self.n_asked,
            "history": [r.to_dict() for r in self.history],
            "pending": [g.to_dict() for g in self._pending],
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()`` output of a searcher built with the same settings.

        ConfigError names the setting that differs (searcher, seed, template, pool, budget,
        objective): continuing under other settings would not be the same search.
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
        self.history = [TrialRecord.from_dict(r) for r in state["history"]]
        self._value_by_key = {}
        for r in self.history:
            self._value_by_key.setdefault(r.key, r.value)
        self._pending = [self.graph_from_dict(g) for g in state["pending"]]
        self._load_extra_state(state["extra"])

    # ------------------------------------------------------------- for subclasses
    @abstractmethod
    async def _propose(self, n: int) -> list[CollaborationGraph]:
        """Up to ``n`` feasible graphs."""

    async def _observe(self, graph: CollaborationGraph, result: EvalResult,
                       record: TrialRecord) -> None:
        """Learn from one told result (``record`` is already in ``history``)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

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
            ok[idx] = self.flops([graphs[i] for i in idx]) <= self.budget
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
        for growth in (1, 4, 16):
            for g in self.sample(probgraph, oversample * growth * (n - len(fresh))):
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


# ===================================================================== graph-space moves
def neighbours(graph: CollaborationGraph) -> list[CollaborationGraph]:
    """Graphs one local move away from ``graph`` on its template, distinct up to isomorphism.

    Moves: change one node's model; flip one later-layer node's role; toggle one edge (keeping
    every node fed); add a node to a layer (copying a sibling's role and wiring, any model);
    remove a node from a layer of two or more; append a layer (one node reading every sink, any
    model); drop the last layer. Budget feasibility is the caller's business.
    """
    d_max, w_max = graph.template
    k = len(graph.model_names)
    model, role, edges = graph.model, graph.role, graph.edges
    depth, widths = graph.depth, graph.layer_widths
    out: dict[str, CollaborationGraph] = {}
    own = graph.canonical_key()

    def offer(m: np.ndarray, r: np.ndarray, e: np.ndarray) -> None:
        try:
            g = CollaborationGraph(m, r, e, graph.model_names)
        except ValueError:
            return
        key = g.canonical_key()
        if key != own:
            out.setdefault(key, g)

    for l in range(depth):
        for i in range(widths[l]):
            for m_new in range(k):
                if m_new != model[l, i]:
                    m = model.copy()
                    m[l, i] = m_new
                    offer(m, role, edges)
            if l > 0:
                r = role.copy()
                r[l, i] = FUSER if role[l, i] == ASSISTANT else ASSISTANT
                offer(model, r, edges)
    for l in range(depth - 1):
        for i in range(widths[l]):
            for j in range(widths[l + 1]):
                e = edges.copy()
                e[l, i, j] ^= 1
                offer(model, role, e)
    for l in range(depth):
        w = widths[l]
        if w < w_max:
            for m_new in range(k):
                m, r, e = model.copy(), role.copy(), edges.copy()
                m[l, w] = m_new
                r[l, w] = role[l, 0]
                if l > 0:
                    e[l - 1, :, w] = edges[l - 1, :, 0]
                if l < depth - 1:
                    e[l, w, :] = edges[l, 0, :]
                offer(m, r, e)
        if w > 1:
            for i in range(w):
                offer(*_without_node(model, role, edges, l, i))
    if depth < d_max:
        for m_new in range(k):
            m, r, e = model.copy(), role.copy(), edges.copy()
            m[depth, 0] = m_new
            r[depth, 0] = FUSER if widths[-1] > 1 else ASSISTANT
            e[depth - 1, : widths[-1], 0] = 1
            offer(m, r, e)
    if depth > 1:
        m, r, e = model.copy(), role.copy(), edges.copy()
        m[depth - 1] = -1
        r[depth - 1] = 0
        e[depth - 2] = 0
        offer(m, r, e)
    return list(out.values())


def shrink_to_budget(graph: CollaborationGraph, cost: CostModel,
                     budget: float) -> CollaborationGraph:
    """``graph`` if it fits ``budget``, else the graph left after removing nodes one at a time,
    each time the removal that saves the most FLOPs (a node of a layer of two or more, or the
    last layer when it is a single node), until it fits. A single node still over the budget
    becomes a call of the cheapest model (which always fits a resolved budget)."""
    while True:
        if cost.graph_cost(graph)[0] <= budget:
            return graph
        m, r, e = graph.model, graph.role, graph.edges
        widths = graph.layer_widths
        options = []
        for l, w in enumerate(widths):
            if w > 1:
                options += [_without_node(m, r, e, l, i) for i in range(w)]
        if graph.depth > 1 and widths[-1] == 1:
            options.append(_without_node(m, r, e, graph.depth - 1, 0))
        if not options:
            cheapest = min(range(len(graph.model_names)), key=lambda k: cost.call_flops(k))
            return CollaborationGraph.chain([cheapest], graph.model_names,
                                            template=graph.template)
        shrunk = [CollaborationGraph(*arrays, graph.model_names) for arrays in options]
        flops = cost.batch_cost(GraphBatch.from_graphs(shrunk))[0]
        graph = shrunk[int(np.argmin(flops))]


def _without_node(model: np.ndarray, role: np.ndarray, edges: np.ndarray, l: int, i: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays with node (l, i) removed and the layer's later slots shifted down by one.

    A successor left without a predecessor reads the layer's (new) first node instead.
    """
    keep = [s for s in range(model.shape[1]) if s != i] + [i]
    m, r, e = model.copy(), role.copy(), edges.copy()
    m[l] = model[l, keep]
    r[l] = role[l, keep]
    m[l, -1], r[l, -1] = -1, 0
    if l > 0:
        e[l - 1] = edges[l - 1][:, keep]
        e[l - 1, :, -1] = 0
    if l < e.shape[0]:
        e[l] = edges[l][keep, :]
        e[l, -1, :] = 0
        orphans = (m[l + 1] >= 0) & ~e[l].any(axis=0)
        e[l, 0, orphans] = 1
    return m, r, e
