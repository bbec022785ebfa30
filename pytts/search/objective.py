"""What a search maximises (`Objective` and its kinds) and the accuracy/cost Pareto front.

`dominates` is the one definition of Pareto dominance: the front kept during a search and the
trade-off plots (`pytts.plots`) both use it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..errors import ConfigError
from ..evaluate import EvalResult
from ..graph import CollaborationGraph
from .history import TrialRecord


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


# ===================================================================== Pareto front
Number = TypeVar("Number", float, np.ndarray)


def dominates(accuracy_a: Number, cost_a: Number, accuracy_b: Number, cost_b: Number) -> Number:
    """Whether a point at (``accuracy_a``, ``cost_a``) dominates one at (``accuracy_b``,
    ``cost_b``): at least as accurate and at most as costly, and strictly better in one.

    Works elementwise on NumPy arrays too (it uses ``&``/``|``, not ``and``/``or``).
    """
    return ((accuracy_a >= accuracy_b) & (cost_a <= cost_b)
            & ((accuracy_a > accuracy_b) | (cost_a < cost_b)))


@dataclass(frozen=True)
class ParetoPoint:
    """A graph's position in (accuracy up, cost down) space."""

    key: str
    accuracy: float
    cost: float
    graph: CollaborationGraph = field(compare=False, hash=False, repr=False)


class ParetoFront:
    """The non-dominated graphs for accuracy (maximised) against one cost (minimised).

    ``cost`` names the `EvalResult` field used: ``"latency"`` (``mean_latency_s``) or
    ``"flops"`` (``mean_flops``). Dominance is `dominates`.
    """

    COSTS = {"latency": "mean_latency_s", "flops": "mean_flops"}

    def __init__(self, cost: str) -> None:
        if cost not in self.COSTS:
            raise ConfigError(f"Pareto cost must be one of {sorted(self.COSTS)}, got {cost!r}")
        self.cost = cost
        self._points: dict[str, ParetoPoint] = {}

    def add(self, key: str, graph: CollaborationGraph, result: EvalResult) -> bool:
        """Offer one evaluated graph; True if it joined the front (dominated points leave)."""
        point = ParetoPoint(key, float(result.accuracy),
                            float(getattr(result, self.COSTS[self.cost])), graph)
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
        return bool(dominates(a.accuracy, a.cost, b.accuracy, b.cost))

    def points(self) -> list[ParetoPoint]:
        """The front, cheapest first."""
        return sorted(self._points.values(), key=lambda p: (p.cost, -p.accuracy))

    def __len__(self) -> int:
        return len(self._points)

    @classmethod
    def from_history(cls, cost: str, records: Iterable[TrialRecord]) -> ParetoFront:
        """The front of the told graphs of a search history."""
        front = cls(cost)
        for r in records:
            front.add(r.key, r.graph, r.result)
        return front
