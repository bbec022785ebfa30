"""LLMOptimizer: OPRO-style search, an LLM shown the scored history proposes new graphs as JSON.

Without an endpoint it is driven by `OfflineProposer`, a deterministic stand-in that plays the
LLM's part through the same prompt and reply path (it mutates the best graphs it is shown).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..cost import CostModel
from ..defaults import OPTIMIZER_MAX_TOKENS, OPTIMIZER_TEMPERATURE
from ..errors import AgentReplyError, LLMError
from ..graph import CollaborationGraph
from ..llm.base import Completion, LLMClient, Message
from ..pool import ModelPool, ModelSpec
from ..probgraph import ProbGraph
from .base import Searcher
from .channel import LLMChannel, Prompt, PromptVariant
from .llm_io import (
    OPTIMIZER_SYSTEM,
    OPTIMIZER_SYSTEM_SUMMARY,
    OPTIMIZER_USER,
    AgentContext,
    ContextView,
    extract_json_object,
    graph_from_compact,
    graph_to_compact,
    optimizer_reply_schema,
    read_context,
    render_context,
    scored_graphs,
)
from .moves import neighbours

log = logging.getLogger("pytts.search")

OFFLINE_MODEL = "offline-proposer"


class LLMOptimizer(Searcher):
    """OPRO (Yang et al., 2023) on collaboration graphs.

    Each ``ask(n)`` sends one request: `OPTIMIZER_SYSTEM` and `OPTIMIZER_USER` with the pool,
    budget, cost formula and the best ``top_k`` scored graphs (worst first), asking for
    ``n + extra`` graphs in compact JSON. The request goes through an `LLMChannel`: the
    context shrinks (down to one-line graph summaries under `OPTIMIZER_SYSTEM_SUMMARY`) until
    it fits the model's context window (``context_tokens``, else what
    the server reports), and the reply is constrained to `optimizer_reply_schema` where the
    server can. Proposals are taken in reply order when they parse, fit the template and the
    budget, and are new; the rest of the ``n`` are random feasible graphs (uniform
    probabilistic graph, unseen preferred). Counters: ``n_requests``, ``n_bad_replies`` (no
    usable JSON or a failed call), ``n_context_overflows``, ``n_invalid``, ``n_infeasible``,
    ``n_duplicates``, ``n_random`` (replacements), ``n_from_llm`` (proposals used).

    ``client=None`` uses `OfflineProposer` (``offline`` is then True): a deterministic
    stand-in, not an LLM, so results with it say nothing about LLM optimizers.
    """

    name = "llm-optimizer"

    def __init__(self, *args: Any, client: LLMClient | None = None, model: str = OFFLINE_MODEL,
                 top_k: int = 20, extra: int = 2, temperature: float = OPTIMIZER_TEMPERATURE,
                 max_tokens: int = OPTIMIZER_MAX_TOKENS, context_tokens: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offline = client is None
        self.client: LLMClient = client if client is not None else OfflineProposer()
        self.model = model
        self.top_k = int(top_k)
        self.extra = int(extra)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.channel = LLMChannel(self.client, model, context_tokens=context_tokens)
        self.counts = dict.fromkeys(_COUNTS, 0)
        self._uniform = ProbGraph.uniform(*self.template, self.model_names)

    def _context(self) -> AgentContext:
        scored = scored_graphs(self.history)
        return AgentContext(self.template, self.budget, self.cost, self.objective,
                            list(scored.values()), [], None, len(self.history))

    def prompt_variants(self, ctx: AgentContext, want: int) -> list[PromptVariant]:
        """The prompts of one request for ``want`` graphs given the scored history ``ctx``,
        most detailed first, one per `AgentContext.views`; the summary views take the short
        `OPTIMIZER_SYSTEM_SUMMARY`."""
        schema = optimizer_reply_schema(self.model_names, self.template, want)

        def build(view: ContextView) -> Prompt:
            data = {**ctx.to_json(*view), "n_requested": want}
            user = OPTIMIZER_USER.format(n=want, context=render_context(data))
            system = OPTIMIZER_SYSTEM_SUMMARY if view.summary else OPTIMIZER_SYSTEM
            return Prompt([{"role": "system", "content": system},
                           {"role": "user", "content": user}], schema, len(data["evaluated"]))

        return [functools.partial(build, view) for view in AgentContext.views(self.top_k)]

    async def _propose(self, n: int) -> list[CollaborationGraph]:
        seed = self._next_seed() % 2 ** 31
        self.counts["n_requests"] += 1
        proposals: list[Any] = []
        try:
            reply, _ = await self.channel.ask(self.prompt_variants(self._context(),
                                                                   n + self.extra),
                                              temperature=self.temperature,
                                              max_tokens=self.max_tokens, seed=seed)
            data = extract_json_object(reply)
            if not isinstance(data.get("graphs"), list):
                raise AgentReplyError('the reply has no list "graphs"')
            proposals = data["graphs"]
        except (AgentReplyError, LLMError) as exc:
            self.counts["n_bad_replies"] += 1
            log.warning("llm-optimizer: unusable reply (%s); proposing random graphs", exc)
        finally:
            self.counts["n_context_overflows"] = self.channel.overflows
        out: list[CollaborationGraph] = []
        taken = self.seen_keys()
        for item in proposals:
            if len(out) == n:
                break
            try:
                graph = graph_from_compact(item, self.model_names, self.template)
            except AgentReplyError:
                self.counts["n_invalid"] += 1
                continue
            if graph.canonical_key() in taken:
                self.counts["n_duplicates"] += 1
            elif not self.feasible([graph])[0]:
                self.counts["n_infeasible"] += 1
            else:
                out.append(graph)
                taken.add(graph.canonical_key())
        self.counts["n_from_llm"] += len(out)
        if len(out) < n:
            self.counts["n_random"] += n - len(out)
            out += self.sample_unseen(self._uniform, n - len(out), exclude=taken)
        return out

    def reply_stats(self) -> dict[str, Any]:
        """`AsksLLM`: requests, replies with no usable proposal list, and what the channel
        learned (context window, token counting, schema form, overflows)."""
        return {"model": self.model, "requests": self.counts["n_requests"],
                "fell_back": self.counts["n_bad_replies"], **self.channel.summary()}

    def _extra_state(self) -> dict[str, Any]:
        return {"counts": dict(self.counts)}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        # counters added since a checkpoint was written start at 0
        self.counts = {**dict.fromkeys(_COUNTS, 0),
                       **{k: int(v) for k, v in state["counts"].items()}}
        self.channel.overflows = self.counts["n_context_overflows"]


_COUNTS = ("n_requests", "n_bad_replies", "n_context_overflows", "n_invalid", "n_infeasible",
           "n_duplicates", "n_random", "n_from_llm")


class OfflineProposer:
    """A deterministic `LLMClient` stand-in for `LLMOptimizer` (no LLM involved).

    It reads the context of the optimizer's prompt and answers in the optimizer's reply format:
    each requested graph is one local move (`neighbours`) of one of the three best graphs
    shown, chosen by the request's seed, kept within the budget using the cost formula of the
    prompt. With nothing scored yet it proposes single calls of the pool's models.
    """

    async def complete(self, model: str, messages: Sequence[Message], *, n: int = 1,
                       temperature: float = OPTIMIZER_TEMPERATURE,
                       max_tokens: int = OPTIMIZER_MAX_TOKENS,
                       seed: int | None = None, stop: Sequence[str] | None = None,
                       json_schema: Mapping[str, Any] | None = None) -> list[Completion]:
        # Its replies follow the optimizer's schema by construction; json_schema adds nothing.
        ctx = read_context(messages[-1]["content"])
        want = int(ctx["n_requested"])
        rng = np.random.default_rng(seed)
        text = json.dumps({"graphs": self._proposals(ctx, want, rng)})
        return [Completion(text=text, prompt_tokens=0, completion_tokens=0, latency_s=0.0,
                           model=model, finish_reason="stop")]

    async def aclose(self) -> None:
        pass

    @staticmethod
    def _proposals(ctx: dict[str, Any], want: int, rng: np.random.Generator) -> list[dict]:
        names = [m["model"] for m in ctx["pool"]]
        template = (ctx["template"]["max_depth"], ctx["template"]["max_width"])
        scored = ctx["evaluated"]
        if not scored:
            return [{"layers": [[{"model": names[int(i) % len(names)]}]]}
                    for i in rng.permutation(max(want, len(names)))[:want]]
        pool = ModelPool([ModelSpec(m["model"], m["family"], m["params_b"],
                                    out_tokens=m["out_tokens"]) for m in ctx["pool"]])
        cost = CostModel(pool, ctx["prompt_tokens"], ctx["template_tokens"])
        shown = {json.dumps(s["graph"], sort_keys=True) for s in scored}
        parents = [graph_from_compact(s["graph"], names, template) for s in scored[-3:]]
        out: list[dict] = []
        for _ in range(want):
            parent = parents[int(rng.integers(len(parents)))]
            moves = neighbours(parent)
            for i in rng.permutation(len(moves)):
                g = moves[int(i)]
                compact = graph_to_compact(g)
                key = json.dumps(compact, sort_keys=True)
                if key not in shown and cost.graph_cost(g)[0] <= ctx["budget_flops"]:
                    shown.add(key)
                    out.append(compact)
                    break
        return out
