"""The kernels' Python face: validates inputs once, then calls the compiled or NumPy backend.

``BACKEND`` is ``"core"`` when the C++ extension ``pytts._core`` is importable and
``PYTTS_FORCE_REFERENCE`` is unset, else ``"reference"`` (``pytts._reference``). Both backends
have the same array-level functions; these wrappers take pytts objects (`ProbGraph`,
`GraphBatch`, `CostModel`) and raise ``ValueError`` naming the offending argument.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import _reference
from .errors import BudgetError
from .graph import MAX_DEPTH, MAX_WIDTH, ROLES, GraphBatch

if TYPE_CHECKING:
    from .cost import Budget, CostModel
    from .probgraph import ProbGraph, ProbGraphGrad


def _select_backend() -> tuple[str, ModuleType]:
    if os.environ.get("PYTTS_FORCE_REFERENCE", "") not in ("", "0"):
        return "reference", _reference
    try:
        from . import _core
    except ImportError:
        return "reference", _reference
    return "core", _core


BACKEND, _impl = _select_backend()


def _select_answers_backend() -> tuple[str, ModuleType]:
    """Where `intern_answers` and the answer extractors come from: the Cython module
    ``pytts._answers`` where it was built (the fastest, per ``python -m bench.answers``), else
    the backend above (``"pybind11"`` for ``pytts._core``, ``"python"`` for the reference)."""
    if BACKEND == "reference":
        return "python", _reference
    try:
        from . import _answers
    except ImportError:
        return "pybind11", _impl
    return "cython", _answers


ANSWERS_BACKEND, _answers_impl = _select_answers_backend()

DEFAULT_MAX_DRAWS_PER_SAMPLE = 2000
"""Rejection gives up after this many draws per requested graph (plus a floor of 100,000)."""


@dataclass(frozen=True)
class SampleStats:
    """How budget-conditioned sampling went: graphs kept, graphs drawn, their ratio."""

    n_accepted: int
    n_drawn: int

    @property
    def acceptance_rate(self) -> float:
        return self.n_accepted / self.n_drawn if self.n_drawn else 1.0


# ---------------------------------------------------------------- validation
def _array(name: str, value, dtype, ndim: int) -> np.ndarray:
    """``value`` as a C-contiguous array of exactly ``dtype``; ValueError naming ``name``."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of {np.dtype(dtype).name}, "
                         f"got {type(value).__name__}")
    if value.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {value.shape}")
    return np.ascontiguousarray(value)


def _batch_arrays(batch: GraphBatch, n_models: int,
                  n_roles: int = len(ROLES)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(batch, GraphBatch):
        raise ValueError(f"batch must be a GraphBatch, got {type(batch).__name__}")
    model = _array("batch.model", batch.model, np.int16, 3)
    role = _array("batch.role", batch.role, np.int8, 3)
    edges = _array("batch.edges", batch.edges, np.uint8, 4)
    b, d, w = model.shape
    if not (1 <= d <= MAX_DEPTH and 1 <= w <= MAX_WIDTH):
        raise ValueError(f"batch template {d}x{w} exceeds the limits D<={MAX_DEPTH}, W<={MAX_WIDTH}")
    if role.shape != model.shape or edges.shape != (b, max(d - 1, 0), w, w):
        raise ValueError("batch arrays disagree in shape: model "
                         f"{model.shape}, role {role.shape}, edges {edges.shape}")
    if model.size:
        if model.min() < -1 or model.max() >= n_models:
            raise ValueError(f"batch.model holds an index outside the pool of {n_models} models")
        if role.min() < 0 or role.max() >= n_roles:
            raise ValueError(f"batch.role holds a role outside 0..{n_roles - 1}")
    if edges.size and edges.max() > 1:
        raise ValueError("batch.edges must hold only 0 and 1")
    return model, role, edges


def _cost_arrays(cost: "CostModel", n_models: int | None = None) -> tuple[np.ndarray, float]:
    table = _array("cost.model_costs", getattr(cost, "model_costs", None), np.float64, 2)
    if table.shape[1] != 5 or table.shape[0] < 1:
        raise ValueError(f"cost.model_costs must be [K, 5], got {table.shape}")
    if n_models is not None and table.shape[0] < n_models:
        raise ValueError(f"cost model covers {table.shape[0]} models, the graphs use {n_models}")
    if not np.isfinite(table).all() or (table < 0).any() or (table[:, 2:4] <= 0).any():
        raise ValueError("cost.model_costs must be finite, >= 0, with speeds > 0")
    base = float(cost.base_prompt_tokens)
    if not math.isfinite(base) or base < 0:
        raise ValueError(f"cost.base_prompt_tokens must be finite and >= 0, got {base}")
    return table, base


def _logit_arrays(pg: "ProbGraph") -> tuple[np.ndarray, ...]:
    d, w, k, r = pg.depth_max, pg.width_max, pg.n_models, pg.n_roles
    if not (1 <= d <= MAX_DEPTH and 1 <= w <= MAX_WIDTH):
        raise ValueError(f"probgraph template {d}x{w} exceeds D<={MAX_DEPTH}, W<={MAX_WIDTH}")
    expected = {"depth_logits": (d,), "width_logits": (d, d, w), "model_logits": (d, w, k),
                "role_logits": (d, w, r), "edge_logits": (max(d - 1, 0), w, w)}
    out = []
    for name, shape in expected.items():
        arr = _array(f"probgraph.{name}", getattr(pg, name), np.float64, len(shape))
        if arr.shape != shape:
            raise ValueError(f"probgraph.{name} must have shape {shape}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"probgraph.{name} holds NaN or inf")
        out.append(arr)
    return tuple(out)


def _check_template(pg: "ProbGraph", model: np.ndarray) -> None:
    if model.shape[1:] != (pg.depth_max, pg.width_max):
        raise ValueError(f"batch template {model.shape[1:]} differs from the probgraph's "
                         f"{(pg.depth_max, pg.width_max)}")


# ---------------------------------------------------------------- kernels
def graph_cost(batch: GraphBatch, cost: "CostModel") -> tuple[np.ndarray, np.ndarray]:
    """``(flops[B], latency_s[B])`` of each graph of ``batch``."""
    table, base = _cost_arrays(cost)
    model, role, edges = _batch_arrays(batch, table.shape[0])
    return _impl.graph_cost(model, role, edges, table, base)


def feasible(batch: GraphBatch, cost: "CostModel", budget: "Budget | float | str") -> np.ndarray:
    """``bool[B]``: which graphs cost at most ``budget`` FLOPs per query."""
    from .cost import as_flops
    limit = as_flops(budget, cost)
    table, base = _cost_arrays(cost)
    model, role, edges = _batch_arrays(batch, table.shape[0])
    return _impl.feasible(model, role, edges, table, base, limit)


def log_prob(probgraph: "ProbGraph", batch: GraphBatch) -> np.ndarray:
    """``float64[B]``: log-probability of each graph under ``probgraph`` (-inf if impossible)."""
    logits = _logit_arrays(probgraph)
    arrays = _batch_arrays(batch, probgraph.n_models, probgraph.n_roles)
    _check_template(probgraph, arrays[0])
    return _impl.log_prob(*logits, *arrays)


def grad_log_prob(probgraph: "ProbGraph", batch: GraphBatch,
                  weights: np.ndarray | Sequence[float] | None = None) -> "ProbGraphGrad":
    """``sum_b weights[b] * grad log p(graph_b)`` for every logit array (weights default to 1).

    With ``weights = rewards - baseline`` this is the REINFORCE gradient in one call.
    """
    from .probgraph import ProbGraphGrad
    logits = _logit_arrays(probgraph)
    arrays = _batch_arrays(batch, probgraph.n_models, probgraph.n_roles)
    _check_template(probgraph, arrays[0])
    if weights is None:
        w = np.ones(len(batch))
    else:
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if w.shape != (len(batch),):
            raise ValueError(f"weights must have shape ({len(batch)},), got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("weights hold NaN or inf")
    return ProbGraphGrad(*_impl.grad_log_prob(*logits, *arrays, w))


def sample_graphs(probgraph: "ProbGraph", n: int, seed: int,
                  budget: "Budget | float | str | None" = None, cost: "CostModel | None" = None,
                  *, max_draws: int | None = None) -> tuple[GraphBatch, np.ndarray, SampleStats]:
    """Draw ``n`` graphs from ``probgraph``; with a budget, from it conditioned on feasibility.

    Returns the batch, each graph's unconditioned log-probability, and acceptance statistics.
    Raises BudgetError when the budget admits no graph of the template (checked by
    `Budget.resolve` before sampling), or when fewer than ``n``
    graphs were accepted within ``max_draws`` draws (default ``max(100_000, 2000 n)``).
    """
    from .cost import as_flops
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    logits = _logit_arrays(probgraph)
    limit = math.inf
    table, base = np.zeros((probgraph.n_models, 5)), 0.0
    if budget is not None:
        if cost is None:
            raise ValueError("cost is required when a budget is given")
        limit = as_flops(budget, cost)
    if cost is not None:
        table, base = _cost_arrays(cost, probgraph.n_models)
    if max_draws is None:
        max_draws = max(100_000, DEFAULT_MAX_DRAWS_PER_SAMPLE * int(n))
    if isinstance(max_draws, bool) or not isinstance(max_draws, (int, np.integer)) or max_draws < 1:
        raise ValueError(f"max_draws must be an integer >= 1, got {max_draws!r}")
    model, role, edges, logp, n_drawn = _impl.sample_graphs(
        *logits, table, base, int(n), int(seed), float(limit), int(max_draws))
    stats = SampleStats(len(model), int(n_drawn))
    if len(model) < n:
        raise BudgetError(f"only {len(model)} of {n} sampled graphs fit the budget of "
                          f"{limit:.3g} FLOPs after {n_drawn} draws (acceptance "
                          f"{stats.acceptance_rate:.2e}); raise the budget or move the "
                          "probgraph toward cheaper graphs")
    return GraphBatch(model, role, edges), logp, stats


def vote(ids: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per question row: ``(winner[Q] int64, support[Q] float64)``.

    ``ids[Q, B]`` are interned answers, -1 = missing; ties go to the answer seen first;
    an all-missing row gives winner -1 with support 0.
    """
    ids = _array("ids", ids, np.int64, 2)
    if ids.size and ids.min() < -1:
        raise ValueError("ids must be >= -1 (-1 marks a missing answer)")
    if weights is not None:
        weights = _array("weights", weights, np.float64, 2)
        if weights.shape != ids.shape:
            raise ValueError(f"weights must have the shape of ids {ids.shape}, got {weights.shape}")
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("weights must be finite and >= 0")
    return _impl.vote(ids, weights)


def intern_answers(answers: Sequence[str | None]) -> np.ndarray:
    """Stable ``int64`` ids of canonical answer strings (same string, same id, in any process)."""
    if isinstance(answers, (str, bytes)):
        raise ValueError("answers must be a sequence of strings, not a single string")
    return _answers_impl.intern_answers(list(answers))


def extract_final_answer(text: str) -> str | None:
    """The X of the last "The answer is X" in ``text`` (case-insensitive; X a run of letters,
    digits, '+' and '-' after optional ':' and '('), upper-cased when all letters; else None."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return _answers_impl.extract_final_answer(text)


def extract_number(text: str) -> str | None:
    """The number after the last "answer is" in ``text``, else its last number, written
    canonically (ASCII digits, no thousands separators or leading zeros; "7.0" -> "7"); None
    when there is no number."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return _answers_impl.extract_number(text)


def canonical_order(batch: GraphBatch) -> np.ndarray:
    """``int32[B, D, W]``: row ``[b, l]`` lists the slots of layer l of graph b in canonical order
    (then -1). Graphs that differ only by permuting slots within layers get orders under which
    their arrays coincide, so the arrays read in that order are a canonical form.

    A slot holds a node where ``model >= 0`` and an edge is any nonzero byte; both backends read
    any values safely, so beyond the template limits only `GraphBatch` checks the input.
    """
    if not isinstance(batch, GraphBatch):
        raise ValueError(f"batch must be a GraphBatch, got {type(batch).__name__}")
    d, w = batch.template
    if not (1 <= d <= MAX_DEPTH and 1 <= w <= MAX_WIDTH):
        raise ValueError(f"batch template {d}x{w} exceeds the limits D<={MAX_DEPTH}, W<={MAX_WIDTH}")
    return _impl.canonical_order(batch.model, batch.role, batch.edges)
