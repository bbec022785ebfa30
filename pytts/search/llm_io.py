"""Everything the search layer says to an LLM and reads back from one.

The compact graph JSON both LLM-facing searchers use (`graph_to_compact` / `graph_from_compact`),
the view of a search an agent reads (`ScoredGraph`, `AgentContext`), the structured `Update` an
agent writes, every prompt (the agent's and the OPRO optimizer's, all in one place), and the
parsing and validation of replies.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..cost import CostModel
from ..errors import AgentReplyError
from ..graph import FUSER, ROLES, CollaborationGraph
from ..probgraph import ProbGraph
from .history import TrialRecord
from .objective import Objective

# ===================================================================== compact graph JSON
COMPACT_FORMAT = (
    'A graph is {"layers": [[node, ...], ...]}: layer 0 first, each layer a list of nodes. '
    'A node is {"model": NAME, "role": "assistant"|"fuser", "inputs": [SLOT, ...]}; "inputs" '
    "lists the nodes of the previous layer it reads (0-based; default: all of them), \"role\" "
    "defaults to \"fuser\" for several inputs and \"assistant\" otherwise. Layer-0 nodes answer "
    "the question (no inputs, role assistant). An assistant with inputs refines them; a fuser "
    "merges them. The graph's answer is the majority vote of the nodes nobody reads."
)


def graph_to_compact(graph: CollaborationGraph) -> dict[str, Any]:
    """``{"layers": [[{"model", "role", "inputs"}, ...], ...]}`` (layer-0 nodes: model only)."""
    layers = []
    for l, w in enumerate(graph.layer_widths):
        nodes = []
        for i in range(w):
            node: dict[str, Any] = {"model": graph.model_names[graph.model[l, i]]}
            if l > 0:
                node["role"] = ROLES[graph.role[l, i]]
                node["inputs"] = graph.predecessors(l, i)
            nodes.append(node)
        layers.append(nodes)
    return {"layers": layers}


def graph_from_compact(data: Any, model_names: Sequence[str],
                       template: tuple[int, int]) -> CollaborationGraph:
    """Build a graph from compact JSON; AgentReplyError says what is wrong with it."""
    d_max, w_max = template
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise AgentReplyError('a graph must be an object with a list "layers"')
    layers = data["layers"]
    if not 1 <= len(layers) <= d_max:
        raise AgentReplyError(f"a graph needs 1..{d_max} layers, got {len(layers)}")
    model = np.full((d_max, w_max), -1, np.int16)
    role = np.zeros((d_max, w_max), np.int8)
    edges = np.zeros((d_max - 1, w_max, w_max), np.uint8)
    for l, layer in enumerate(layers):
        if not isinstance(layer, list) or not 1 <= len(layer) <= w_max:
            raise AgentReplyError(f"layer {l} must be a list of 1..{w_max} nodes")
        for i, node in enumerate(layer):
            if isinstance(node, str):
                node = {"model": node}
            if not isinstance(node, dict) or node.get("model") not in model_names:
                raise AgentReplyError(f"node ({l}, {i}) must name a model of the pool "
                                      f"({', '.join(model_names)})")
            model[l, i] = list(model_names).index(node["model"])
            if l == 0:
                if node.get("inputs") or node.get("role", "assistant") != "assistant":
                    raise AgentReplyError("layer-0 nodes have no inputs and are assistants")
                continue
            inputs = node.get("inputs", list(range(len(layers[l - 1]))))
            if (not isinstance(inputs, list) or not inputs
                    or not all(isinstance(p, int) and not isinstance(p, bool)
                               and 0 <= p < len(layers[l - 1]) for p in inputs)):
                raise AgentReplyError(f"node ({l}, {i}): inputs must be a non-empty list of "
                                      f"slots 0..{len(layers[l - 1]) - 1} of layer {l - 1}")
            default_role = "fuser" if len(set(inputs)) > 1 else "assistant"
            name = node.get("role", default_role)
            if name not in ROLES:
                raise AgentReplyError(f"node ({l}, {i}): role must be one of {list(ROLES)}")
            role[l, i] = ROLES.index(name)
            for p in inputs:
                edges[l - 1, p, i] = 1
    try:
        return CollaborationGraph(model, role, edges, model_names)
    except ValueError as exc:
        raise AgentReplyError(f"invalid graph: {exc}") from None


def describe_compact(graph: CollaborationGraph) -> str:
    """One short line, e.g. ``qwen2.5-3b x3 -> qwen2.5-7b/fuser`` (for feedback texts)."""
    parts = []
    for l, w in enumerate(graph.layer_widths):
        names = [graph.model_names[graph.model[l, i]] for i in range(w)]
        counts = {n: names.count(n) for n in dict.fromkeys(names)}
        cell = " + ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())
        if l > 0:
            fusers = int((graph.role[l, :w] == FUSER).sum())
            cell += f" ({fusers} fuser{'s' if fusers != 1 else ''})" if fusers else " (refine)"
        parts.append(cell)
    return " -> ".join(parts)


# ===================================================================== what the agent reads
@dataclass
class ScoredGraph:
    """An evaluated graph as the agent sees it; ``id`` is the history number of its first tell."""

    id: int
    graph: CollaborationGraph
    value: float
    accuracy: float
    n_questions: int
    latency_s: float
    flops: float

    @property
    def structure(self) -> tuple[int, ...]:
        """The (depth, width-given-depth) region: the layer widths."""
        return self.graph.layer_widths

    @property
    def stderr(self) -> float:
        """Standard error of the accuracy estimate (floored so 0% or 100% is not certain)."""
        p = self.accuracy
        return math.sqrt(max(p * (1 - p), 0.05) / max(self.n_questions, 1))


def scored_graphs(records: Sequence[TrialRecord]) -> dict[str, ScoredGraph]:
    """The distinct graphs of a search history by canonical key, each as of its first tell."""
    scored: dict[str, ScoredGraph] = {}
    for r in records:
        if r.key not in scored:
            res = r.result
            scored[r.key] = ScoredGraph(r.number, r.graph, r.value, res.accuracy,
                                        res.n_questions, res.mean_latency_s, res.mean_flops)
    return scored


@dataclass
class AgentContext:
    """Everything an agent may read when it initialises or gives feedback.

    ``scored`` holds every distinct evaluated graph in order of first evaluation; ``latest``
    the ids of the round just evaluated (the pilots, at initialisation); ``distribution`` the
    current probabilistic graph (None for searchers that have none).
    """

    template: tuple[int, int]
    budget: float
    cost: CostModel
    objective: Objective
    scored: list[ScoredGraph]
    latest: list[int]
    distribution: ProbGraph | None
    round: int

    def by_id(self) -> dict[int, ScoredGraph]:
        return {s.id: s for s in self.scored}

    def best(self) -> ScoredGraph:
        return max(self.scored, key=lambda s: (s.value, -s.id))

    def to_json(self, top_k: int = 20) -> dict[str, Any]:
        """The JSON an LLM is shown: task, pool, best ``top_k`` and latest graphs, and the
        distribution's depth and model marginals (when there is a distribution).

        Graphs are listed worst to best (the OPRO convention: the best sit next to the
        instruction).
        """
        pool = self.cost.pool
        shown = sorted(self.scored, key=lambda s: (s.value, -s.id))[-top_k:]
        ids = {s.id for s in shown}
        shown = sorted([s for s in self.scored if s.id in self.latest and s.id not in ids]
                       + shown, key=lambda s: (s.value, -s.id))
        data = {
            "objective": repr(self.objective),
            "template": {"max_depth": self.template[0], "max_width": self.template[1]},
            "budget_flops": self.budget,
            "prompt_tokens": self.cost.prompt_tokens,
            "template_tokens": self.cost.template_tokens,
            "pool": [{"model": m.name, "family": m.family, "params_b": m.params_b,
                      "out_tokens": m.out_tokens, "flops_per_call": self.cost.call_flops(m.name)}
                     for m in pool],
            "evaluated": [{"id": s.id, "score": round(s.value, 4),
                           "accuracy": round(s.accuracy, 4), "latency_s": round(s.latency_s, 3),
                           "flops_fraction_of_budget": round(s.flops / self.budget, 3),
                           "graph": graph_to_compact(s.graph)} for s in shown],
            "latest_ids": list(self.latest),
            "best_id": self.best().id if self.scored else None,
        }
        pg = self.distribution
        if pg is not None:
            data["distribution"] = {
                "depth_probs": [round(float(p), 3) for p in pg.depth_probs()],
                "model_probs": {n: round(float(p), 3)
                                for n, p in zip(pg.model_names, pg.mean_model_probs())},
            }
        return data


# ===================================================================== what the agent writes
@dataclass
class Update:
    """A structured update of the probabilistic graph: what every agent writes, and the form an
    LLM agent's reply (the schema in `AGENT_SYSTEM`) is parsed into.

    ``anchor`` is the id of an evaluated graph to move toward (its structure, per-slot models,
    roles and edges); ``depth``/``widths`` name the (depth, width-given-depth) region to move
    toward instead of the anchor's; ``model_weights`` the desired model mix of first answers and
    ``later_model_weights`` that of later steps (refinements, fusions); ``fuser_prob`` and
    ``edge_density`` the desired share of fusers among later nodes and of present edges;
    ``step_size`` in [0, 1] how far to move (the trust region may shorten it). None leaves a
    factor alone.
    """

    step_size: float
    anchor: int | None = None
    depth: int | None = None
    widths: list[int] | None = None
    model_weights: dict[str, float] | None = None
    fuser_prob: float | None = None
    later_model_weights: dict[str, float] | None = None
    edge_density: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ===================================================================== prompts (all of them)
AGENT_SYSTEM = (
    "You are the optimizer agent of Agent-REINFORCE. You search for the best test-time-scaling "
    "strategy for a task: a layered graph of LLM calls that must fit a FLOPs budget per query. "
    "A probabilistic graph (distributions over depth, width per layer given the depth, the "
    "model and role of each node, and edges) proposes candidates; you read their scores and "
    "say how to move that distribution.\n" + COMPACT_FORMAT + "\n"
    "Known regularities: (1) each task prefers some model families and sizes, and under a "
    "budget several calls of a smaller model can beat one call of a bigger one; (2) accuracy "
    "rises with width and with depth only up to a task-specific point; (3) the best width "
    "depends on the depth, so move them together. Scores are noisy dev-set estimates.\n"
    "Reply with ONE JSON object and nothing else:\n"
    '{"feedback": "<what to change and why, a few sentences>", '
    '"anchor": <id of an evaluated graph to move toward, or null>, '
    '"depth": <target depth 1..max_depth or null>, '
    '"widths": [<target width 1..max_width of each layer of that depth>] or null, '
    '"model_weights": {"<model>": <weight >= 0>, ...} or null, '
    '"fuser_prob": <0..1 or null>, "edge_density": <0..1 or null>, '
    '"step_size": <0..1, how far to move>}'
)

AGENT_INIT_USER = (
    "Pilot round: one budget-matched single-model graph per model was evaluated. Choose the "
    "initial model preference (model_weights) and, if one pilot stands out, an anchor.\n"
    "CONTEXT:\n{context}"
)

AGENT_FEEDBACK_USER = (
    "Round {round} was evaluated (ids in latest_ids). Give your feedback and update.\n"
    "CONTEXT:\n{context}"
)

OPTIMIZER_SYSTEM = (
    "You optimize test-time-scaling strategies: layered graphs of LLM calls that must fit a "
    "FLOPs budget per query. A node's FLOPs are 2e9 * params_b * (prompt_tokens + "
    "template_tokens + the out_tokens of each input + its own out_tokens); a graph's FLOPs are "
    "the sum over its nodes.\n" + COMPACT_FORMAT + "\n"
    "You see previously evaluated graphs with their scores (higher is better), worst first. "
    "Propose new graphs, different from all evaluated ones, likely to score higher.\n"
    'Reply with ONE JSON object and nothing else: {"graphs": [<graph>, ...]}'
)

OPTIMIZER_USER = "Propose {n} new graph(s).\nCONTEXT:\n{context}"

CONTEXT_OPEN = "<context>"
CONTEXT_CLOSE = "</context>"


def render_context(data: dict[str, Any]) -> str:
    """Context JSON between markers (so offline stand-ins can read it back exactly)."""
    return f"{CONTEXT_OPEN}\n{json.dumps(data, separators=(',', ':'))}\n{CONTEXT_CLOSE}"


def read_context(text: str) -> dict[str, Any]:
    """The context JSON of a prompt built with `render_context`."""
    start = text.index(CONTEXT_OPEN) + len(CONTEXT_OPEN)
    return json.loads(text[start:text.index(CONTEXT_CLOSE, start)])


# ===================================================================== reply parsing
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in an LLM reply: in a ``` fence, bare, or inside prose.

    AgentReplyError when there is none (prose, garbage) or the object never closes (a reply
    cut off by the token limit).
    """
    if not isinstance(text, str) or not text.strip():
        raise AgentReplyError("the reply is empty")
    decoder = json.JSONDecoder()
    error = "no JSON object in the reply"
    for chunk in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        starts = [i for i, c in enumerate(chunk) if c == "{"][:_MAX_JSON_STARTS]
        for i in starts:
            try:
                data, _ = decoder.raw_decode(chunk, i)
            except json.JSONDecodeError as exc:
                if exc.pos >= len(chunk.rstrip()):
                    error = "the reply's JSON is cut off (truncated)"
                elif error == "no JSON object in the reply":
                    error = f"the reply's JSON does not parse ({exc.msg} at char {exc.pos})"
                continue
            if isinstance(data, dict):
                return data
    raise AgentReplyError(error + f": {text[:120]!r}")


_MAX_JSON_STARTS = 50
"""Opening braces tried per reply (a long prose reply is not searched exhaustively)."""


def _number(data: dict[str, Any], key: str, low: float, high: float,
            required: bool = False) -> float | None:
    value = data.get(key)
    if value is None:
        if required:
            raise AgentReplyError(f'"{key}" is required')
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AgentReplyError(f'"{key}" must be a number, got {value!r}')
    if not low <= value <= high:
        raise AgentReplyError(f'"{key}" must be in [{low}, {high}], got {value!r}')
    return float(value)


def _integer(value: Any, key: str, low: int, high: int) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value != int(value)):
        raise AgentReplyError(f'"{key}" must be an integer, got {value!r}')
    if not low <= value <= high:
        raise AgentReplyError(f'"{key}" must be in {low}..{high}, got {value!r}')
    return int(value)


def parse_feedback(text: str, ctx: AgentContext) -> tuple[str, Update]:
    """Validate an agent reply against the schema in `AGENT_SYSTEM` and the context.

    Checks types and ranges, that names and ids exist, that ``widths`` has ``depth`` entries,
    and that the target region can fit the budget at all. AgentReplyError says what failed.
    """
    data = extract_json_object(text)
    d_max, w_max = ctx.template
    feedback = data.get("feedback")
    if not isinstance(feedback, str) or not feedback.strip():
        raise AgentReplyError('"feedback" must be a non-empty string')
    step = _number(data, "step_size", 0.0, 1.0, required=True)
    assert step is not None
    anchor = data.get("anchor")
    if anchor is not None:
        anchor = _integer(anchor, "anchor", 0, 10 ** 9)
        if anchor not in ctx.by_id():
            raise AgentReplyError(f'"anchor" {anchor} is not the id of an evaluated graph')
    depth = data.get("depth")
    widths = data.get("widths")
    if depth is not None:
        depth = _integer(depth, "depth", 1, d_max)
    if widths is not None:
        if not isinstance(widths, list) or not widths:
            raise AgentReplyError('"widths" must be a non-empty list of integers')
        widths = [_integer(w, "widths[]", 1, w_max) for w in widths]
        depth = len(widths) if depth is None else depth
        if len(widths) != depth:
            raise AgentReplyError(f'"widths" must list {depth} layers (the depth), got '
                                  f"{len(widths)}")
        if region_min_flops(widths, ctx.cost) > ctx.budget:
            raise AgentReplyError(f"the region widths={widths} cannot fit the budget even "
                                  "with the cheapest model")
    weights = data.get("model_weights")
    if weights is not None:
        names = ctx.cost.pool.names
        if not isinstance(weights, dict) or not weights:
            raise AgentReplyError('"model_weights" must be an object of model -> weight')
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise AgentReplyError(f'"model_weights" names unknown models {unknown}')
        weights = {n: _number(weights, n, 0.0, 1e6, required=True) for n in weights}
        if sum(weights.values()) <= 0:
            raise AgentReplyError('"model_weights" must not be all zero')
    return feedback.strip(), Update(
        step_size=step, anchor=anchor, depth=depth, widths=widths, model_weights=weights,
        fuser_prob=_number(data, "fuser_prob", 0.0, 1.0),
        edge_density=_number(data, "edge_density", 0.0, 1.0))


def region_min_flops(widths: Sequence[int], cost: CostModel) -> float:
    """FLOPs of the cheapest graph with these layer widths: the cheapest model everywhere and
    one input per later node (a lower bound up to mixing models across layers)."""
    cheapest = min(range(len(cost.pool)), key=cost.call_flops)
    reading_one = cost.call_flops(cheapest, cost.pool[cheapest].out_tokens)
    return widths[0] * cost.call_flops(cheapest) + sum(widths[1:]) * reading_one



__all__ = ["AGENT_FEEDBACK_USER", "AGENT_INIT_USER", "AGENT_SYSTEM", "AgentContext",
           "COMPACT_FORMAT", "OPTIMIZER_SYSTEM", "OPTIMIZER_USER", "ScoredGraph", "Update",
           "describe_compact", "extract_json_object", "graph_from_compact", "graph_to_compact",
           "parse_feedback", "read_context", "region_min_flops", "render_context",
           "scored_graphs"]
