"""Moves in graph space: the local neighbourhood of a graph and the repair of a graph over the
budget, shared by the searchers that explore around good graphs."""

from __future__ import annotations

import numpy as np

from ..cost import CostModel
from ..graph import ASSISTANT, FUSER, CollaborationGraph, GraphBatch
from ..kernels import graph_cost


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
        flops = graph_cost(GraphBatch.from_graphs(shrunk), cost)[0]
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
