"""Exhaustive: every feasible graph of a small template, once each, in a seeded random order."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..cost import CostModel
from ..errors import ConfigError
from ..graph import ROLES, CollaborationGraph
from ..space import count_graphs, enumerate_graphs
from .base import Searcher

DEFAULT_LIMIT = 300_000
"""Templates with more graphs (as arrays, before the budget) than this are refused."""


def check_enumerable(template: tuple[int, int], n_models: int, *,
                     limit: int = DEFAULT_LIMIT) -> None:
    """ConfigError unless the template has at most ``limit`` graphs (counted, not listed)."""
    depth, width = template
    if count_graphs(depth, width, n_models, len(ROLES), cap=limit + 1) > limit:
        raise ConfigError(f"the {depth}x{width} template over {n_models} models has more than "
                          f"{limit:,} graphs, the exhaustive limit; use a smaller template "
                          "(depth, width or pool) or another searcher")


def feasible_graphs(template: tuple[int, int], cost: CostModel, budget: float, *,
                    limit: int = DEFAULT_LIMIT) -> list[CollaborationGraph]:
    """The distinct (up to isomorphism) graphs of ``template`` within ``budget`` FLOPs, in
    enumeration order; ConfigError if the template has more than ``limit`` graphs."""
    depth, width = template
    names = cost.pool.names
    check_enumerable(template, len(names), limit=limit)
    batch = enumerate_graphs(depth, width, len(names), len(ROLES), limit=limit)
    batch = batch.take(cost.feasible(batch, budget))
    distinct: dict[str, CollaborationGraph] = {}
    for g in batch.graphs(names):
        distinct.setdefault(g.canonical_key(), g)
    return list(distinct.values())


class Exhaustive(Searcher):
    """Walks every distinct feasible graph of the template once, in an order shuffled by the
    seed (so a partial walk is a uniform random sample without replacement).

    Enumeration happens at construction (`feasible_graphs`; ``limit`` bounds the template's
    size). When every graph has been proposed, ``ask`` returns an empty list.
    """

    name = "exhaustive"

    def __init__(self, *args: Any, limit: int = DEFAULT_LIMIT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        graphs = feasible_graphs(self.template, self.cost, self.budget, limit=limit)
        # Shuffled with a stream of its own so the order depends on the seed alone.
        order = np.random.default_rng([self.seed, 1]).permutation(len(graphs))
        self.graphs: list[CollaborationGraph] = [graphs[i] for i in order]
        self.position = 0

    @property
    def n_graphs(self) -> int:
        return len(self.graphs)

    async def _propose(self, n: int) -> list[CollaborationGraph]:
        out: list[CollaborationGraph] = []
        seen = self.seen_keys()
        while len(out) < n and self.position < len(self.graphs):
            g = self.graphs[self.position]
            self.position += 1
            if g.canonical_key() not in seen:
                out.append(g)
        return out

    def _extra_state(self) -> dict[str, Any]:
        return {"position": self.position, "n_graphs": len(self.graphs)}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if state["n_graphs"] != len(self.graphs):
            raise ConfigError(f"cannot resume: the checkpoint enumerated {state['n_graphs']} "
                              f"graphs, this template and budget give {len(self.graphs)}")
        self.position = int(state["position"])
