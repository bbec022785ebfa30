"""Agent-REINFORCE (arXiv 2511.00086): REINFORCE's *sample -> gradient -> update* loop with an
agent's feedback in place of the gradient, on a probabilistic graph, under a trust region.

Loop (docs/method.md, "The loop"):

1. **Initialize** (insight 1): one pilot per model - the widest single-layer graph of that model
   that fits the budget (budget-matched self-consistency, so "several calls of a small model vs
   one of a big one" is measured directly). The agent turns the pilot scores into a preference
   for *first answers* only (pilots say nothing of who refines or fuses best, nor of depth), and
   the trust region bounds this first move away from the uniform distribution. Then one round
   of *role probes*: the best pilot's model answers once and it or the runner-up's takes a
   second step, as refiner or fuser (`probe_graphs`), so the first search step starts from
   measured multi-layer graphs.
2. **Sample** a round of ``round_size`` new candidates within the budget. A pool of structural
   moves of the best few graphs (add a refinement step or fusers, hand a role to another model,
   add or drop a branch or a step, each fitted to the budget), local moves of the best graph
   and samples of the probabilistic graph is ranked by a surrogate of accuracy (a Gaussian
   process over generic TTS descriptors, `pytts.search.surrogate`): the first pick maximises
   expected improvement, the others are Thompson-style draws (docs/method.md, "Candidates").
   Without the surrogate: ``n_local`` local moves of the best graph, then samples.
3. **Evaluate** (by the caller: ask/tell; `run_search` races candidates for every searcher).
4. **Feedback**: the agent reads every scored graph and writes a textual gradient and a
   structured `Update` (anchor graph or target region, first-answer and later-step model mixes,
   fuser share, edge density, step size).
5. **Update** (insights 2 and 3): `move_toward` mixes each distribution toward the update's
   target with the step size - depth and the widths *given that depth* together - optionally
   plus a REINFORCE step on the round (``reinforce_lr``), then `TrustRegion` bounds the move.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.special import expit, logit

from ..errors import BudgetError
from ..evaluate import EvalResult
from ..graph import ASSISTANT, FUSER, CollaborationGraph, GraphBatch
from ..logspace import log_softmax, softmax
from ..probgraph import ProbGraph
from .agent import Agent, Feedback, HeuristicAgent
from .base import Searcher
from .history import TrialRecord
from .llm_io import AgentContext, Update, scored_graphs
from .moves import neighbours, structural_moves
from .surrogate import GraphSurrogate, Observation, expected_improvement, features_of

log = logging.getLogger("pytts.search")


class TrustRegion:
    """Bounds one update so that one noisy round cannot collapse the distribution.

    Every categorical distribution of the probabilistic graph (the depth; the widths of each
    layer given each depth; each slot's model and role) and every edge's Bernoulli is a *row*.
    A row moves along the straight logit path from old to proposed only as far as
    ``KL(new || old) <= max_kl`` nats (the KL grows monotonically along that path, so bisection
    finds the stopping point). Then each row is mixed with its uniform distribution by
    ``floor`` (edges: pulled into ``[floor/2, 1 - floor/2]``), a standing exploration floor.
    """

    def __init__(self, max_kl: float = 0.3, floor: float = 0.05) -> None:
        if not max_kl > 0 or not 0 <= floor < 1:
            raise ValueError("need max_kl > 0 and 0 <= floor < 1")
        self.max_kl = float(max_kl)
        self.floor = float(floor)

    def apply(self, old: ProbGraph, proposed: ProbGraph) -> tuple[ProbGraph, dict[str, float]]:
        """The bounded new distribution and, per logit array, the largest row KL it moved."""
        arrays: list[np.ndarray] = []
        kls: dict[str, float] = {}
        for name, a, b in zip(("depth", "width", "model", "role"), old.logit_arrays()[:4],
                              proposed.logit_arrays()[:4]):
            moved, kl = self._project(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))
            p = (1 - self.floor) * softmax(moved, axis=-1) + self.floor / a.shape[-1]
            arrays.append(np.log(p).reshape(a.shape))
            kls[name] = float(kl.max()) if kl.size else 0.0
        e_old, e_new = old.edge_logits, proposed.edge_logits
        zero = np.zeros(e_old.size)
        moved, kl = self._project(np.stack([zero, e_old.ravel()], axis=-1),
                                  np.stack([zero, e_new.ravel()], axis=-1))
        p = (1 - self.floor) * expit(moved[:, 1] - moved[:, 0]) + self.floor / 2
        arrays.append(logit(p).reshape(e_old.shape))
        kls["edge"] = float(kl.max()) if kl.size else 0.0
        return ProbGraph.from_arrays(arrays, old.model_names), kls

    def _project(self, old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``old + t (new - old)`` (log-normalised) with the largest ``t`` in [0, 1]
        whose KL to ``old`` is within ``max_kl``; also each row's KL."""
        lo, ln = log_softmax(old, axis=-1), log_softmax(new, axis=-1)
        delta = ln - lo

        def kl_at(t: np.ndarray) -> np.ndarray:
            lt = log_softmax(lo + t[:, None] * delta, axis=-1)
            return (np.exp(lt) * (lt - lo)).sum(axis=-1)

        low, high = np.zeros(len(lo)), np.ones(len(lo))
        inside = kl_at(high) <= self.max_kl
        low[inside] = 1.0
        for _ in range(40):
            mid = 0.5 * (low + high)
            ok = kl_at(mid) <= self.max_kl
            low = np.where(ok & ~inside, mid, low)
            high = np.where(ok | inside, high, mid)
        t = low
        return log_softmax(lo + t[:, None] * delta, axis=-1), kl_at(t)

    def to_dict(self) -> dict[str, float]:
        return {"max_kl": self.max_kl, "floor": self.floor}


def move_toward(pg: ProbGraph, update: Update, anchor: CollaborationGraph | None) -> ProbGraph:
    """The distribution ``update`` asks for: each touched row mixed toward its target by
    ``update.step_size`` (in probability space), before the trust region.

    Targets: the region is ``(update.depth, update.widths)`` or else the anchor's; the depth row
    moves to that depth and, jointly, the width rows *of that depth* to its widths (insight 3:
    the widths other depths prefer are left alone). A slot the anchor uses moves toward half
    the anchor's model and half ``model_weights`` (all of it to whichever is given); other slots
    toward ``model_weights``. Roles and edges follow the anchor where it has nodes, else
    ``fuser_prob`` / ``edge_density``.
    """
    a = float(np.clip(update.step_size, 0.0, 1.0))
    d_max, w_max = pg.depth_max, pg.width_max
    k = pg.n_models
    depth_p, width_p = pg.depth_probs(), pg.width_probs()
    model_p, role_p, edge_p = pg.model_probs(), softmax(pg.role_logits, axis=-1), pg.edge_probs()

    def mix(p: np.ndarray, target: np.ndarray | float) -> np.ndarray:
        return (1 - a) * p + a * target

    widths = update.widths if update.widths is not None else (
        list(anchor.layer_widths) if anchor is not None and update.depth is None else None)
    if widths is not None:
        d = len(widths)
        depth_p = mix(depth_p, np.eye(d_max)[d - 1])
        for l, w in enumerate(widths):
            width_p[d - 1, l] = mix(width_p[d - 1, l], np.eye(w_max)[w - 1])
    elif update.depth is not None:
        depth_p = mix(depth_p, np.eye(d_max)[update.depth - 1])

    def weights(given: dict[str, float] | None) -> np.ndarray | None:
        if given is None:
            return None
        q = np.array([given.get(n, 0.0) for n in pg.model_names], dtype=np.float64)
        return q / q.sum()

    # First answers and later steps (refinements, fusions) get their own model mix: a model
    # that answers best need not refine or fuse best.
    first_q, later_q = weights(update.model_weights), weights(update.later_model_weights)
    active = anchor.active if anchor is not None else np.zeros((d_max, w_max), bool)
    for l in range(d_max):
        mix_q = first_q if l == 0 else later_q
        for i in range(w_max):
            target = None
            if active[l, i]:
                assert anchor is not None  # without an anchor no slot is active
                own = np.eye(k)[anchor.model[l, i]]
                target = own if mix_q is None else 0.5 * own + 0.5 * mix_q
            elif mix_q is not None:
                target = mix_q
            if target is not None:
                model_p[l, i] = mix(model_p[l, i], target)
            if l == 0:
                continue
            if active[l, i]:
                assert anchor is not None
                fuser = float(anchor.role[l, i] == FUSER)
                if update.fuser_prob is not None:
                    fuser = 0.5 * fuser + 0.5 * update.fuser_prob
            elif update.fuser_prob is not None:
                fuser = update.fuser_prob
            else:
                continue
            role_p[l, i, :2] = mix(role_p[l, i, :2], np.array([1 - fuser, fuser]))
    for l in range(d_max - 1):
        for i in range(w_max):
            for j in range(w_max):
                if active[l, i] and active[l + 1, j]:
                    assert anchor is not None
                    edge_p[l, i, j] = mix(edge_p[l, i, j], float(anchor.edges[l, i, j]))
                elif update.edge_density is not None:
                    edge_p[l, i, j] = mix(edge_p[l, i, j], update.edge_density)
    tiny = 1e-12
    edge_p = np.clip(edge_p, tiny, 1 - tiny)
    return ProbGraph(np.log(depth_p + tiny), np.log(width_p + tiny), np.log(model_p + tiny),
                     np.log(role_p + tiny), logit(edge_p), model_names=pg.model_names)


def _shape_log_prob(pg: ProbGraph, graphs: list[CollaborationGraph]) -> np.ndarray:
    """log P(depth, layer widths) of each graph under ``pg``."""
    depth_lp = log_softmax(pg.depth_logits)
    width_lp = log_softmax(pg.width_logits, axis=-1)
    out = np.empty(len(graphs))
    for b, g in enumerate(graphs):
        d = g.depth
        out[b] = depth_lp[d - 1] + sum(width_lp[d - 1, l, w - 1]
                                       for l, w in enumerate(g.layer_widths))
    return out


def pilot_graphs(searcher: Searcher) -> list[CollaborationGraph]:
    """Per model (pool order), the widest one-layer graph of that model within the budget;
    models whose single call does not fit get none."""
    d_max, w_max = searcher.template
    out = []
    for m in range(len(searcher.model_names)):
        candidates = [CollaborationGraph.layered([[m] * w], searcher.model_names,
                                                 template=searcher.template)
                      for w in range(1, w_max + 1)]
        fits = np.flatnonzero(searcher.feasible(candidates))
        if fits.size:
            out.append(candidates[int(fits.max())])
    return out


def probe_graphs(searcher: Searcher) -> list[CollaborationGraph]:
    """The role probes that follow the pilots: a strong model answers once, then that model or
    the runner-up takes a second step, as a refiner or as a fuser (two-node chains, those that
    fit the budget and are new).

    The first answerer is the best pilot's model whose answer can be followed by a second step
    of the same model within the budget (on a tight budget the best model's single call may
    leave no room for one); the second steps are the two best pilots' models that fit after it.
    When that first answerer is not the best pilot's model, the best model also takes the second
    step after the best-ranked model it fits after (two more chains): on a tight budget a cheap
    first answer read by the strongest model can be the best graph there is.
    Pilots rank models as first answerers only; these chains measure, before any search step
    relies on it, whether a second step helps at all and whether the strongest models refine
    or fuse better (docs/method.md, "Role probes").
    """
    ranked: list[int] = []
    for r in sorted(searcher.history, key=lambda r: (-r.value, r.number)):
        model = r.graph.vote_model
        if model is not None and model not in ranked:
            ranked.append(model)

    def chains(first: int, second: int) -> list[CollaborationGraph]:
        return [CollaborationGraph.layered([[first], [second]], searcher.model_names,
                                           roles=[[ASSISTANT], [role]],
                                           template=searcher.template)
                for role in (ASSISTANT, FUSER)]

    def fits(first: int, second: int) -> bool:
        return bool(searcher.feasible(chains(first, second)[:1])[0])

    for first in ranked:
        followers = [m for m in ranked if fits(first, m)]
        if first not in followers:
            continue
        probes = [g for second in followers[:2] for g in chains(first, second)]
        best = ranked[0]
        if first != best:  # the best model cannot follow itself: let it follow another
            lead = next((m for m in ranked[1:] if fits(m, best)), None)
            if lead is not None:
                probes += chains(lead, best)
        unique = {g.canonical_key(): g for g in probes}  # the best model may be a follower
        return [g for g, ok in zip(unique.values(), searcher.feasible(list(unique.values())))
                if ok and not searcher.seen(g)]
    return []


class AgentReinforce(Searcher):
    """The paper's searcher: see the module docstring for the loop.

    ``agent`` is a `HeuristicAgent` (default) or an `LLMAgent`. ``round_size`` candidates are
    evaluated between feedback steps, ``n_local`` of them local moves of the best graph so far.
    ``trust`` bounds each update (`TrustRegion`); ``reinforce_lr`` > 0 adds a REINFORCE step
    (advantages against a moving-average baseline, one batched ``grad_log_prob`` call) to the
    agent's move before the trust region. ``pilots=False`` skips the initialisation pilots
    (the distribution then starts uniform and the first feedback comes after the first round);
    ``probes=False`` skips the role probes that follow the pilots.

    Every feedback (text, structured update, source, realised KL per distribution) is kept in
    ``feedback_log`` (the searcher's journal) and its text on the history record of the tell
    that closed its round.
    """

    name = "agent-reinforce"

    def __init__(self, *args: Any, agent: Agent | None = None, round_size: int = 4,
                 n_local: int = 2, trust: TrustRegion | None = None,
                 reinforce_lr: float = 0.0, pilots: bool = True,
                 baseline_decay: float = 0.7, surrogate: bool = True, moves: bool = True,
                 feedback: bool = True, trust_region: bool = True,
                 n_samples: int = 64, probes: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if round_size < 1 or not 0 <= n_local <= round_size or reinforce_lr < 0 or n_samples < 0:
            raise ValueError("need round_size >= 1, 0 <= n_local <= round_size, "
                             "reinforce_lr >= 0 and n_samples >= 0")
        self.agent: Agent = agent if agent is not None else HeuristicAgent()
        self.round_size = int(round_size)
        self.n_local = int(n_local)
        self.trust = trust or TrustRegion()
        if not trust_region:
            self.trust = TrustRegion(max_kl=1e6, floor=self.trust.floor)
        self.reinforce_lr = float(reinforce_lr)
        self.use_pilots = bool(pilots)
        self.use_probes = bool(probes)
        self.use_surrogate = bool(surrogate)
        self.use_moves = bool(moves)
        self.use_feedback = bool(feedback)
        self.n_samples = int(n_samples)
        self.baseline_decay = float(baseline_decay)
        self._uniform = ProbGraph.uniform(*self.template, self.model_names)
        self.probgraph = self._uniform
        self.baseline: float | None = None
        self.n_rounds = 0
        self._queue: list[CollaborationGraph] = []
        self._rounds: list[dict[str, Any]] = []
        # a graph's feasible moves depend only on it (the budget is fixed), and the best few
        # graphs stay the parents for many rounds: derived, so not saved with the state
        self._moves_of: dict[str, list[CollaborationGraph]] = {}
        self._neighbours_of: dict[str, list[CollaborationGraph]] = {}

    @property
    def feedback_log(self) -> list[dict[str, Any]]:
        """One entry per closed round, oldest first: round, kind, text, update, source, error
        and the realised KL per distribution."""
        return self.journal

    @property
    def bad_replies(self) -> int:
        """Agent replies that could not be used (0 for the heuristic agent)."""
        return self.agent.bad_replies

    # ------------------------------------------------------------- sample
    async def _propose(self, n: int) -> list[CollaborationGraph]:
        out: list[CollaborationGraph] = []
        while len(out) < n:
            if not self._queue:
                if out and self._waits_for_pilots():
                    break  # the probe round is planned from the pilots' scores: ask again
                # graphs taken in this call are not pending yet: keep the new round off them
                self._plan_round({g.canonical_key() for g in out})
            out.append(self._queue.pop(0))
        return out

    def _plan_round(self, exclude: set[str]) -> None:
        kind = "search"
        graphs: list[CollaborationGraph] = []
        if self.n_rounds == 0 and self.use_pilots:
            kind = "pilot"
            graphs = [g for g in pilot_graphs(self)
                      if not self.seen(g) and g.canonical_key() not in exclude]
        elif self._probes_next():
            kind = "probe"
            graphs = [g for g in probe_graphs(self) if g.canonical_key() not in exclude]
        if not graphs:  # also when every pilot was seen already (a warm history)
            kind = "search"
            graphs = self._candidates(self.round_size, exclude)
        self._rounds.append({"round": self.n_rounds, "kind": kind,
                             "keys": [g.canonical_key() for g in graphs], "values": {}})
        self.n_rounds += 1
        self._queue.extend(graphs)

    def _probes_next(self) -> bool:
        """Whether the next round to plan is the role probes' (the one after the pilots)."""
        return self.n_rounds == 1 and self.use_pilots and self.use_probes

    def _waits_for_pilots(self) -> bool:
        """Whether the next round is the probe round and a pilot is still being evaluated."""
        return (self._probes_next() and bool(self._rounds)
                and self._rounds[0]["kind"] == "pilot")

    def _candidates(self, n: int, exclude: set[str]) -> list[CollaborationGraph]:
        """The round's ``n`` new graphs.

        With the surrogate: a pool of structural moves of the best few graphs, local moves of
        the best one and samples of the distribution is ranked by expected improvement over
        the best posterior mean, taken greedily with each pick added to the surrogate at its
        predicted value (so one round spreads over several ideas). Without it (or before two
        graphs are known): ``n_local`` local moves of the best graph, then samples of the
        distribution. Either way, when those run out of new graphs: local moves of the
        next-best graphs, then uniform samples; seen graphs only as a last resort."""
        queued = {g.canonical_key() for g in self._queue} | exclude
        ranked = self._ranked_parents()
        out: list[CollaborationGraph] = []
        if self.use_surrogate and len(ranked) >= 2:
            out = self._by_surrogate(n, queued)
        else:
            n_local = min(self.n_local, n) if self.use_moves else 0
            out = self._local_moves(ranked[:1], n_local, queued)
        fillers = (lambda k, ex: self._sample(self.probgraph, k, ex),
                   lambda k, ex: self._local_moves(ranked[1:], k, ex) if self.use_moves else [],
                   lambda k, ex: self._sample(self._uniform, k, ex))
        for more in fillers:
            if len(out) < n:
                out += more(n - len(out), queued | {g.canonical_key() for g in out})
        if len(out) < n:
            out += self.sample_unseen(self._uniform, n - len(out), exclude=queued)
        return out

    def _observations(self) -> list[Observation]:
        out = []
        for r in self.history:
            if not r.reused:
                out.append(Observation(r.graph, r.value, r.result.n_questions))
        return out

    def _by_surrogate(self, n: int, exclude: set[str]) -> list[CollaborationGraph]:
        observations = self._observations()
        # the observations' features are kept: the kriging-believer loop below refits on them
        believed_x = features_of([o.graph for o in observations])
        believed_y = np.array([o.accuracy for o in observations])
        believed_n = np.array([o.n for o in observations])
        surrogate = GraphSurrogate().fit_features(believed_x, believed_y, believed_n)
        told: dict[str, CollaborationGraph] = {}
        for o in observations:
            told.setdefault(o.graph.canonical_key(), o.graph)
        told_graphs = list(told.values())
        mu_told, _ = surrogate.predict(told_graphs)
        order = np.argsort(-mu_told, kind="stable")
        parents = [told_graphs[i] for i in order[:3]]
        taken = self.seen_keys() | exclude
        pool: dict[str, CollaborationGraph] = {}

        def offer(graphs: list[CollaborationGraph]) -> None:
            for g in graphs:
                key = g.canonical_key()
                if key not in taken:
                    pool.setdefault(key, g)

        if self.use_moves:
            for parent in parents:
                offer(self._structural_moves(parent))
            offer(self._feasible_neighbours(parents[0]))
        if self.n_samples:
            offer(self._sample(self.probgraph, self.n_samples, taken))
        if not pool:
            return []
        graphs = list(pool.values())
        pool_x = features_of(graphs)
        best = float(mu_told.max())
        picked: list[CollaborationGraph] = []
        for turn in range(min(n, len(graphs))):
            mu, sd = surrogate.predict(pool_x)
            if turn == 0:
                score = expected_improvement(mu, sd, best)
            else:
                # later picks draw from the posterior (Thompson-style): a round spreads over
                # ideas the surrogate cannot yet tell apart, and seeds give different searches
                score = mu + sd * self.rng.standard_normal(len(graphs))
            i = int(np.argmax(score))
            picked.append(graphs.pop(i))
            if not graphs:
                break
            # kriging believer: pretend the pick came out as predicted, so the next pick
            # goes where the surrogate is still unsure
            believed_x = np.vstack([believed_x, pool_x[i]])
            believed_y = np.append(believed_y, mu[i])
            believed_n = np.append(believed_n, 10 ** 6)
            pool_x = np.delete(pool_x, i, axis=0)
            surrogate = GraphSurrogate().fit_features(believed_x, believed_y, believed_n)
        return picked

    def _structural_moves(self, parent: CollaborationGraph) -> list[CollaborationGraph]:
        """`structural_moves` of ``parent`` within this search's budget (computed once)."""
        key = parent.canonical_key()
        if key not in self._moves_of:
            self._moves_of[key] = structural_moves(parent, self.feasible)
        return self._moves_of[key]

    def _feasible_neighbours(self, parent: CollaborationGraph) -> list[CollaborationGraph]:
        """The `neighbours` of ``parent`` within this search's budget (computed once)."""
        key = parent.canonical_key()
        if key not in self._neighbours_of:
            local = neighbours(parent)
            self._neighbours_of[key] = [g for g, ok in zip(local, self.feasible(local)) if ok]
        return self._neighbours_of[key]

    def _sample(self, probgraph: ProbGraph, n: int, exclude: set[str]) -> list[CollaborationGraph]:
        try:
            return self.sample_unseen(probgraph, n, exclude=exclude, fill=False)
        except BudgetError:
            # The distribution drifted where little fits the budget; the caller falls back to
            # local moves and uniform samples, which always reach graphs that fit.
            log.info("agent-reinforce: budget-conditioned sampling failed; falling back")
            return []

    def _ranked_parents(self) -> list[CollaborationGraph]:
        """Distinct told graphs, best value first (earliest first on ties)."""
        firsts: dict[str, TrialRecord] = {}
        for r in self.history:
            firsts.setdefault(r.key, r)
        ranked = sorted(firsts.values(), key=lambda r: (-r.value, r.number))
        return [r.graph for r in ranked]

    def _local_moves(self, parents: list[CollaborationGraph], n: int,
                     exclude: set[str]) -> list[CollaborationGraph]:
        """Up to ``n`` new feasible neighbours of ``parents`` (best parent first).

        A parent's moves are taken alternately from its *shape* moves (a layer or a node more
        or less: probing the scaling limits, insight 2) and its *content* moves (same layer
        widths, another model, role or edge). Within each kind a move is drawn in proportion
        to its probability under the current distribution given its shape, so content follows
        the agent's latest beliefs while the distribution's current shape preference does not
        veto probing a neighbouring shape.
        """
        out: list[CollaborationGraph] = []
        taken = self.seen_keys() | exclude
        for parent in parents:
            if len(out) >= n:
                break
            moves = [g for g in self._feasible_neighbours(parent)
                     if g.canonical_key() not in taken]
            if not moves:
                continue
            logp = self.probgraph.log_prob(GraphBatch.from_graphs(moves)) - \
                _shape_log_prob(self.probgraph, moves)
            shape = np.array([g.layer_widths != parent.layer_widths for g in moves])
            groups = [list(np.flatnonzero(shape)), list(np.flatnonzero(~shape))]
            turn = 0
            while len(out) < n and any(groups):
                group = groups[turn % 2] or groups[(turn + 1) % 2]
                p = softmax(logp[group])
                i = group.pop(int(self.rng.choice(len(group), p=p)))
                out.append(moves[i])
                turn += 1
            taken |= {g.canonical_key() for g in out}
        return out

    # ------------------------------------------------------------- feedback and update
    async def _observe(self, graph: CollaborationGraph, result: EvalResult,
                       record: TrialRecord) -> None:
        for rnd in self._rounds:
            if record.key in rnd["keys"] and record.key not in rnd["values"]:
                rnd["values"][record.key] = record.value
                break
        texts = []
        while self._rounds and len(self._rounds[0]["values"]) == len(self._rounds[0]["keys"]):
            fb = await self._close_round(self._rounds.pop(0))
            texts.append(fb.text)
        if texts:
            record.feedback = "\n\n".join(texts)

    def _context(self, latest_keys: list[str], round_no: int) -> AgentContext:
        scored = scored_graphs(self.history)
        return AgentContext(self.template, self.budget, self.cost, self.objective,
                            list(scored.values()), [scored[k].id for k in latest_keys],
                            self.probgraph, round_no)

    async def _close_round(self, rnd: dict[str, Any]) -> Feedback:
        ctx = self._context(rnd["keys"], rnd["round"])
        if rnd["kind"] == "pilot":
            fb = await self.agent.initialize(ctx)
            base = self._uniform
        elif not self.use_feedback:
            # ablation: the distribution stays where the pilots put it
            return Feedback("feedback off", Update(step_size=0.0), "none")
        else:
            fb = await self.agent.feedback(ctx)
            base = self.probgraph
        anchor = ctx.by_id()[fb.update.anchor].graph if fb.update.anchor is not None else None
        proposed = move_toward(base, fb.update, anchor)
        values = np.array([rnd["values"][k] for k in rnd["keys"]])
        if self.reinforce_lr > 0 and rnd["kind"] == "search":
            baseline = float(values.mean()) if self.baseline is None else self.baseline
            by_id = ctx.by_id()
            graphs = [by_id[sid].graph for sid in ctx.latest]
            grad = base.grad_log_prob(graphs, (values - baseline) / len(graphs))
            proposed = proposed.step(grad, self.reinforce_lr)
        self.baseline = float(values.mean()) if self.baseline is None else (
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * float(values.mean()))
        self.probgraph, kls = self.trust.apply(base, proposed)
        self.journal.append({"round": rnd["round"], "kind": rnd["kind"], **fb.to_dict(),
                             "kl": kls})
        return fb

    # ------------------------------------------------------------- persistence
    def _extra_state(self) -> dict[str, Any]:
        return {"probgraph": self.probgraph.state_dict(), "baseline": self.baseline,
                "n_rounds": self.n_rounds, "queue": [g.to_dict() for g in self._queue],
                "rounds": self._rounds, "agent": self.agent.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.probgraph = ProbGraph.from_state_dict(state["probgraph"])
        self.baseline = state["baseline"]
        self.n_rounds = int(state["n_rounds"])
        self._queue = [self.graph_from_dict(g) for g in state["queue"]]
        self._rounds = [dict(r, values=dict(r["values"])) for r in state["rounds"]]
        self.agent.load_state_dict(state["agent"])
