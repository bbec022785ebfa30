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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

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
    "merges them. The graph's answer is the majority vote of the nodes nobody reads. A node "
    "whose role and inputs are the defaults may be written as its model NAME alone."
)


def graph_to_compact(graph: CollaborationGraph, short: bool = False) -> dict[str, Any]:
    """``{"layers": [[{"model", "role", "inputs"}, ...], ...]}`` (layer-0 nodes: model only).

    ``short`` leaves out what `COMPACT_FORMAT` defaults (inputs that are the whole previous
    layer, the role those inputs imply) and writes a node left with its model alone as the
    bare name; `graph_from_compact` reads both forms back to the same graph.
    """
    layers = []
    widths = graph.layer_widths
    for l, w in enumerate(widths):
        nodes: list[Any] = []
        for i in range(w):
            name = graph.model_names[graph.model[l, i]]
            node: dict[str, Any] = {"model": name}
            if l > 0:
                inputs = graph.predecessors(l, i)
                role = ROLES[graph.role[l, i]]
                if not short or role != ("fuser" if len(inputs) > 1 else "assistant"):
                    node["role"] = role
                if not short or inputs != list(range(widths[l - 1])):
                    node["inputs"] = inputs
            nodes.append(name if short and len(node) == 1 else node)
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
_FEWER_GRAPHS = (12, 8, 5, 3, 2, 1)
"""How many top graphs the ever more compact views of a context show (latest ones besides)."""
_SUMMARISED_GRAPHS = (5, 1)
"""How many top graphs the summary views show (latest ones besides), after `_FEWER_GRAPHS`."""


class ContextView(NamedTuple):
    """How much of a context a prompt shows: the best ``top_k`` graphs (and the latest round's),
    in the ``compact`` form (short graph JSON, TFLOPs) and, with ``summary``, each graph as
    one `describe_compact` line and the pool as its per-call costs alone: a size that no
    longer grows with the graphs' node counts."""

    top_k: int
    compact: bool
    summary: bool = False


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

    def to_json(self, top_k: int = 20, compact: bool = False,
                summary: bool = False) -> dict[str, Any]:
        """The JSON an LLM is shown: task, pool, best ``top_k`` and latest graphs, and the
        distribution's depth and model marginals (when there is a distribution).

        Graphs are listed worst to best (the OPRO convention: the best sit next to the
        instruction). ``compact`` (for small context windows) writes each graph in the short
        compact form and keeps of its figures only the score, the accuracy where it differs,
        and the budget share; it gives FLOPs in TFLOPs (``budget_tflops``,
        ``tflops_per_call``), leaves out model families and the distribution's model
        marginals. ``summary`` (implies ``compact``, for the smallest windows) writes each
        graph as its `describe_compact` line, the pool as ``tflops_per_call`` by model, and
        leaves out the objective and the token counts of the cost formula.
        """
        compact = compact or summary
        pool = self.cost.pool
        shown = sorted(self.scored, key=lambda s: (s.value, -s.id))[-top_k:]
        ids = {s.id for s in shown}
        shown = sorted([s for s in self.scored if s.id in self.latest and s.id not in ids]
                       + shown, key=lambda s: (s.value, -s.id))
        template = {"max_depth": self.template[0], "max_width": self.template[1]}
        # TFLOPs when compact: a FLOPs count in JSON is 13+ digits, most of them tokens
        tflops = {m.name: round(self.cost.call_flops(m.name) / 1e12, 3) for m in pool}
        data: dict[str, Any]
        if summary:
            data = {"template": template, "budget_tflops": round(self.budget / 1e12, 3),
                    "tflops_per_call": tflops}
        elif compact:
            data = {"objective": repr(self.objective), "template": template,
                    "prompt_tokens": round(self.cost.prompt_tokens, 1),
                    "template_tokens": self.cost.template_tokens,
                    "budget_tflops": round(self.budget / 1e12, 3),
                    "pool": [{"model": m.name, "params_b": m.params_b,
                              "out_tokens": m.out_tokens, "tflops_per_call": tflops[m.name]}
                             for m in pool]}
        else:
            data = {"objective": repr(self.objective), "template": template,
                    "prompt_tokens": self.cost.prompt_tokens,
                    "template_tokens": self.cost.template_tokens,
                    "budget_flops": self.budget,
                    "pool": [{"model": m.name, "family": m.family, "params_b": m.params_b,
                              "out_tokens": m.out_tokens,
                              "flops_per_call": self.cost.call_flops(m.name)} for m in pool]}
        data.update({"evaluated": [self._entry(s, compact, summary) for s in shown],
                     "latest_ids": list(self.latest),
                     "best_id": self.best().id if self.scored else None})
        pg = self.distribution
        if pg is not None:
            data["distribution"] = {"depth_probs": [round(float(p), 3) for p in pg.depth_probs()]}
            if not compact:
                data["distribution"]["model_probs"] = {
                    n: round(float(p), 3) for n, p in zip(pg.model_names, pg.mean_model_probs())}
        return data

    @staticmethod
    def views(top_k: int) -> list[ContextView]:
        """The views a prompt tries when it must shrink to fit a context window, most detailed
        first: the short form, then fewer graphs, then graphs summarised (`ContextView`)."""
        views = ([ContextView(top_k, False), ContextView(top_k, True)]
                 + [ContextView(k, True) for k in _FEWER_GRAPHS if k < top_k]
                 + [ContextView(min(k, top_k), True, True) for k in _SUMMARISED_GRAPHS])
        return list(dict.fromkeys(views))

    def _entry(self, s: ScoredGraph, compact: bool, summary: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": s.id, "score": round(s.value, 4)}
        if not compact or round(s.accuracy, 3) != round(s.value, 3):
            entry["accuracy"] = round(s.accuracy, 4)
        if not compact:
            entry["latency_s"] = round(s.latency_s, 3)
        entry["flops_fraction_of_budget"] = round(s.flops / self.budget, 3)
        entry["graph"] = (describe_compact(s.graph) if summary
                          else graph_to_compact(s.graph, short=compact))
        return entry


# ===================================================================== what the agent writes
FRACTION_RANGE = (0.0, 1.0)
"""Range of the reply's fractions: ``step_size``, ``fuser_prob``, ``edge_density``."""
WEIGHT_RANGE = (0.0, 1e6)
"""Range of one model's weight in ``model_weights`` / ``later_model_weights`` (relative)."""
FRACTION_GRID = tuple(round(i / 20, 2) for i in range(21))
"""The fractions a schema-constrained reply may write (inside `FRACTION_RANGE`)."""
WEIGHT_GRID = FRACTION_GRID[1:]
"""The weights a schema-constrained reply may write: above zero, so no mix is all zero."""
FEEDBACK_MAX_CHARS = 300
"""Longest feedback text a schema-constrained reply may write (bounds the reply's tokens)."""
FEEDBACK_PATTERN = f"^[A-Za-z][A-Za-z0-9 ,.;:!?()'%+=<>/#*-]{{0,{FEEDBACK_MAX_CHARS - 1}}}$"
"""Feedback under a schema: starts with a letter (so it is never blank) and uses no character
that JSON would have to escape."""
MAX_LISTED_REGIONS = 256
"""A schema lists the width profiles that fit the budget when there are at most this many."""


@dataclass
class Update:
    """A structured update of the probabilistic graph: what every agent writes, and the form an
    LLM agent's reply (the schema in `AGENT_SYSTEM`) is parsed into.

    ``anchor`` is the id of an evaluated graph to move toward (its structure, per-slot models,
    roles and edges); ``depth``/``widths`` name the (depth, width-given-depth) region to move
    toward instead of the anchor's; ``model_weights`` the desired model mix of first answers and
    ``later_model_weights`` that of later steps (refinements, fusions); ``fuser_prob`` and
    ``edge_density`` the desired share of fusers among later nodes and of present edges;
    ``later_model_weights`` the model mix wanted in the later layers' slots (refiners and
    fusers) where it differs from ``model_weights``; ``step_size`` in [0, 1] how far to move
    (the trust region may shorten it). None leaves a factor alone.
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
_AGENT_REPLY_FORMAT = (
    "Reply with ONE JSON object and nothing else:\n"
    '{"feedback": "<what to change and why, a few sentences>", '
    '"anchor": <id of an evaluated graph to move toward, or null>, '
    '"depth": <target depth 1..max_depth or null>, '
    '"widths": [<target width 1..max_width of each layer of that depth>] or null, '
    '"model_weights": {"<model>": <weight >= 0>, ...} or null, '
    '"later_model_weights": {"<model>": <weight >= 0>, ...} or null (the mix for the refiner '
    'and fuser slots of later layers, if it should differ), '
    '"fuser_prob": <0..1 or null>, "edge_density": <0..1 or null>, '
    '"step_size": <0..1, how far to move>}'
)

SUMMARY_FORMAT = (
    "Each graph is summarised in one line, layer 0 first, layers joined by ->: a layer lists "
    "its models (x3: three calls of that model), and a later layer says how many of its "
    "nodes are fusers, or (refine) when all refine."
)
"""How the summary views (`ContextView`) write a graph: the `describe_compact` line."""

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
    + _AGENT_REPLY_FORMAT
)

AGENT_SYSTEM_SUMMARY = (
    "You are the optimizer agent of Agent-REINFORCE: you read the scores of layered graphs of "
    "LLM calls (each fits a FLOPs budget per query) and say how to move the distribution that "
    "proposes them. Scores are noisy dev-set estimates. " + SUMMARY_FORMAT + "\n"
    + _AGENT_REPLY_FORMAT
)
"""`AGENT_SYSTEM` for the summary views: the graph format and the regularities left out."""

AGENT_INIT_USER = (
    "Pilot round: one budget-matched single-model graph per model was evaluated. Choose the "
    "initial model preference (model_weights) and, if one pilot stands out, an anchor.\n"
    "CONTEXT:\n{context}"
)

AGENT_FEEDBACK_USER = (
    "Round {round} was evaluated (ids in latest_ids). Give your feedback and update.\n"
    "CONTEXT:\n{context}"
)

_OPTIMIZER_TASK = (
    "You see previously evaluated graphs with their scores (higher is better), worst first. "
    "Propose new graphs, different from all evaluated ones, likely to score higher.\n"
    'Reply with ONE JSON object and nothing else: {"graphs": [<graph>, ...]}'
)

OPTIMIZER_SYSTEM = (
    "You optimize test-time-scaling strategies: layered graphs of LLM calls that must fit a "
    "FLOPs budget per query. A node's FLOPs are 2e9 * params_b * (prompt_tokens + "
    "template_tokens + the out_tokens of each input + its own out_tokens); a graph's FLOPs are "
    "the sum over its nodes.\n" + COMPACT_FORMAT + "\n" + _OPTIMIZER_TASK
)

OPTIMIZER_SYSTEM_SUMMARY = (
    "You optimize test-time-scaling strategies: layered graphs of LLM calls that must fit a "
    "FLOPs budget per query (a call costs its model's tflops_per_call, more when it reads "
    "inputs).\n" + COMPACT_FORMAT + "\n" + SUMMARY_FORMAT + "\n" + _OPTIMIZER_TASK
)
"""`OPTIMIZER_SYSTEM` for the summary views: costs per call instead of the formula, and how
the evaluated graphs are summarised (replies are still whole graphs)."""

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
    # strict=False: a raw newline inside a string is a slip, not a reason to drop the reply.
    decoder = json.JSONDecoder(strict=False)
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


def _weights(data: dict[str, Any], key: str, names: Sequence[str]) -> dict[str, float] | None:
    weights = data.get(key)
    if weights is None:
        return None
    if not isinstance(weights, dict) or not weights:
        raise AgentReplyError(f'"{key}" must be an object of model -> weight')
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise AgentReplyError(f'"{key}" names unknown models {unknown}')
    out = {n: _number(weights, n, *WEIGHT_RANGE, required=True) for n in weights}
    if sum(out.values()) <= 0:  # type: ignore[arg-type]
        raise AgentReplyError(f'"{key}" must not be all zero')
    return out  # type: ignore[return-value]


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
    step = _number(data, "step_size", *FRACTION_RANGE, required=True)
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
    names = ctx.cost.pool.names
    return feedback.strip(), Update(
        step_size=step, anchor=anchor, depth=depth, widths=widths,
        model_weights=_weights(data, "model_weights", names),
        fuser_prob=_number(data, "fuser_prob", *FRACTION_RANGE),
        later_model_weights=_weights(data, "later_model_weights", names),
        edge_density=_number(data, "edge_density", *FRACTION_RANGE))


def region_min_flops(widths: Sequence[int], cost: CostModel) -> float:
    """FLOPs of the cheapest graph with these layer widths: the cheapest model everywhere and
    one input per later node (a lower bound up to mixing models across layers)."""
    cheapest = min(range(len(cost.pool)), key=cost.call_flops)
    reading_one = cost.call_flops(cheapest, cost.pool[cheapest].out_tokens)
    return widths[0] * cost.call_flops(cheapest) + sum(widths[1:]) * reading_one


class _TooMany(Exception):
    pass


def feasible_regions(template: tuple[int, int], cost: CostModel, budget: float,
                     limit: int = MAX_LISTED_REGIONS) -> list[list[int]] | None:
    """Every width profile (layer 0 first) of the template that `region_min_flops` lets fit
    ``budget``, shallow and narrow first; None when there are more than ``limit``."""
    d_max, w_max = template
    found: list[list[int]] = []

    def grow(prefix: list[int]) -> None:
        for w in range(1, w_max + 1):
            widths = prefix + [w]
            if region_min_flops(widths, cost) > budget:
                break  # monotone in every width and in depth: wider or deeper won't fit either
            found.append(widths)
            if len(found) > limit:
                raise _TooMany
            if len(widths) < d_max:
                grow(widths)

    try:
        grow([])
    except _TooMany:
        return None
    return sorted(found, key=lambda w: (len(w), w))


# ===================================================================== reply schemas
def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def agent_reply_schema(ctx: AgentContext, shown_ids: Sequence[int]) -> dict[str, Any]:
    """The JSON schema of an agent reply, for servers that constrain their output to one.

    It is `parse_feedback`'s rules made enumerable, so every reply it admits passes that parser
    against ``ctx``: the anchor is one of ``shown_ids`` (graphs the prompt showed), fractions
    and weights come from `FRACTION_GRID` / `WEIGHT_GRID`, the feedback from `FEEDBACK_PATTERN`,
    and ``widths`` from the profiles that fit the budget (`feasible_regions`; past
    `MAX_LISTED_REGIONS` of them, any profile of the template, and the parser still checks the
    budget). ``depth`` is left out: a reply's widths carry it. Every field is required (null
    where the prompt allows null), in the prompt's order.
    """
    d_max, w_max = ctx.template
    regions = feasible_regions(ctx.template, ctx.cost, ctx.budget)
    widths = ({"enum": [None, *regions]} if regions is not None else _nullable(
        {"type": "array", "items": {"enum": list(range(1, w_max + 1))}, "minItems": 1,
         "maxItems": d_max}))
    names = list(ctx.cost.pool.names)
    mix = _nullable({"type": "object", "properties": {n: {"enum": list(WEIGHT_GRID)}
                                                      for n in names},
                     "required": names, "additionalProperties": False})
    fraction = {"enum": [None, *FRACTION_GRID]}
    properties = {
        "feedback": {"type": "string", "pattern": FEEDBACK_PATTERN},
        "anchor": {"enum": [None, *sorted(shown_ids)]},
        "widths": widths,
        "model_weights": mix,
        "later_model_weights": mix,
        "fuser_prob": fraction,
        "edge_density": fraction,
        "step_size": {"enum": list(FRACTION_GRID)},
    }
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def optimizer_reply_schema(model_names: Sequence[str], template: tuple[int, int],
                           n: int) -> dict[str, Any]:
    """The JSON schema of an `OPTIMIZER_SYSTEM` reply: ``{"graphs": [...]}`` with 1..``n``
    graphs in compact form (layer-0 nodes as bare names, later nodes with model, role and
    inputs), each 1..max_depth layers of 1..max_width nodes. Input slots are only bounded by
    the template's width: a proposal reading a slot its previous layer lacks still parses as a
    reply and is then counted invalid, like any other unusable proposal."""
    d_max, w_max = template
    names = list(model_names)
    first = {"enum": names}
    later = {"type": "object", "properties": {
        "model": {"enum": names}, "role": {"enum": list(ROLES)},
        "inputs": {"type": "array", "items": {"enum": list(range(w_max))}, "minItems": 1,
                   "maxItems": w_max}},
        "required": ["model", "role", "inputs"], "additionalProperties": False}

    def layer(node: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": node, "minItems": 1, "maxItems": w_max}

    layers = {"anyOf": [{"type": "array", "prefixItems": [layer(first)] + [layer(later)] * d,
                         "minItems": d + 1, "maxItems": d + 1} for d in range(d_max)]}
    graph = {"type": "object", "properties": {"layers": layers}, "required": ["layers"],
             "additionalProperties": False}
    return {"type": "object", "properties": {"graphs": {"type": "array", "items": graph,
                                                        "minItems": 1, "maxItems": n}},
            "required": ["graphs"], "additionalProperties": False}



__all__ = ["AGENT_FEEDBACK_USER", "AGENT_INIT_USER", "AGENT_SYSTEM", "AGENT_SYSTEM_SUMMARY",
           "AgentContext", "COMPACT_FORMAT", "ContextView", "FEEDBACK_MAX_CHARS",
           "FEEDBACK_PATTERN", "FRACTION_GRID", "FRACTION_RANGE", "MAX_LISTED_REGIONS",
           "OPTIMIZER_SYSTEM", "OPTIMIZER_SYSTEM_SUMMARY", "OPTIMIZER_USER", "SUMMARY_FORMAT",
           "ScoredGraph", "Update", "WEIGHT_GRID", "WEIGHT_RANGE", "agent_reply_schema",
           "describe_compact", "extract_json_object", "feasible_regions", "graph_from_compact",
           "graph_to_compact", "optimizer_reply_schema", "parse_feedback", "read_context",
           "region_min_flops", "render_context", "scored_graphs"]
