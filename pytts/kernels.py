"""The kernels' Python face: plain arrays in and out, checked once against one table of rules,
then run by the compiled backend or its NumPy twin.

``BACKEND`` is ``"core"`` when the C++ extension ``pytts._core`` is importable and
``PYTTS_FORCE_REFERENCE`` is unset, else ``"reference"`` (``pytts._reference``). Both backends
export the same functions and classes, and give the same results: for a seed, the same graphs,
bit for bit. This module knows nothing of the graph model above it: `ProbGraph` and `CostModel`
turn their objects into `Logits`, `CostTable` and arrays, and call down into it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _reference
from .constants import COST_COLUMNS, MAX_DEPTH, MAX_MODELS, MAX_ROLES, MAX_WIDTH
from .errors import BudgetError

__all__ = ["BACKEND", "DEFAULT_MAX_DRAWS_PER_SAMPLE", "LOGIT_NAMES", "CostTable", "Logits",
           "SampleStats", "feasible", "grad_log_prob", "graph_cost", "intern_answers",
           "log_prob", "sample_graphs", "vote"]

FloatArray = npt.NDArray[np.float64]
GraphArrays = tuple[npt.NDArray[np.int16], npt.NDArray[np.int8], npt.NDArray[np.uint8]]


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

LOGIT_NAMES = ("depth_logits", "width_logits", "model_logits", "role_logits", "edge_logits")


@dataclass(frozen=True)
class SampleStats:
    """How budget-conditioned sampling went: graphs kept, graphs drawn, their ratio."""

    n_accepted: int
    n_drawn: int

    @property
    def acceptance_rate(self) -> float:
        return self.n_accepted / self.n_drawn if self.n_drawn else 1.0


# ---------------------------------------------------------------- the rules
@dataclass(frozen=True)
class _Rule:
    """What one array argument must be: dtype, shape in symbols, and which values it may hold."""

    arg: str                      # the argument's name, as messages show it
    dtype: type[np.generic]
    dims: tuple[str, ...]         # "D-1" is one less than D; digits are literal sizes
    values: str | None            # a key of _VALUES, or None (any value of the dtype)


# Keyed by argument name, except where one name means different arrays in different kernels.
_RULES: dict[str, _Rule] = {
    "depth_logits": _Rule("depth_logits", np.float64, ("D",), "finite"),
    "width_logits": _Rule("width_logits", np.float64, ("D", "D", "W"), "finite"),
    "model_logits": _Rule("model_logits", np.float64, ("D", "W", "K"), "finite"),
    "role_logits": _Rule("role_logits", np.float64, ("D", "W", "R"), "finite"),
    "edge_logits": _Rule("edge_logits", np.float64, ("D-1", "W", "W"), "finite"),
    "model": _Rule("model", np.int16, ("B", "D", "W"), "model index"),
    "role": _Rule("role", np.int8, ("B", "D", "W"), "role index"),
    "edges": _Rule("edges", np.uint8, ("B", "D-1", "W", "W"), "bit"),
    "model_costs": _Rule("model_costs", np.float64, ("K", str(len(COST_COLUMNS))), "costs"),
    "grad weights": _Rule("weights", np.float64, ("B",), "finite"),
    "ids": _Rule("ids", np.int64, ("Q", "N"), "answer id"),
    "vote weights": _Rule("weights", np.float64, ("Q", "N"), "weight"),
}

# Symbols with limits: the template limits, and what int16 models / int8 roles can index.
_LIMITS = {"D": ("depth", MAX_DEPTH), "W": ("width", MAX_WIDTH),
           "K": ("number of models", MAX_MODELS), "R": ("number of roles", MAX_ROLES)}


def _bad_costs(a: FloatArray, dims: dict[str, int]) -> npt.NDArray[np.bool_]:
    speed = np.zeros(a.shape[-1], bool)
    speed[[COST_COLUMNS.index("prefill_tps"), COST_COLUMNS.index("decode_tps")]] = True
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(a) | (a < 0) | (speed & (a <= 0))


# values rule -> (mask of offending entries, what the values must be)
_VALUES: dict[str, tuple[Callable[[Any, dict[str, int]], npt.NDArray[np.bool_]], str]] = {
    "finite": (lambda a, dims: ~np.isfinite(a), "must be finite"),
    "model index": (lambda a, dims: (a < -1) | (a >= dims["K"]),
                    "must be a model index in [0, K) or -1 for an empty slot (K = {K})"),
    "role index": (lambda a, dims: (a < 0) | (a >= dims["R"]),
                   "must be a role in [0, R) (R = {R})"),
    "bit": (lambda a, dims: a > 1, "must be 0 or 1"),
    "costs": (_bad_costs, "must be finite and >= 0, with prefill_tps and decode_tps > 0 "
                          f"(columns: {', '.join(COST_COLUMNS)})"),
    "answer id": (lambda a, dims: a < -1, "must be >= 0, or -1 for a missing answer"),
    "weight": (lambda a, dims: ~np.isfinite(a) | (a < 0), "must be finite and >= 0"),
}


def _size(symbol: str, dims: dict[str, int]) -> int | None:
    if symbol.isdigit():
        return int(symbol)
    if symbol.endswith("-1"):
        base = dims.get(symbol[:-2])
        return None if base is None else max(base - 1, 0)
    return dims.get(symbol)


def _symbols(dims: tuple[str, ...]) -> str:
    """A shape in symbols, written like a tuple: ``(B,)``, ``(B, D, W)``."""
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _check(args: Iterable[tuple[str, object]], dims: dict[str, int] | None = None
           ) -> tuple[list[np.ndarray], dict[str, int]]:
    """Check each ``(rule key, value)`` against ``_RULES``; return C-contiguous arrays and the
    sizes their symbols took. The first array that shows a symbol fixes it; later arrays must
    agree. Every failure is a ValueError naming the argument (and, for values, the position)."""
    dims = dict(dims or {})
    out: list[np.ndarray] = []
    for key, value in args:
        rule = _RULES[key]
        name, want = rule.arg, np.dtype(rule.dtype)
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{name} must be a numpy array of {want.name}, "
                             f"got {type(value).__name__}")
        if value.dtype != want:
            raise ValueError(f"{name} must have dtype {want.name}, got {value.dtype}")
        if value.ndim != len(rule.dims):
            raise ValueError(f"{name} must be {len(rule.dims)}-D {_symbols(rule.dims)}, "
                             f"got shape {value.shape}")
        for axis, symbol in enumerate(rule.dims):
            if _size(symbol, dims) is None:
                size = value.shape[axis]
                if symbol.endswith("-1"):  # fixes the symbol it is one less than
                    symbol, size = symbol[:-2], size + 1
                if symbol in _LIMITS:
                    what, limit = _LIMITS[symbol]
                    if not 1 <= size <= limit:
                        raise ValueError(f"{name}: {what} {symbol} ({name}.shape[{axis}]) = "
                                         f"{size} is outside [1, {limit}]")
                dims[symbol] = size
        expected = tuple(_size(s, dims) for s in rule.dims)
        if value.shape != expected:
            raise ValueError(f"{name} must have shape {_symbols(rule.dims)} = {expected}, "
                             f"got {value.shape}")
        arr = np.ascontiguousarray(value)
        if rule.values is not None and arr.size:
            bad_mask, must = _VALUES[rule.values]
            bad = bad_mask(arr, dims)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{name}[{', '.join(map(str, where))}] = {arr[where]} is "
                                 f"invalid: {name} {must.format(**dims)}")
        out.append(arr)
    return out, dims


def _integer(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high)``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < low or (high is not None and value >= high):
        span = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high:#x})"
        raise ValueError(f"{name} must be {span}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------- validated inputs
class CostTable:
    """The per-model cost coefficients the kernels read: ``model_costs[K, 5]`` with the columns
    of `pytts.constants.COST_COLUMNS`, and the prompt tokens every node reads before its
    predecessors' answers. Validated when made; the array is a read-only copy."""

    __slots__ = ("model_costs", "base_prompt_tokens")

    def __init__(self, model_costs: FloatArray, base_prompt_tokens: float) -> None:
        (table,), _ = _check([("model_costs", model_costs)])
        base = float(base_prompt_tokens)
        if not (math.isfinite(base) and base >= 0):
            raise ValueError("base_prompt_tokens must be finite and >= 0, got "
                             f"{base_prompt_tokens!r}")
        table = table.copy()
        table.setflags(write=False)
        self.model_costs: FloatArray = table
        self.base_prompt_tokens = base

    @property
    def n_models(self) -> int:
        return int(self.model_costs.shape[0])


class Logits:
    """The five logit arrays of a distribution over graphs on a ``D x W`` template (shapes and
    sampling semantics in `pytts._reference`), validated once and kept as read-only copies.

    The sampler's tables (alias tables and the rest) are built on first use and kept, so drawing
    again from the same logits costs only the draws.
    """

    __slots__ = ("arrays", "dims", "_bytes", "_sampler")

    def __init__(self, depth_logits: FloatArray, width_logits: FloatArray,
                 model_logits: FloatArray, role_logits: FloatArray,
                 edge_logits: FloatArray) -> None:
        values = (depth_logits, width_logits, model_logits, role_logits, edge_logits)
        checked, self.dims = _check(zip(LOGIT_NAMES, values))
        # The bytes are both the snapshot `holds` compares with and the arrays' (read-only)
        # memory.
        self._bytes = tuple(arr.tobytes() for arr in checked)
        self.arrays: tuple[FloatArray, ...] = tuple(
            np.frombuffer(b, np.float64).reshape(arr.shape) for b, arr in zip(self._bytes, checked))
        self._sampler: tuple[ModuleType, Any] | None = None

    def holds(self, arrays: Sequence[object]) -> bool:
        """Whether ``arrays`` (five of them) hold exactly these logits, bit for bit."""
        return len(arrays) == len(self.arrays) and all(
            isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == mine.shape
            and a.tobytes() == b for a, mine, b in zip(arrays, self.arrays, self._bytes))

    def sampler(self) -> Any:
        """The backend's sampler for these logits (built once per backend)."""
        if self._sampler is None or self._sampler[0] is not _impl:
            self._sampler = (_impl, _impl.Sampler(*self.arrays))
        return self._sampler[1]


def _graph_arrays(model: object, role: object, edges: object,
                  dims: dict[str, int]) -> tuple[GraphArrays, dict[str, int]]:
    (m, r, e), dims = _check([("model", model), ("role", role), ("edges", edges)], dims)
    return (m, r, e), dims


# ---------------------------------------------------------------- kernels
def graph_cost(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
               edges: npt.NDArray[np.uint8], costs: CostTable) -> tuple[FloatArray, FloatArray]:
    """``(flops[B], latency_s[B])`` of each graph (role values are not read)."""
    (m, r, e), _ = _graph_arrays(model, role, edges, {"K": costs.n_models, "R": MAX_ROLES})
    flops, latency = _impl.graph_cost(m, r, e, costs.model_costs, costs.base_prompt_tokens)
    return flops, latency


def feasible(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
             edges: npt.NDArray[np.uint8], costs: CostTable,
             budget: float) -> npt.NDArray[np.bool_]:
    """``bool[B]``: which graphs cost at most ``budget`` FLOPs per query."""
    limit = _budget(budget)
    (m, r, e), _ = _graph_arrays(model, role, edges, {"K": costs.n_models, "R": MAX_ROLES})
    out: npt.NDArray[np.bool_] = _impl.feasible(m, r, e, costs.model_costs,
                                                costs.base_prompt_tokens, limit)
    return out


def log_prob(logits: Logits, model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
             edges: npt.NDArray[np.uint8]) -> FloatArray:
    """``float64[B]``: log-probability of each graph under ``logits`` (-inf if impossible)."""
    (m, r, e), _ = _graph_arrays(model, role, edges, _pinned(logits))
    out: FloatArray = _impl.log_prob(*logits.arrays, m, r, e)
    return out


def grad_log_prob(logits: Logits, model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
                  edges: npt.NDArray[np.uint8],
                  weights: npt.ArrayLike | None = None) -> tuple[FloatArray, ...]:
    """``sum_b weights[b] * grad log p(graph_b)``, one array per logit array (weights default
    to 1). With ``weights = rewards - baseline`` this is the REINFORCE gradient in one call."""
    (m, r, e), dims = _graph_arrays(model, role, edges, _pinned(logits))
    if weights is None:
        w = np.ones(dims["B"])
    else:
        w = np.asarray(weights, dtype=np.float64) if not isinstance(weights, np.ndarray) \
            else weights.astype(np.float64, copy=False)
        (w,), _ = _check([("grad weights", w)], dims)
    grads: tuple[FloatArray, ...] = tuple(_impl.grad_log_prob(*logits.arrays, m, r, e, w))
    return grads


def sample_graphs(logits: Logits, n: int, seed: int, costs: CostTable | None = None,
                  budget: float = math.inf, *, max_draws: int | None = None
                  ) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int8], npt.NDArray[np.uint8],
                             FloatArray, SampleStats]:
    """Draw ``n`` graphs from ``logits``; with a finite ``budget`` (FLOPs, which needs
    ``costs``), from the distribution conditioned on ``flops <= budget``.

    Returns ``(model, role, edges, logp, stats)``: the graphs in draw order, each graph's
    unconditioned log-probability, and acceptance statistics. Raises BudgetError when fewer
    than ``n`` graphs were accepted within ``max_draws`` draws (default ``max(100_000, 2000 n)``).
    """
    n = _integer("n", n, 0)
    seed = _integer("seed", seed, 0, 2**64)
    limit = _budget(budget)
    if costs is None:
        if limit != math.inf:
            raise ValueError("costs (a CostTable) is required when the budget is finite")
        table, base = None, 0.0
    else:
        if costs.n_models < logits.dims["K"]:
            raise ValueError(f"costs cover {costs.n_models} models, the logits {logits.dims['K']}")
        table, base = costs.model_costs, costs.base_prompt_tokens
    draws = max(100_000, DEFAULT_MAX_DRAWS_PER_SAMPLE * n) if max_draws is None \
        else _integer("max_draws", max_draws, 1)
    model, role, edges, logp, n_drawn = logits.sampler().sample(table, base, n, seed, limit,
                                                                draws)
    stats = SampleStats(len(model), int(n_drawn))
    if len(model) < n:
        raise BudgetError(f"only {len(model)} of {n} sampled graphs fit the budget of "
                          f"{limit:.3g} FLOPs after {n_drawn} draws (acceptance "
                          f"{stats.acceptance_rate:.2e}); raise the budget or move the "
                          "distribution toward cheaper graphs")
    return model, role, edges, logp, stats


def vote(ids: npt.NDArray[np.int64], weights: FloatArray | None = None
         ) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Per question row: ``(winner[Q] int64, support[Q] float64)``.

    ``ids[Q, N]`` are interned answers, -1 = missing; ties go to the answer seen first;
    an all-missing row gives winner -1 with support 0.
    """
    args: list[tuple[str, object]] = [("ids", ids)]
    if weights is not None:
        args.append(("vote weights", weights))
    arrays, _ = _check(args)
    winner, support = _impl.vote(arrays[0], arrays[1] if weights is not None else None)
    return winner, support


def intern_answers(answers: Sequence[str | None]) -> npt.NDArray[np.int64]:
    """Stable ``int64`` ids of canonical answer strings (same string, same id, in any process)."""
    if isinstance(answers, (str, bytes)):
        raise ValueError("answers must be a sequence of strings, not a single string")
    ids: npt.NDArray[np.int64] = _answers_impl.intern_answers(list(answers))
    return ids


def extract_final_answer(text: str) -> str | None:
    """The X of the last "The answer is X" in ``text`` (case-insensitive; X a run of letters,
    digits, '+' and '-' after optional ':' and '('), upper-cased when all letters; else None."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    found: str | None = _answers_impl.extract_final_answer(text)
    return found


def extract_number(text: str) -> str | None:
    """The number after the last "answer is" in ``text``, else its last number, written
    canonically (ASCII digits, no thousands separators or leading zeros; "7.0" -> "7"); None
    when there is no number."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    found: str | None = _answers_impl.extract_number(text)
    return found


def canonical_order(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
                    edges: npt.NDArray[np.uint8], *, trusted: bool = False
                    ) -> npt.NDArray[np.int32]:
    """``int32[B, D, W]``: row ``[b, l]`` lists the slots of layer l of graph b in canonical order
    (then -1). Graphs that differ only by permuting slots within layers get orders under which
    their arrays coincide, so the arrays read in that order are a canonical form.

    A slot holds a node where ``model >= 0`` and an edge is any nonzero byte; both backends read
    any values safely, so only shapes, dtypes and the template limits are checked, and not even
    those when ``trusted`` (arrays of a `CollaborationGraph`, checked when it was built; a
    search computes thousands of keys, and the checks would cost more than the kernel).
    """
    if trusted:
        return _impl.canonical_order(model, role, edges)  # type: ignore[no-any-return]
    # model and role values are labels here: any id an int16/int8 holds is fine
    (m, r, e), _ = _graph_arrays(model, role, edges, {"K": 1 << 15, "R": 1 << 7})
    order: npt.NDArray[np.int32] = _impl.canonical_order(m, r, e)
    return order


def _pinned(logits: Logits) -> dict[str, int]:
    """The symbols the logits fix (D, W, K, R), which graph arrays must agree with."""
    if not isinstance(logits, Logits):
        raise ValueError(f"logits must be a pytts.kernels.Logits, got {type(logits).__name__}")
    return dict(logits.dims)


def _budget(budget: object) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.floating, np.integer)) \
            or math.isnan(budget):
        raise ValueError(f"budget must be a number of FLOPs (inf for none), got {budget!r}")
    return float(budget)
