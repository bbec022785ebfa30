"""Collaboration graphs: one graph (`CollaborationGraph`) and a batch of them (`GraphBatch`).

A graph lives on a template of ``D`` layers x ``W`` slots and is three arrays (docs/design.md,
"The graph model"): ``model[D, W]`` (pool index, -1 = empty slot), ``role[D, W]`` and
``edges[D-1, W, W]`` (``edges[l, i, j] = 1`` carries node (l, i)'s answer to node (l+1, j)).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import kernels
from .constants import MAX_DEPTH, MAX_WIDTH
from .errors import ConfigError

ROLES: tuple[str, ...] = ("assistant", "fuser")
"""Role registry: index 0 answers (no predecessor) or refines (one), index 1 fuses several."""

ASSISTANT = 0
FUSER = 1


def check_template(depth: int, width: int) -> None:
    """Raise ValueError unless ``depth`` x ``width`` is within the hard template limits."""
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be in 1..{MAX_DEPTH}, got {depth}")
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"width must be in 1..{MAX_WIDTH}, got {width}")


@dataclass(frozen=True)
class Node:
    """One LLM call of a graph: where it sits, which model answers, in which role."""

    layer: int
    slot: int
    model: int
    model_name: str
    role: str


class CollaborationGraph:
    """One TTS strategy: a layered DAG of LLM calls on a ``D x W`` template.

    ``model_names`` maps the pool indices in ``model`` to names (used by ``to_json`` and
    ``nodes()``). The arrays are copied, made C-contiguous and read-only; a graph is immutable
    and hashable by its canonical key.
    """

    __slots__ = ("model", "role", "edges", "model_names", "_key", "_order", "_vote_order",
                 "_preds", "_counts")

    def __init__(self, model: np.ndarray, role: np.ndarray, edges: np.ndarray,
                 model_names: Sequence[str]) -> None:
        model = np.array(model, dtype=np.int16, order="C")
        role = np.array(role, dtype=np.int8, order="C")
        edges = np.array(edges, dtype=np.uint8, order="C")
        if model.ndim != 2:
            raise ValueError(f"model must be 2-D [D, W], got shape {model.shape}")
        depth, width = model.shape
        check_template(depth, width)
        if role.shape != model.shape:
            raise ValueError(f"role must have shape {model.shape}, got {role.shape}")
        if edges.shape != (depth - 1, width, width):
            raise ValueError(f"edges must have shape {(depth - 1, width, width)}, "
                             f"got {edges.shape}")
        self._adopt(model, role, edges, model_names)
        self.validate()

    @classmethod
    def _from_sample(cls, model: np.ndarray, role: np.ndarray, edges: np.ndarray,
                     model_names: Sequence[str]) -> CollaborationGraph:
        """A graph from arrays of the right dtypes known to be well-formed (a row the sampler
        produced): copied, but not checked again."""
        graph = cls.__new__(cls)
        graph._adopt(model.copy(), role.copy(), edges.copy(), model_names)
        return graph

    def _adopt(self, model: np.ndarray, role: np.ndarray, edges: np.ndarray,
               model_names: Sequence[str]) -> None:
        for arr in (model, role, edges):
            arr.setflags(write=False)
        self.model, self.role, self.edges = model, role, edges
        self.model_names = tuple(model_names)
        self._key: str | None = None
        self._order: np.ndarray | None = None
        self._vote_order: list[tuple[int, int]] | None = None
        self._preds: dict[tuple[int, int], list[int]] | None = None
        self._counts: list[int] | None = None

    # ----------------------------------------------------------------- structure
    @property
    def template(self) -> tuple[int, int]:
        """``(D, W)`` of the template the graph lives on."""
        return self.model.shape  # type: ignore[return-value]

    @property
    def active(self) -> np.ndarray:
        """``bool[D, W]``: which slots hold a node."""
        return self.model >= 0

    def _layer_counts(self) -> list[int]:
        # searches ask a graph's shape thousands of times; the arrays are read-only
        if self._counts is None:
            self._counts = (self.model >= 0).sum(axis=1).tolist()
        return self._counts

    @property
    def layer_widths(self) -> tuple[int, ...]:
        """Number of nodes in each non-empty layer, first to last."""
        return tuple(self._layer_counts()[: self.depth])

    @property
    def depth(self) -> int:
        """Number of layers up to the last one that holds a node."""
        counts = self._layer_counts()
        return max((l + 1 for l, c in enumerate(counts) if c), default=0)

    @property
    def width(self) -> int:
        """The largest number of nodes in one layer."""
        return max(self._layer_counts())

    @property
    def n_nodes(self) -> int:
        return sum(self._layer_counts())

    @property
    def vote_model(self) -> int | None:
        """The model of a one-layer graph whose nodes all use one model (a single call or a
        self-consistency vote of that model: a "single-model graph", what a pilot is); None
        for any other graph."""
        if self.depth != 1:
            return None
        used = np.unique(self.model[0][self.active[0]])
        return int(used[0]) if used.size == 1 else None

    def nodes(self) -> list[Node]:
        """Every node, layer by layer, slot by slot."""
        return [Node(int(l), int(i), int(self.model[l, i]), self.model_names[self.model[l, i]],
                     ROLES[self.role[l, i]])
                for l, i in zip(*np.nonzero(self.active))]

    def edges_list(self) -> list[tuple[int, int, int]]:
        """Every edge as ``(layer, from_slot, to_slot)`` between layer and layer + 1."""
        return [(int(l), int(i), int(j)) for l, i, j in zip(*np.nonzero(self.edges))]

    def predecessors(self, layer: int, slot: int) -> list[int]:
        """Slots of layer - 1 whose answers node (layer, slot) reads."""
        if self._preds is None:  # the graph is immutable: read the edges once
            self._preds = {
                (int(l), int(j)): ([int(i) for i in np.flatnonzero(self.edges[l - 1, :, j])]
                                   if l > 0 else [])
                for l, j in zip(*np.nonzero(self.active))}
        return list(self._preds.get((layer, slot), []))

    def sinks(self) -> list[tuple[int, int]]:
        """Nodes with no successor: their answers are voted into the graph's answer."""
        has_succ = np.zeros_like(self.active)
        if self.edges.shape[0]:
            has_succ[:-1] = self.edges.any(axis=2)
        return [(int(l), int(i)) for l, i in zip(*np.nonzero(self.active & ~has_succ))]

    def vote_order(self) -> list[tuple[int, int]]:
        """The sinks in the order the vote reads them (ties go to the first answer seen).

        Layer by layer, in the canonical slot order of `canonical_key`, so graphs that differ only
        by permuting slots within a layer vote their corresponding sinks in the same order:
        `canonical_key` can then stand for the graph's behaviour, not just its shape.
        """
        if self._vote_order is None:
            order = self.canonical_order()
            rank = {(l, int(i)): k for l in range(order.shape[0])
                    for k, i in enumerate(order[l]) if i >= 0}
            self._vote_order = sorted(self.sinks(), key=lambda s: (s[0], rank[s]))
        return list(self._vote_order)

    def validate(self) -> None:
        """Raise ValueError (saying where) unless this is a well-formed collaboration graph.

        Well-formed: at least one node; model indices name models of ``model_names``; roles are
        registered; empty slots have no role and no edge; a layer's nodes fill a prefix of its
        slots and no layer is empty below the last one; first-layer nodes are assistants; every
        later node has a predecessor.
        """
        k = len(self.model_names)
        if self.model.min() < -1 or self.model.max() >= k:
            bad = self.model[(self.model < -1) | (self.model >= k)][0]
            raise ValueError(f"model index {bad} is outside the pool of {k} models")
        if self.role.min() < 0 or self.role.max() >= len(ROLES):
            raise ValueError(f"role must be in 0..{len(ROLES) - 1} ({', '.join(ROLES)})")
        if self.edges.size and self.edges.max() > 1:
            raise ValueError("edges must be 0 or 1")
        active = self.active
        if not active.any():
            raise ValueError("graph has no node")
        if (self.role[~active] != 0).any():
            raise ValueError("an empty slot has a role")
        depth = self.depth
        for l in range(depth):
            w = int(active[l].sum())
            if w == 0:
                raise ValueError(f"layer {l} is empty but a later layer has nodes")
            if not active[l, :w].all():
                raise ValueError(f"layer {l}: nodes must fill slots 0..{w - 1} (a prefix)")
        if (self.role[0][active[0]] != ASSISTANT).any():
            raise ValueError("first-layer nodes have no predecessor and must be assistants")
        for l in range(self.edges.shape[0]):
            allowed = np.outer(active[l], active[l + 1])
            if (self.edges[l].astype(bool) & ~allowed).any():
                raise ValueError(f"an edge between layers {l} and {l + 1} touches an empty slot")
            missing = active[l + 1] & ~self.edges[l].any(axis=0)
            if missing.any():
                raise ValueError(f"node ({l + 1}, {int(np.flatnonzero(missing)[0])}) has no "
                                 "predecessor")

    # ----------------------------------------------------------------- identity
    def canonical_key(self) -> str:
        """A string equal for two graphs exactly when they differ only by permuting slots within
        layers (the template's size and the pool's names are not part of it).

        It is the graph read in `canonical_order`: ``depth|labels/edge bits/labels...``.
        """
        if self._key is None:
            self._key = _encode(self, self.canonical_order())
        return self._key

    def canonical_order(self) -> np.ndarray:
        """``int32[D, W]``: row l lists layer l's slots in canonical order (then -1).

        Two graphs equal up to slot permutations within layers have equal arrays once read in
        their canonical orders. Interchangeable slots (same model, role, predecessors and
        successors) are merged first, colour refinement across layers orders the rest, and a
        pruned search breaks the ties refinement leaves (`pytts.kernels.canonical_order`).
        """
        if self._order is None:
            order = kernels.canonical_order(self.model[None], self.role[None],
                                            self.edges[None], trusted=True)[0]
            order.setflags(write=False)
            self._order = order
        return self._order

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, CollaborationGraph)
                and self.canonical_key() == other.canonical_key())

    def __hash__(self) -> int:
        return hash(self.canonical_key())

    def __repr__(self) -> str:
        return (f"CollaborationGraph(depth={self.depth}, widths={self.layer_widths}, "
                f"nodes={self.n_nodes})")

    def describe(self) -> str:
        """One line per layer: ``L0: 3B/assistant, 3B/assistant | L1: 8B/fuser <- 0,1``."""
        lines = []
        for l in range(self.depth):
            cells = []
            for i in np.flatnonzero(self.active[l]):
                cell = f"{self.model_names[self.model[l, i]]}/{ROLES[self.role[l, i]]}"
                preds = self.predecessors(l, int(i))
                if preds:
                    cell += " <- " + ",".join(map(str, preds))
                cells.append(cell)
            lines.append(f"L{l}: " + "; ".join(cells))
        return "\n".join(lines)

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        """A JSON-ready description by model *name* (pool order may change between runs)."""
        d, w = self.template
        return {
            "template": {"depth": d, "width": w},
            "nodes": [{"layer": n.layer, "slot": n.slot, "model": n.model_name, "role": n.role}
                      for n in self.nodes()],
            "edges": [list(e) for e in self.edges_list()],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict, model_names: Sequence[str]) -> CollaborationGraph:
        """Build a graph from ``to_dict()`` output; models are looked up in ``model_names``."""
        try:
            depth = int(data["template"]["depth"])
            width = int(data["template"]["width"])
            nodes = data["nodes"]
            edge_list = data.get("edges", [])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"graph JSON needs template.depth, template.width and nodes: "
                              f"{exc!r}") from None
        check_template(depth, width)
        index = {name: k for k, name in enumerate(model_names)}
        model = np.full((depth, width), -1, np.int16)
        role = np.zeros((depth, width), np.int8)
        edges = np.zeros((depth - 1, width, width), np.uint8)
        for node in nodes:
            l, i = int(node["layer"]), int(node["slot"])
            if not (0 <= l < depth and 0 <= i < width):
                raise ConfigError(f"node ({l}, {i}) is outside the {depth}x{width} template")
            name = node["model"]
            if name not in index:
                raise ConfigError(f"unknown model {name!r}; the pool has: "
                                  f"{', '.join(model_names)}")
            if node.get("role", "assistant") not in ROLES:
                raise ConfigError(f"unknown role {node.get('role')!r}; allowed: {', '.join(ROLES)}")
            model[l, i] = index[name]
            role[l, i] = ROLES.index(node.get("role", "assistant"))
        for l, i, j in edge_list:
            if not (0 <= l < depth - 1 and 0 <= i < width and 0 <= j < width):
                raise ConfigError(f"edge {(l, i, j)} is outside the {depth}x{width} template")
            edges[l, i, j] = 1
        try:
            return cls(model, role, edges, model_names)
        except ValueError as exc:
            raise ConfigError(f"invalid graph: {exc}") from None

    @classmethod
    def from_json(cls, text: str, model_names: Sequence[str]) -> CollaborationGraph:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"graph JSON does not parse: {exc}") from None
        return cls.from_dict(data, model_names)

    @classmethod
    def chain(cls, models: Sequence[int], model_names: Sequence[str], *,
              template: tuple[int, int] | None = None) -> CollaborationGraph:
        """A sequential graph: ``models[0]`` answers, each next model refines the previous."""
        return cls.layered([[m] for m in models], model_names, template=template)

    @classmethod
    def layered(cls, layers: Sequence[Sequence[int]], model_names: Sequence[str], *,
                roles: Sequence[Sequence[int]] | None = None,
                template: tuple[int, int] | None = None) -> CollaborationGraph:
        """A graph whose consecutive layers are fully connected.

        ``layers[l]`` lists the model indices of layer l; ``roles`` (same shape) defaults to
        assistants in the first layer and, later, fusers where a node has several predecessors.
        """
        depth = len(layers)
        width = max(len(layer) for layer in layers)
        d, w = template or (depth, width)
        model = np.full((d, w), -1, np.int16)
        role = np.zeros((d, w), np.int8)
        edges = np.zeros((d - 1, w, w), np.uint8)
        for l, layer in enumerate(layers):
            model[l, : len(layer)] = layer
            if l > 0:
                edges[l - 1, : len(layers[l - 1]), : len(layer)] = 1
                role[l, : len(layer)] = FUSER if len(layers[l - 1]) > 1 else ASSISTANT
            if roles is not None:
                role[l, : len(layer)] = roles[l]
        return cls(model, role, edges, model_names)


@dataclass
class GraphBatch:
    """``B`` graphs of one template as C-contiguous ``[B, ...]`` arrays (what kernels take).

    A batch the sampler drew (`ProbGraph.sample`) holds well-formed graphs in read-only
    arrays, so its rows become `CollaborationGraph` objects without being checked again.
    """

    model: np.ndarray   # int16 [B, D, W]
    role: np.ndarray    # int8  [B, D, W]
    edges: np.ndarray   # uint8 [B, D-1, W, W]
    _sampled: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.model = np.ascontiguousarray(self.model, dtype=np.int16)
        self.role = np.ascontiguousarray(self.role, dtype=np.int8)
        self.edges = np.ascontiguousarray(self.edges, dtype=np.uint8)
        if self.model.ndim != 3:
            raise ValueError(f"model must be [B, D, W], got shape {self.model.shape}")
        b, d, w = self.model.shape
        if self.role.shape != (b, d, w):
            raise ValueError(f"role must have shape {(b, d, w)}, got {self.role.shape}")
        if self.edges.shape != (b, max(d - 1, 0), w, w):
            raise ValueError(f"edges must have shape {(b, max(d - 1, 0), w, w)}, "
                             f"got {self.edges.shape}")

    @classmethod
    def _of_samples(cls, model: np.ndarray, role: np.ndarray, edges: np.ndarray) -> GraphBatch:
        """The sampler's output (arrays it guarantees well-formed), made read-only so that
        nothing can change them behind that guarantee."""
        batch = cls.__new__(cls)
        for arr in (model, role, edges):
            arr.setflags(write=False)
        batch.model, batch.role, batch.edges = model, role, edges
        batch._sampled = True
        return batch

    @classmethod
    def from_graphs(cls, graphs: Sequence[CollaborationGraph]) -> GraphBatch:
        if not graphs:
            raise ValueError("graphs must not be empty")
        shapes = {g.template for g in graphs}
        if len(shapes) != 1:
            raise ValueError(f"graphs must share one template, got {sorted(shapes)}")
        return cls(np.stack([g.model for g in graphs]), np.stack([g.role for g in graphs]),
                   np.stack([g.edges for g in graphs]))

    @classmethod
    def empty(cls, depth: int, width: int) -> GraphBatch:
        return cls(np.zeros((0, depth, width), np.int16), np.zeros((0, depth, width), np.int8),
                   np.zeros((0, max(depth - 1, 0), width, width), np.uint8))

    def __len__(self) -> int:
        return self.model.shape[0]

    @property
    def template(self) -> tuple[int, int]:
        return self.model.shape[1], self.model.shape[2]

    def graph(self, b: int, model_names: Sequence[str]) -> CollaborationGraph:
        """Graph ``b`` as a validated `CollaborationGraph`."""
        if self._sampled:
            if len(model_names) <= int(self.model[b].max()):
                raise ValueError(f"model index {int(self.model[b].max())} is outside the pool "
                                 f"of {len(model_names)} models")
            return CollaborationGraph._from_sample(self.model[b], self.role[b], self.edges[b],
                                                    model_names)
        return CollaborationGraph(self.model[b], self.role[b], self.edges[b], model_names)

    def graphs(self, model_names: Sequence[str]) -> Iterator[CollaborationGraph]:
        for b in range(len(self)):
            yield self.graph(b, model_names)

    def row_keys(self) -> list[bytes]:
        """Each graph's arrays as bytes: equal for identical arrays (not for graphs that are
        merely slot permutations of each other; `CollaborationGraph.canonical_key` is that).
        A cheap first filter for repeats among many samples."""
        n = len(self)
        rows = np.concatenate([self.model.reshape(n, -1).view(np.uint8),
                               self.role.reshape(n, -1).view(np.uint8),
                               self.edges.reshape(n, -1)], axis=1)
        return [row.tobytes() for row in rows]

    def take(self, index: np.ndarray | slice) -> GraphBatch:
        """The sub-batch at ``index`` (a slice, integer indices or a boolean mask)."""
        if self._sampled:
            return GraphBatch._of_samples(self.model[index], self.role[index], self.edges[index])
        return GraphBatch(self.model[index], self.role[index], self.edges[index])


# --------------------------------------------------------------------- canonical form
def _encode(g: CollaborationGraph, order: np.ndarray) -> str:
    """The graph read with each layer's slots in ``order[l]`` order (``depth|labels/edge
    bits/labels...``; labels ``model.role``; a layer's edge bits row by row), which depends on
    neither the template's size nor the pool's names. Labels go through Python lists: on
    graphs of a few dozen nodes, per-call NumPy overhead would dominate."""
    rows = [r for r in ([i for i in row if i >= 0] for row in order.tolist()) if r]
    depth = len(rows)
    if depth > 1:  # every layer pair's edges in canonical order, in one gather
        slots = np.maximum(order[:depth], 0)
        bits = g.edges[np.arange(depth - 1)[:, None, None], slots[:-1, :, None],
                       slots[1:, None, :]] + ord("0")
    model, role = g.model.tolist(), g.role.tolist()
    parts = []
    for l, row in enumerate(rows):
        m, r = model[l], role[l]
        parts.append(",".join([f"{m[i]}.{r[i]}" for i in row]))
        if l + 1 < depth:
            parts.append(bits[l, : len(row), : len(rows[l + 1])].tobytes().decode("ascii"))
    return f"{depth}|" + "/".join(parts)
