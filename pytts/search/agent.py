"""The agents of Agent-REINFORCE: an `Agent` reads scored candidate graphs and writes *feedback*,
a textual gradient (what to change and why) plus a structured `Update` that Agent-REINFORCE turns
into new probabilistic-graph parameters.

`HeuristicAgent` implements the paper's three insights as rules, offline; `LLMAgent` asks any
OpenAI-compatible LLM (prompts and reply parsing in `llm_io`) and falls back to the heuristic on
a bad reply.
"""

from __future__ import annotations

import functools
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from ..defaults import AGENT_MAX_TOKENS, AGENT_TEMPERATURE
from ..errors import AgentReplyError, LLMError
from ..graph import FUSER, CollaborationGraph
from ..llm.base import LLMClient
from .channel import LLMChannel, Prompt, PromptVariant
from .llm_io import (
    AGENT_FEEDBACK_USER,
    AGENT_INIT_USER,
    AGENT_SYSTEM,
    AGENT_SYSTEM_SUMMARY,
    AgentContext,
    ContextView,
    ScoredGraph,
    Update,
    agent_reply_schema,
    describe_compact,
    parse_feedback,
    render_context,
)

log = logging.getLogger("pytts.search")


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

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what `state_dict` saved (a stateless agent has nothing to restore)."""


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
        of their nodes of that part; its uncertainty is the dev-score noise over the square root
        of that total share (a model never used gets the overall mean and a wide prior). The
        weight is P(this credit is the largest) under independent normals, computed on a fixed grid.
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
    """P(X_k is the largest) for independent X_k ~ N(mean_k, sd_k), by quadrature on a grid.

    The normal pdf and cdf are written out as ``scipy.stats.norm`` computes them (the same
    floats), since importing scipy.stats costs more than half a second."""
    grid = np.linspace((mean - 6 * sd).min(), (mean + 6 * sd).max(), 2001)
    z = (grid[None, :] - mean[:, None]) / sd[:, None]                       # [K, X]
    pdf = np.exp(-z ** 2 / 2.0) / np.sqrt(2 * np.pi) / sd[:, None]
    cdf = ndtr(z)
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
    peak = max(by_width, key=lambda w: by_width[w])
    if peak < max(by_width):
        where = "inside the explored widths: scaling saturates past it"
    elif peak < best.graph.template[1]:
        where = "at the widest explored: try wider if the budget allows"
    else:
        where = "at the template's widest"
    return (f"Best by depth: {depth_txt}. At depth {best.graph.depth}, best by first-layer "
            f"width: {width_txt} (peak w{peak}, {where}).")



# ===================================================================== LLM agent
@dataclass
class BadReply:
    """One reply that could not be used, and why."""

    round: int
    error: str
    reply: str


class LLMAgent(Agent):
    """An agent played by an LLM behind any `LLMClient` (an OpenAI-compatible endpoint).

    Prompts are `AGENT_SYSTEM` with `AGENT_INIT_USER` / `AGENT_FEEDBACK_USER`, sent through an
    `LLMChannel`: the context shrinks (`AgentContext.views`, down to one-line graph summaries
    under `AGENT_SYSTEM_SUMMARY`) until the prompt fits the model's context window
    (``context_tokens``, else what the server reports) beside ``max_tokens`` for the reply
    (`reply_and_room`), and the reply is constrained to `agent_reply_schema` where the server
    can do that. Replies are parsed by `parse_feedback`. A reply that is malformed, truncated,
    out of range or prose, or a call that fails (a context overflow included), is logged
    (``pytts.search``), counted in ``bad_replies`` (details in ``bad_reply_log``, last 50) and
    replaced by ``fallback``'s feedback for that step, with source ``"fallback"``: the search
    never stops for the agent.
    """

    def __init__(self, client: LLMClient, model: str, *,
                 temperature: float = AGENT_TEMPERATURE, max_tokens: int = AGENT_MAX_TOKENS,
                 top_k: int = 20, seed: int = 0,
                 fallback: HeuristicAgent | None = None,
                 context_tokens: int | None = None) -> None:
        self.client = client
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.top_k = top_k
        self.seed = seed
        self.fallback = fallback or HeuristicAgent()
        self.channel = LLMChannel(client, model, context_tokens=context_tokens)
        self.n_calls = 0
        self.bad_replies = 0
        self.bad_reply_log: list[BadReply] = []

    @property
    def context_overflows(self) -> int:
        """Requests refused as too long for the context window, or that could not be fitted."""
        return self.channel.overflows

    async def initialize(self, ctx: AgentContext) -> Feedback:
        return await self._ask(ctx, True, self.fallback.initial_feedback)

    async def feedback(self, ctx: AgentContext) -> Feedback:
        return await self._ask(ctx, False, self.fallback.round_feedback)

    def prompt_variants(self, ctx: AgentContext, initial: bool = False) -> list[PromptVariant]:
        """The prompts of one request about ``ctx`` (the pilot round's when ``initial``), most
        detailed first, one per `AgentContext.views`; the summary views take the short
        `AGENT_SYSTEM_SUMMARY`."""
        user_template = AGENT_INIT_USER if initial else AGENT_FEEDBACK_USER

        def build(view: ContextView) -> Prompt:
            data = ctx.to_json(*view)
            shown = [entry["id"] for entry in data["evaluated"]]
            user = user_template.format(round=ctx.round, context=render_context(data))
            system = AGENT_SYSTEM_SUMMARY if view.summary else AGENT_SYSTEM
            return Prompt([{"role": "system", "content": system},
                           {"role": "user", "content": user}],
                          agent_reply_schema(ctx, shown), len(shown))

        return [functools.partial(build, view) for view in AgentContext.views(self.top_k)]

    async def _ask(self, ctx: AgentContext, initial: bool, fallback) -> Feedback:
        self.n_calls += 1
        reply = ""
        try:
            reply, _ = await self.channel.ask(self.prompt_variants(ctx, initial),
                                              temperature=self.temperature,
                                              max_tokens=self.max_tokens,
                                              seed=self.seed + ctx.round)
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

    def reply_stats(self) -> dict[str, Any]:
        """`AsksLLM`: replies asked for, how many fell back to the heuristic, and what the
        channel learned (context window, token counting, schema form, overflows)."""
        return {"model": self.model, "requests": self.n_calls, "fell_back": self.bad_replies,
                **self.channel.summary()}

    def state_dict(self) -> dict[str, Any]:
        return {"n_calls": self.n_calls, "bad_replies": self.bad_replies,
                "context_overflows": self.channel.overflows,
                "bad_reply_log": [asdict(b) for b in self.bad_reply_log]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_calls = int(state["n_calls"])
        self.bad_replies = int(state["bad_replies"])
        # checkpoints from before the channel kept no overflow count
        self.channel.overflows = int(state.get("context_overflows", 0))
        self.bad_reply_log = [BadReply(**b) for b in state["bad_reply_log"]]


__all__ = ["Agent", "BadReply", "Feedback", "HeuristicAgent", "LLMAgent", "Update"]
