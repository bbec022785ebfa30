"""Moves in graph space, shared by the searchers that explore around good graphs: the local
neighbourhood of a graph (one node, model, role or edge changed), the repair of a graph over the
budget, and structural moves (docs/method.md, "Candidates").

Structural moves are the steps of test-time scaling a practitioner would try from a graph: add a
refinement step after every branch, put fusers on top, hand every node of a role to another
model, drop the last step, add a whole branch. A move that overshoots the budget is fitted by
removing whole branches (or nodes of the widest later layer) until it fits, so "add a step"
becomes "add a step and vote over fewer branches", the trade the budget forces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..cost import CostModel
from ..graph import ASSISTANT, FUSER, CollaborationGraph, GraphBatch


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


FUSER_COUNTS = (1, 2, 3)
"""How many fusers an appended fusion layer may have (each reads every branch)."""

Fits = Callable[[list[CollaborationGraph]], np.ndarray]
"""Budget feasibility of a list of graphs (True where a graph fits)."""


def node_classes(graph: CollaborationGraph) -> np.ndarray:
    """Per slot: -1 empty, 0 first answer, 1 refinement (assistant with predecessors), 2 fusion."""
    out = np.full(graph.model.shape, -1, np.int8)
    active = graph.active
    out[active] = 1
    out[(graph.role == FUSER) & active] = 2
    out[0][active[0]] = 0  # a first-layer node answers whatever its role array says
    return out


def drop_nodes(graph: CollaborationGraph, removed: Iterable[tuple[int, int]]
               ) -> CollaborationGraph | None:
    """``graph`` without the ``removed`` nodes and every node left with no predecessor (a
    branch goes as a whole); later slots of each layer shift down. None if nothing is left."""
    d_max, w_max = graph.template
    gone = set(removed)
    keep: list[list[int]] = []
    for l, width in enumerate(graph.layer_widths + (0,) * (d_max - graph.depth)):
        kept = []
        for i in range(width):
            if (l, i) in gone:
                continue
            if l > 0:
                preds = graph.predecessors(l, i)
                if preds and all(p not in keep[l - 1] for p in preds):
                    continue
            kept.append(i)
        keep.append(kept)
    if not keep[0]:
        return None
    model = np.full((d_max, w_max), -1, np.int16)
    role = np.zeros((d_max, w_max), np.int8)
    edges = np.zeros((d_max - 1, w_max, w_max), np.uint8)
    for l, kept in enumerate(keep):
        if not kept:
            break
        model[l, : len(kept)] = graph.model[l, kept]
        role[l, : len(kept)] = graph.role[l, kept]
        if l > 0:
            edges[l - 1, : len(keep[l - 1]), : len(kept)] = graph.edges[l - 1][
                np.ix_(keep[l - 1], kept)]
    return _tidy(model, role, edges, graph)


def _tidy(model: np.ndarray, role: np.ndarray, edges: np.ndarray,
          like: CollaborationGraph, *, lone_fusers: bool = False) -> CollaborationGraph | None:
    """A graph of these arrays with roles made consistent (a node fed by one answer refines
    it, unless ``lone_fusers`` keeps the fusers of one answer; first-layer nodes answer); None
    if the arrays are not a valid graph."""
    active = model >= 0
    role = role.copy()
    role[0] = ASSISTANT
    most_inputs_refined = 0 if lone_fusers else 1
    for l in range(1, model.shape[0]):
        n_in = edges[l - 1].sum(axis=0)
        role[l][active[l] & (n_in <= most_inputs_refined)] = ASSISTANT
    role[~active] = ASSISTANT
    try:
        return CollaborationGraph(model, role, edges, like.model_names)
    except ValueError:
        return None


def append_refinement(graph: CollaborationGraph, model: int) -> CollaborationGraph | None:
    """Every node of the last layer gets its own refiner of ``model`` (branches stay parallel)."""
    d_max, _ = graph.template
    depth, width = graph.depth, graph.layer_widths[-1]
    if depth >= d_max:
        return None
    m, r, e = graph.model.copy(), graph.role.copy(), graph.edges.copy()
    m[depth, :width] = model
    r[depth, :width] = ASSISTANT
    e[depth - 1, np.arange(width), np.arange(width)] = 1
    return _tidy(m, r, e, graph)


def append_fusion(graph: CollaborationGraph, model: int, count: int) -> CollaborationGraph | None:
    """A layer of ``count`` fusers of ``model``, each reading every node of the last layer.

    Over a last layer of one node they stay fusers of that one answer (so do the graph's other
    fusers of one answer): a fuser's prompt is not a refiner's, and turning them into refiners
    would only repeat `append_refinement`, leaving a chain no way to grow by fusion
    (docs/method.md, "Candidates")."""
    d_max, w_max = graph.template
    depth, width = graph.depth, graph.layer_widths[-1]
    if depth >= d_max or count > w_max:
        return None
    m, r, e = graph.model.copy(), graph.role.copy(), graph.edges.copy()
    m[depth, :count] = model
    r[depth, :count] = FUSER
    e[depth - 1, :width, :count] = 1
    return _tidy(m, r, e, graph, lone_fusers=width == 1)


def reassign(graph: CollaborationGraph, node_class: int, old: int | None, new: int
             ) -> CollaborationGraph | None:
    """Every node of ``node_class`` (see `node_classes`) using ``old`` (any model if None)
    switches to ``new``."""
    classes = node_classes(graph)
    where = classes == node_class
    if old is not None:
        where &= graph.model == old
    if not where.any():
        return None
    m = graph.model.copy()
    m[where] = new
    return _tidy(m, graph.role, graph.edges, graph)


def add_branch(graph: CollaborationGraph) -> CollaborationGraph | None:
    """One more parallel branch: a copy of the first branch (first-layer node 0 and the nodes
    that read only it, layer by layer), where the template has room."""
    d_max, w_max = graph.template
    widths = list(graph.layer_widths)
    chain = [0]
    for l in range(1, graph.depth):
        preds = [graph.predecessors(l, i) for i in range(widths[l])]
        only = [i for i, p in enumerate(preds) if p == [chain[-1]]]
        if not only:
            break
        chain.append(only[0])
    if any(widths[l] >= w_max for l in range(len(chain))):
        return None
    m, r, e = graph.model.copy(), graph.role.copy(), graph.edges.copy()
    for l, slot in enumerate(chain):
        new = widths[l]
        m[l, new], r[l, new] = graph.model[l, slot], graph.role[l, slot]
        if l > 0:
            e[l - 1, widths[l - 1], new] = 1
    # a node past the copied chain that read every node of the chain's last layer reads the
    # new one too (fusers keep fusing every branch)
    last = len(chain) - 1
    if last + 1 < graph.depth:
        full = e[last, : widths[last], :].all(axis=0)
        e[last, widths[last], full] = 1
    return _tidy(m, r, e, graph)


def fit_to_budget(graph: CollaborationGraph, fits: Fits) -> list[CollaborationGraph]:
    """Feasible versions of ``graph``: itself if it fits; else the graphs left after removing
    whole branches (first-layer nodes, last first) or nodes of the widest later layer, one at a
    time, until they fit."""
    return [graph] if fits([graph])[0] else _shrunk_to_fit(graph, fits)


def _shrunk_to_fit(graph: CollaborationGraph, fits: Fits) -> list[CollaborationGraph]:
    """`fit_to_budget` of a graph known not to fit."""
    out: list[CollaborationGraph] = []
    for shrink_layer in (0, None):
        g: CollaborationGraph | None = graph
        while g is not None:
            widths = g.layer_widths
            if shrink_layer == 0:
                layer = 0
            else:
                later = [(w, l) for l, w in enumerate(widths) if l > 0 and w > 1]
                if not later:
                    break
                layer = max(later)[1]
            if widths[layer] <= 1:
                break
            g = drop_nodes(g, [(layer, widths[layer] - 1)])
            if g is not None and fits([g])[0]:
                out.append(g)
                break
    return out


def structural_moves(graph: CollaborationGraph, fits: Fits) -> list[CollaborationGraph]:
    """Every structural move of ``graph`` (see the module docstring), each fitted to the budget;
    duplicates (same canonical key) and ``graph`` itself removed."""
    k = len(graph.model_names)
    raw: list[CollaborationGraph | None] = []
    for m in range(k):
        raw.append(append_refinement(graph, m))
        raw += [append_fusion(graph, m, c) for c in FUSER_COUNTS]
        for cls in (0, 1, 2):
            raw.append(reassign(graph, cls, None, m))
    classes = node_classes(graph)
    for cls in (0, 1, 2):
        for old in np.unique(graph.model[classes == cls]):
            raw += [reassign(graph, cls, int(old), m) for m in range(k) if m != old]
    raw.append(add_branch(graph))
    if graph.depth > 1:
        raw.append(drop_nodes(graph, [(graph.depth - 1, i)
                                      for i in range(graph.layer_widths[-1])]))
    own = graph.canonical_key()
    out: dict[str, CollaborationGraph] = {}
    moved = [g for g in raw if g is not None]
    # one feasibility pass for all moves: only those over the budget are shrunk one by one
    for g, ok in zip(moved, fits(moved) if moved else []):
        for fitted in [g] if ok else _shrunk_to_fit(g, fits):
            key = fitted.canonical_key()
            if key != own:
                out.setdefault(key, fitted)
    return list(out.values())
