"""The cost model (FLOPs and critical-path latency of a graph) and the FLOPs budget.

Formulas, for a node running model m with predecessors P:
``prompt = base_prompt_tokens + sum(out_tokens[p] for p in P)``,
``flops = flops_per_token[m] * (prompt + out_tokens[m])`` with
``flops_per_token[m] = FLOPS_PER_PARAM_TOKEN * 1e9 * params_b[m]`` (`flops_per_token`),
``latency = overhead_s[m] + prompt / prefill_tps[m] + out_tokens[m] / decode_tps[m]``.
A graph's FLOPs are the sum over nodes; its latency the longest path of node latencies.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from . import kernels
from .constants import FLOPS_PER_PARAM_TOKEN
from .errors import BudgetError, ConfigError
from .graph import CollaborationGraph, GraphBatch
from .pool import ModelPool

__all__ = ["Budget", "CostModel", "DEFAULT_TEMPLATE_TOKENS", "FLOPS_PER_PARAM_TOKEN", "as_flops",
           "flops_per_token"]

DEFAULT_TEMPLATE_TOKENS = 48.0
"""Tokens a role template adds around the task prompt (instructions, separators)."""


def flops_per_token(params_b: float | np.ndarray) -> float | np.ndarray:
    """FLOPs per token of a model of ``params_b`` billion parameters."""
    return FLOPS_PER_PARAM_TOKEN * 1e9 * params_b


class CostModel:
    """FLOPs and latency of graphs for one model pool on one task.

    ``prompt_tokens`` is the task's mean prompt length; ``template_tokens`` what a role template
    adds. ``table`` is what the kernels read (`pytts.kernels.CostTable`).
    """

    def __init__(self, pool: ModelPool, prompt_tokens: float,
                 template_tokens: float = DEFAULT_TEMPLATE_TOKENS) -> None:
        for name, value in (("prompt_tokens", prompt_tokens), ("template_tokens", template_tokens)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        self.pool = pool
        self.prompt_tokens = float(prompt_tokens)
        self.template_tokens = float(template_tokens)
        self._table: kernels.CostTable | None = None
        self._cheapest: tuple[float, float] | None = None  # (base prompt tokens, FLOPs)
        self._budgets: dict[tuple[object, float], float] = {}  # (budget, base) -> FLOPs

    @property
    def base_prompt_tokens(self) -> float:
        """Prompt tokens of a node before its predecessors' answers are added."""
        return self.prompt_tokens + self.template_tokens

    @property
    def table(self) -> kernels.CostTable:
        """The kernels' cost table (validated once; rebuilt if the prompt lengths change)."""
        base = self.base_prompt_tokens
        if self._table is None or self._table.base_prompt_tokens != base:
            columns = self.pool.cost_table()
            columns[:, 0] = flops_per_token(columns[:, 0])  # params_b -> flops_per_token
            self._table = kernels.CostTable(columns, base)
        return self._table

    def call_flops(self, model: int | str, extra_prompt_tokens: float = 0.0) -> float:
        """FLOPs of one call of ``model`` whose prompt carries ``extra_prompt_tokens`` more."""
        spec = self.pool[model]
        tokens = self.base_prompt_tokens + extra_prompt_tokens + spec.out_tokens
        return float(flops_per_token(spec.params_b) * tokens)

    def min_graph_flops(self) -> float:
        """FLOPs of the cheapest possible graph: one call of the cheapest model."""
        base = self.base_prompt_tokens
        if self._cheapest is None or self._cheapest[0] != base:
            self._cheapest = (base, min(self.call_flops(k) for k in range(len(self.pool))))
        return self._cheapest[1]

    def budget_flops(self, budget: Budget | float | str) -> float:
        """``budget`` (any form `Budget.parse` takes) in FLOPs per query, as `Budget.resolve`
        gives it; remembered per budget, since samplers resolve the same one on every call."""
        if isinstance(budget, bool):  # True == 1 as a key, but is no budget
            return Budget.parse(budget).resolve(self)
        key = (budget, self.base_prompt_tokens)
        flops = self._budgets.get(key)
        if flops is None:
            flops = Budget.parse(budget).resolve(self)
            if len(self._budgets) >= 64:
                self._budgets.clear()
            self._budgets[key] = flops
        return flops

    def graph_cost(self, graph: CollaborationGraph) -> tuple[float, float]:
        """``(flops, latency_s)`` of one `CollaborationGraph` (through the kernels)."""
        flops, latency = kernels.graph_cost(graph.model[None], graph.role[None],
                                            graph.edges[None], self.table)
        return float(flops[0]), float(latency[0])

    def batch_cost(self, batch: GraphBatch) -> tuple[np.ndarray, np.ndarray]:
        """``(flops[B], latency_s[B])`` of each graph of a `GraphBatch`."""
        return kernels.graph_cost(batch.model, batch.role, batch.edges, self.table)

    def feasible(self, batch: GraphBatch, budget: Budget | float | str) -> np.ndarray:
        """``bool[B]``: which graphs of ``batch`` cost at most ``budget`` (FLOPs per query, or
        any form `Budget.parse` takes)."""
        return kernels.feasible(batch.model, batch.role, batch.edges, self.table,
                                as_flops(budget, self))


_MULTIPLE = re.compile(r"^\s*([0-9.eE+-]+)\s*(?:x|\*)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Budget:
    """A FLOPs budget per query.

    Either absolute (``flops``) or relative: ``calls`` calls of model ``model`` (one call of that
    model at the task's prompt length); ``resolve`` turns either into FLOPs.
    """

    flops: float | None = None
    calls: float | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if (self.flops is None) == (self.calls is None):
            raise ConfigError("a budget is either flops=... or calls=... of model=...")
        value = self.flops if self.flops is not None else self.calls
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"budget must be a finite number > 0, got {value!r}")
        if self.calls is not None and not self.model:
            raise ConfigError("a budget in calls needs the model it counts calls of")

    @classmethod
    def parse(cls, spec: str | float | int | Budget) -> Budget:
        """Accept ``2e12``, ``"2e12"``, ``"4x qwen-1.5b"`` or ``"4*qwen-1.5b"``."""
        if isinstance(spec, Budget):
            return spec
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls(flops=float(spec))
        if isinstance(spec, str):
            text = spec.strip()
            try:
                value = float(text)
            except ValueError:
                pass
            else:
                return cls(flops=value)
            match = _MULTIPLE.match(text)
            if match:
                try:
                    calls = float(match.group(1))
                except ValueError:
                    calls = float("nan")
                return cls(calls=calls, model=match.group(2))
        raise ConfigError(f"budget {spec!r} is neither a number of FLOPs (e.g. 2e12) nor "
                          "'N x MODEL' (e.g. '4x qwen-1.5b')")

    def resolve(self, cost: CostModel) -> float:
        """FLOPs per query; BudgetError if not even the cheapest graph fits."""
        if self.flops is not None:
            flops = self.flops
        else:
            assert self.calls is not None and self.model is not None
            flops = self.calls * cost.call_flops(self.model)
        cheapest = cost.min_graph_flops()
        if flops < cheapest:
            raise BudgetError(f"budget {flops:.3g} FLOPs is below the cheapest graph "
                              f"({cheapest:.3g} FLOPs: one call of the smallest model); "
                              "raise the budget")
        return flops

    def __str__(self) -> str:
        if self.flops is not None:
            return f"{self.flops:.3g} FLOPs"
        return f"{self.calls:g}x {self.model}"


def as_flops(budget: Budget | float | str | None, cost: CostModel | None) -> float:
    """The budget in FLOPs (inf for None); ``cost`` is needed unless it is plain FLOPs."""
    if budget is None:
        return math.inf
    if cost is not None:
        return cost.budget_flops(budget)
    parsed = Budget.parse(budget)
    if parsed.flops is None:
        raise ConfigError("a budget in calls of a model needs a cost model")
    return parsed.flops


