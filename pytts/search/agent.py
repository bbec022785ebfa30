"""The agent of Agent-REINFORCE, and everything the search layer says to and reads from an LLM.

An `Agent` reads scored candidate graphs and writes *feedback*: a textual gradient (what to change
and why) plus a structured `Update` that Agent-REINFORCE turns into new probabilistic-graph
parameters. `HeuristicAgent` implements the paper's three insights as rules, offline;
`LLMAgent` asks any OpenAI-compatible LLM and falls back to the heuristic on a bad reply.

This module also holds the compact graph JSON both LLM-facing searchers use
(`graph_to_compact` / `graph_from_compact`), the prompt templates (the agent's and the OPRO
optimizer's, all in one place), and the reply parsing and validation.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..cost import CostModel
from ..errors import AgentReplyError, LLMError
from ..graph import FUSER, ROLES, CollaborationGraph
from ..llm.base import LLMClient
from ..probgraph import ProbGraph
from .base import Objective, TrialRecord, log

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


def scored_graphs(records: Sequence[TrialRecord],
                  model_names: Sequence[str]) -> dict[str, ScoredGraph]:
    """The distinct graphs of a search history by canonical key, each as of its first tell."""
    scored: dict[str, ScoredGraph] = {}
    for r in records:
        if r.key not in scored:
            res = r.result
            graph = CollaborationGraph.from_dict(r.graph, model_names)
            scored[r.key] = ScoredGraph(r.number, graph, r.value, res["accuracy"],
                                        res["n_questions"], res["mean_latency_s"],
                                        res["mean_flops"])
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
    """A structured update of the probabilistic graph.

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


@dataclass
class Feedback:
    """An agent's feedback: the textual gradient, the structured update, where it came from
    (``"heuristic"``, ``"llm"``, or ``"fallback"`` after a bad LLM reply, with ``error``)."""

    text: str
    update: Update
    source: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "update": self.update.to_dict(), "source": self.source,
                "error": self.error}


class Agent(ABC):
    """Reads scored graphs, writes `Feedback`. Implementations may await an LLM.

    ``bad_replies`` counts replies that could not be used (always 0 for offline agents).
    """

    bad_replies: int = 0

    @abstractmethod
    async def initialize(self, ctx: AgentContext) -> Feedback:
        """Feedback on the pilot evaluations (``ctx.latest``): the initial model preference."""

    @abstractmethod
    async def feedback(self, ctx: AgentContext) -> Feedback:
        """Feedback on the round just evaluated (``ctx.latest``)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


# ===================================================================== heuristic agent
class HeuristicAgent(Agent):
    """The three insights of the paper as rules (deterministic, no LLM).

    1. Model preference: each model's credit is the value of the graphs it appears in,
       weighted by its share of their nodes (with one pseudo-observation at the overall mean);
       the mix is a softmax of credits at the temperature of the best graph's standard error,
       so models whose scores are within noise of the best keep real weight.
    2. Scaling limits: move toward the region of the best graph found so far, not toward
       "more": the text reports, per depth and per first-layer width, where scores peak.
    3. Width-depth interdependence: the target is the best graph's whole width profile
       *given its depth*, moved jointly with the depth.
    The step size grows with how clearly the best graph beats the best graph of any other
    region, measured in standard errors (``min_step`` within noise, up to ``max_step``).
    Fuser share and edge density follow the best ``top_k`` multi-layer graphs.
    """

    def __init__(self, *, min_step: float = 0.2, max_step: float = 0.6, top_k: int = 3) -> None:
        if not 0 < min_step <= max_step <= 1:
            raise ValueError("need 0 < min_step <= max_step <= 1")
        self.min_step = min_step
        self.max_step = max_step
        self.top_k = top_k

    async def initialize(self, ctx: AgentContext) -> Feedback:
        return self.initial_feedback(ctx)

    async def feedback(self, ctx: AgentContext) -> Feedback:
        return self.round_feedback(ctx)

    def initial_feedback(self, ctx: AgentContext) -> Feedback:
        pilots = [s for s in ctx.scored if s.id in ctx.latest] or ctx.scored
        best = max(pilots, key=lambda s: (s.value, -s.id))
        weights = self._model_weights(ctx, pilots, later=False)
        step = self._step(best, [s for s in pilots if s.structure != best.structure])
        lines = ["Pilots (one budget-matched single-model graph per model):"]
        lines += [f"  #{s.id} {describe_compact(s.graph)}: score {s.value:.3f}"
                  for s in sorted(pilots, key=lambda s: -s.value)]
        lines.append(f"For first answers prefer {_fmt_weights(weights)}: each model's chance of "
                     f"being the best given the pilot scores and their noise ({best.stderr:.3f}). "
                     "Pilots only answer, so they say nothing about who refines or fuses best.")
        lines.append("Pilots have one layer, so they say nothing yet about depth: keep depth "
                     "and width open and probe them around the best pilot "
                     f"#{best.id} (insights 2 and 3).")
        return Feedback("\n".join(lines), Update(step_size=step, model_weights=weights),
                        "heuristic")

    def round_feedback(self, ctx: AgentContext) -> Feedback:
        best = ctx.best()
        others = [s for s in ctx.scored if s.structure != best.structure]
        step = self._step(best, others)
        weights = self._model_weights(ctx, ctx.scored, later=False)
        deep = [s for s in ctx.scored if s.graph.depth > 1]
        later = self._model_weights(ctx, deep, later=True) if deep else None
        top = sorted((s for s in ctx.scored if s.graph.depth > 1),
                     key=lambda s: (-s.value, s.id))[: self.top_k]
        fuser = edge = None
        if top:
            fuser = float(np.mean([_fuser_share(s.graph) for s in top]))
            edge = float(np.mean([_edge_density(s.graph) for s in top]))
        latest = [s for s in ctx.scored if s.id in ctx.latest]
        lines = ["Latest round: " + "; ".join(f"#{s.id} {describe_compact(s.graph)} = "
                                             f"{s.value:.3f}" for s in latest)]
        lines.append(f"Best so far #{best.id} ({describe_compact(best.graph)}): {best.value:.3f}"
                     f" +- {best.stderr:.3f}.")
        lines.append(_scaling_text(ctx.scored, best))
        gap = (best.value - max(s.value for s in others)) if others else float("nan")
        lines.append(
            f"Move depth and width jointly toward depth {best.graph.depth}, widths "
            f"{list(best.structure)} with step {step:.2f} "
            + (f"(it beats the best other region by {gap:+.3f}, {gap / best.stderr:.1f} SE)."
               if others else "(no other region evaluated yet)."))
        lines.append(f"First answers toward {_fmt_weights(weights)}"
                     + (f"; refiners and fusers toward {_fmt_weights(later)}." if later
                        else "; no refiner or fuser measured yet."))
        if fuser is not None:
            lines.append(f"Top multi-layer graphs use {fuser:.0%} fusers and {edge:.0%} of "
                         "possible edges: follow them.")
        return Feedback("\n".join(lines), Update(step_size=step, anchor=best.id,
                                                 model_weights=weights, fuser_prob=fuser,
                                                 edge_density=edge, later_model_weights=later),
                        "heuristic")

    def _step(self, best: ScoredGraph, others: list[ScoredGraph]) -> float:
        if not others:
            return self.min_step
        z = (best.value - max(s.value for s in others)) / best.stderr
        return float(np.clip(self.min_step + 0.25 * z, self.min_step, self.max_step))

    @staticmethod
    def _model_weights(ctx: AgentContext, scored: list[ScoredGraph], *,
                       later: bool) -> dict[str, float]:
        """Each model's probability of being the best one for first answers (``later`` False)
        or for later steps (refinements and fusions), given the scores so far.

        A model's credit is the mean value of the graphs it appears in, weighted by its share
        of their nodes of that part; its uncertainty is the dev-score noise over the square root of that
        total share (a model never used gets the overall mean and a wide prior). The weight is
        P(this credit is the largest) under independent normals, computed on a fixed grid.
        """
        names = ctx.cost.pool.names
        values = np.array([s.value for s in scored])
        shares = np.array([_model_shares(s.graph, later) for s in scored])   # [G, K]
        n_eff = shares.sum(axis=0)
        noise = float(np.median([s.stderr for s in scored]))
        mean = np.where(n_eff > 0, shares.T @ values / np.maximum(n_eff, 1e-12), values.mean())
        sd = np.where(n_eff > 0, noise / np.sqrt(np.maximum(n_eff, 1e-12)), _UNSEEN_SD)
        w = _prob_best(mean, sd)
        return {n: round(float(x), 4) for n, x in zip(names, w)}


_UNSEEN_SD = 0.15
"""Prior spread of the credit of a model no evaluated graph used (accuracy units)."""


def _prob_best(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(X_k is the largest) for independent X_k ~ N(mean_k, sd_k), by quadrature on a grid."""
    from scipy.stats import norm
    grid = np.linspace((mean - 6 * sd).min(), (mean + 6 * sd).max(), 2001)
    pdf = norm.pdf(grid[None, :], mean[:, None], sd[:, None])              # [K, X]
    cdf = norm.cdf(grid[None, :], mean[:, None], sd[:, None])
    log_cdf = np.log(np.maximum(cdf, 1e-300))
    others = np.exp(log_cdf.sum(axis=0)[None, :] - log_cdf)                 # prod over j != k
    p = np.trapezoid(pdf * others, grid, axis=1)
    p = np.maximum(p, 0.0)
    return p / p.sum()


def _model_shares(graph: CollaborationGraph, later: bool) -> np.ndarray:
    """Each model's share of the first-layer nodes, or of the later nodes (zeros if none)."""
    part = graph.active.copy()
    if later:
        part[0] = False
    else:
        part[1:] = False
    used = graph.model[part]
    return np.bincount(used, minlength=len(graph.model_names)) / max(used.size, 1)


def _fuser_share(graph: CollaborationGraph) -> float:
    later = graph.active.copy()
    later[0] = False
    return float((graph.role[later] == FUSER).mean()) if later.any() else 0.0


def _edge_density(graph: CollaborationGraph) -> float:
    widths = graph.layer_widths
    possible = sum(a * b for a, b in zip(widths, widths[1:]))
    return float(graph.edges.sum() / possible) if possible else 0.0


def _fmt_weights(weights: dict[str, float]) -> str:
    ranked = sorted(weights.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{n} {w:.2f}" for n, w in ranked if w >= 0.01)


def _scaling_text(scored: list[ScoredGraph], best: ScoredGraph) -> str:
    """Where scores peak per depth, and per first-layer width at the best graph's depth."""
    by_depth: dict[int, float] = {}
    for s in scored:
        by_depth[s.graph.depth] = max(by_depth.get(s.graph.depth, -math.inf), s.value)
    by_width: dict[int, float] = {}
    for s in scored:
        if s.graph.depth == best.graph.depth:
            w = s.structure[0]
            by_width[w] = max(by_width.get(w, -math.inf), s.value)
    depth_txt = ", ".join(f"d{d} {v:.3f}" for d, v in sorted(by_depth.items()))
    width_txt = ", ".join(f"w{w} {v:.3f}" for w, v in sorted(by_width.items()))
    peak = max(by_width, key=by_width.get)
    if peak < max(by_width):
        where = "inside the explored widths: scaling saturates past it"
    elif peak < best.graph.template[1]:
        where = "at the widest explored: try wider if the budget allows"
    else:
        where = "at the template's widest"
    return (f"Best by depth: {depth_txt}. At depth {best.graph.depth}, best by first-layer "
            f"width: {width_txt} (peak w{peak}, {where}).")


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


# ===================================================================== LLM agent
@dataclass
class BadReply:
    """One reply that could not be used, and why."""

    round: int
    error: str
    reply: str


class LLMAgent(Agent):
    """An agent played by an LLM behind any `LLMClient` (an OpenAI-compatible endpoint).

    Prompts are `AGENT_SYSTEM` with `AGENT_INIT_USER` / `AGENT_FEEDBACK_USER`; replies are
    parsed by `parse_feedback`. A reply that is malformed, truncated, out of range or prose,
    or a call that fails, is logged (``pytts.search``), counted in ``bad_replies`` (details in
    ``bad_reply_log``, last 50) and replaced by ``fallback``'s feedback for that step, with
    source ``"fallback"``: the search never stops for the agent.
    """

    def __init__(self, client: LLMClient, model: str, *, temperature: float = 0.2,
                 max_tokens: int = 1024, top_k: int = 20, seed: int = 0,
                 fallback: HeuristicAgent | None = None) -> None:
        self.client = client
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.top_k = top_k
        self.seed = seed
        self.fallback = fallback or HeuristicAgent()
        self.n_calls = 0
        self.bad_replies = 0
        self.bad_reply_log: list[BadReply] = []

    async def initialize(self, ctx: AgentContext) -> Feedback:
        return await self._ask(ctx, AGENT_INIT_USER, self.fallback.initial_feedback)

    async def feedback(self, ctx: AgentContext) -> Feedback:
        return await self._ask(ctx, AGENT_FEEDBACK_USER, self.fallback.round_feedback)

    async def _ask(self, ctx: AgentContext, user_template: str, fallback) -> Feedback:
        messages = [{"role": "system", "content": AGENT_SYSTEM},
                    {"role": "user", "content": user_template.format(
                        round=ctx.round, context=render_context(ctx.to_json(self.top_k)))}]
        self.n_calls += 1
        reply = ""
        try:
            completions = await self.client.complete(
                self.model, messages, n=1, temperature=self.temperature,
                max_tokens=self.max_tokens, seed=self.seed + ctx.round)
            if not completions:
                raise AgentReplyError("the endpoint returned no completion")
            reply = completions[0].text
            text, update = parse_feedback(reply, ctx)
            return Feedback(text, update, "llm")
        except (AgentReplyError, LLMError) as exc:
            self.bad_replies += 1
            self.bad_reply_log = (self.bad_reply_log + [BadReply(ctx.round, str(exc),
                                                                 reply[:500])])[-50:]
            log.warning("agent reply %d unusable (round %d): %s; using the heuristic update",
                        self.bad_replies, ctx.round, exc)
            fb = fallback(ctx)
            return Feedback(fb.text, fb.update, "fallback", error=str(exc))

    def state_dict(self) -> dict[str, Any]:
        return {"n_calls": self.n_calls, "bad_replies": self.bad_replies,
                "bad_reply_log": [asdict(b) for b in self.bad_reply_log]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_calls = int(state["n_calls"])
        self.bad_replies = int(state["bad_replies"])
        self.bad_reply_log = [BadReply(**b) for b in state["bad_reply_log"]]


__all__ = ["AGENT_FEEDBACK_USER", "AGENT_INIT_USER", "AGENT_SYSTEM", "Agent", "AgentContext",
           "BadReply", "COMPACT_FORMAT", "Feedback", "HeuristicAgent", "LLMAgent",
           "OPTIMIZER_SYSTEM", "OPTIMIZER_USER", "ScoredGraph", "Update", "describe_compact",
           "extract_json_object", "graph_from_compact", "graph_to_compact", "parse_feedback",
           "read_context", "region_min_flops", "render_context"]
