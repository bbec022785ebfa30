"""Reinforce: GPTSwarm-style policy gradient on the probabilistic graph's logits."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..evaluate import EvalResult
from ..graph import CollaborationGraph
from ..probgraph import ProbGraph
from .base import Searcher
from .history import TrialRecord


class Reinforce(Searcher):
    """REINFORCE on a `ProbGraph` (GPTSwarm, extended to models, roles, depth and width).

    Proposals are plain samples of the current distribution within the budget (repeats
    included: a repeat costs no evaluation, its cached reward still counts as a sample).
    Every ``batch_size`` tells, the logits move by ``lr`` along
    ``mean_b (r_b - baseline) / scale * grad log p(g_b)``, computed by one batched
    ``grad_log_prob`` call. ``baseline`` is an exponential moving average of batch mean rewards
    (decay ``baseline_decay``), started at the first batch's mean; ``scale`` is the batch's
    reward standard deviation, floored at ``min_scale`` - accuracies differ by a few hundredths,
    so without it the right ``lr`` would depend on the task's spread of rewards.

    The gradient is that of the unconditioned log-probability; the budget-conditioned one
    differs by ``grad log Z``, whose contribution ``sum_b (r_b - baseline) grad log Z`` vanishes
    in expectation when the baseline equals the mean reward, and stays small while the moving
    average tracks it.
    """

    name = "reinforce"

    def __init__(self, *args: Any, lr: float = 0.3, batch_size: int = 4,
                 baseline_decay: float = 0.7, min_scale: float = 0.02,
                 probgraph: ProbGraph | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not lr > 0 or batch_size < 1 or not 0 <= baseline_decay < 1 or not min_scale > 0:
            raise ValueError("need lr > 0, batch_size >= 1, 0 <= baseline_decay < 1 and "
                             "min_scale > 0")
        self.lr = float(lr)
        self.min_scale = float(min_scale)
        self.batch_size = int(batch_size)
        self.baseline_decay = float(baseline_decay)
        self.probgraph = probgraph.copy() if probgraph is not None else \
            ProbGraph.uniform(*self.template, self.model_names)
        self.baseline: float | None = None
        self.n_updates = 0
        self._batch: list[tuple[CollaborationGraph, float]] = []

    async def _propose(self, n: int) -> list[CollaborationGraph]:
        return self.sample(self.probgraph, n)

    async def _observe(self, graph: CollaborationGraph, result: EvalResult,
                       record: TrialRecord) -> None:
        self._batch.append((record.graph, record.value))
        if len(self._batch) >= self.batch_size:
            graphs = [g for g, _ in self._batch]
            rewards = np.array([v for _, v in self._batch])
            self._batch = []
            self.step(graphs, rewards)

    def step(self, graphs: list[CollaborationGraph], rewards: np.ndarray) -> None:
        """One policy-gradient step on a batch of sampled graphs and their rewards."""
        mean = float(rewards.mean())
        baseline = mean if self.baseline is None else self.baseline
        scale = max(float(rewards.std()), self.min_scale)
        grad = self.probgraph.grad_log_prob(graphs, (rewards - baseline) / (scale * len(graphs)))
        self.probgraph = self.probgraph.step(grad, self.lr)
        self.baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * mean
        self.n_updates += 1

    def _extra_state(self) -> dict[str, Any]:
        return {"probgraph": self.probgraph.state_dict(), "baseline": self.baseline,
                "n_updates": self.n_updates,
                "batch": [{"graph": g.to_dict(), "value": v} for g, v in self._batch]}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.probgraph = ProbGraph.from_state_dict(state["probgraph"])
        self.baseline = state["baseline"]
        self.n_updates = int(state["n_updates"])
        self._batch = [(self.graph_from_dict(b["graph"]), float(b["value"]))
                       for b in state["batch"]]
