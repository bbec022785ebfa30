"""RandomSearch: graphs drawn independently from the uniform probabilistic graph within budget."""

from __future__ import annotations

from typing import Any

from ..graph import CollaborationGraph
from ..probgraph import ProbGraph
from .base import Searcher


class RandomSearch(Searcher):
    """Random search over the template, conditioned on the budget.

    Each proposal is drawn from `ProbGraph.uniform` by the budget-conditioned sampler: depth
    uniform, each layer's width uniform given the depth, each slot's model and role uniform,
    each edge present with probability 1/2 (an unfed node gets one uniform predecessor), and
    draws over the budget rejected. That is uniform over those *factors*, not over graphs:
    shallow, narrow graphs are far more likely than under a uniform law on graphs (which the
    exponentially many wide graphs would dominate). For uniform sampling over the distinct
    feasible graphs of a small template, `Exhaustive` walks them in a seeded random order.

    Graphs seen before are avoided while new ones turn up among ``oversample`` x n draws, so
    the search behaves like sampling without replacement.
    """

    name = "random"

    def __init__(self, *args: Any, oversample: int = 8, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        self.oversample = int(oversample)
        self.probgraph = ProbGraph.uniform(*self.template, self.model_names)

    async def _propose(self, n: int) -> list[CollaborationGraph]:
        return self.sample_unseen(self.probgraph, n, oversample=self.oversample)
