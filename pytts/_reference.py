"""NumPy reference of every kernel of ``pytts._core``: same names, same signatures, same results.

This is the test oracle for the compiled kernels and the fallback when no compiler was present.
Inputs are trusted here (``pytts.kernels`` validates them once); shapes:
``depth_logits[D]``, ``width_logits[D, D, W]``, ``model_logits[D, W, K]``,
``role_logits[D, W, R]``, ``edge_logits[D-1, W, W]``; graphs ``model[B, D, W]`` int16,
``role[B, D, W]`` int8, ``edges[B, D-1, W, W]`` uint8; ``model_costs[K, 5]`` with the columns
of `pytts.constants.COST_COLUMNS` (flops_per_token, out_tokens, prefill_tps, decode_tps,
overhead_s).

Sampling semantics (the distribution a ProbGraph defines): depth ``d ~ Cat(softmax(depth))``;
for each layer ``l < d`` width ``w_l ~ Cat(softmax(width[d-1, l]))`` and the layer fills slots
``0..w_l-1``; each node draws its model, and each node after layer 0 its role (first-layer nodes
are assistants); each edge into an active node of layer ``l+1`` from an active node of layer
``l`` is an independent ``Bernoulli(sigmoid(edge[l, i, j]))``; a node that drew no predecessor
gets one chosen uniformly. ``log_prob`` is the exact log-probability of the resulting graph (a
one-predecessor column can arise from either path, and both are counted). The draws themselves,
and the stream of random words they read (`random_words`), are stated at `_draw_graph`: both
backends make them in that order from the same tables, so one seed gives the same graphs.

Floating-point sums over slots and predecessors run in slot order, as in the C++ loops, so that
costs (and therefore feasibility) agree bit for bit.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .constants import FNV_OFFSET, FNV_PRIME, MAX_DEPTH, MAX_MODELS, MAX_ROLES, MAX_WIDTH
from .logspace import log_softmax, sigmoid, softmax, softplus

# Exactly the names of pytts._core (a test checks it); the sampler's building blocks below
# (stream, tables) are shared with bench/numba_impl.py but are not part of the kernel API.
__all__ = ["FNV_OFFSET", "FNV_PRIME", "MAX_DEPTH", "MAX_MODELS", "MAX_ROLES", "MAX_WIDTH",
           "Sampler", "canonical_order", "extract_final_answer", "extract_number", "feasible",
           "grad_log_prob", "graph_cost", "intern_answers", "log_prob", "sample_graphs", "vote"]

_MASK64 = (1 << 64) - 1
_MASK63 = (1 << 63) - 1


# ---------------------------------------------------------------- graph structure
def _structure(model: np.ndarray, role: np.ndarray, edges: np.ndarray):
    """Per graph: validity under the sampling semantics, depth, layer widths, active slots."""
    b, d, w = model.shape
    active = model >= 0
    widths = active.sum(axis=2)                                   # [B, D]
    nonempty = widths > 0
    depth = np.where(nonempty.any(axis=1), d - np.argmax(nonempty[:, ::-1], axis=1), 0)
    valid = depth > 0
    valid &= (active == (np.arange(w)[None, None, :] < widths[:, :, None])).all(axis=(1, 2))
    below = np.arange(d)[None, :] < depth[:, None]
    valid &= (nonempty | ~below).all(axis=1)
    valid &= ~(active[:, 0] & (role[:, 0] != 0)).any(axis=1)
    if d > 1:
        e = edges.astype(bool)
        allowed = active[:, :-1, :, None] & active[:, 1:, None, :]
        valid &= ~(e & ~allowed).any(axis=(1, 2, 3))
        orphan = active[:, 1:, :] & ~e.any(axis=2)
        valid &= ~orphan.any(axis=(1, 2))
    return valid, depth, widths, active


# ---------------------------------------------------------------- cost
def graph_cost(model, role, edges, model_costs, base_prompt_tokens):
    """FLOPs and critical-path latency of each graph (see pytts.cost for the formulas)."""
    bsz, d, w = model.shape
    active = model >= 0
    idx = np.where(active, model, 0)
    flops_per_token, out, prefill, decode, overhead = (model_costs[idx, c] for c in range(5))
    flops = np.zeros(bsz)
    latency = np.zeros(bsz)
    finish_prev = np.zeros((bsz, w))
    for l in range(d):
        prompt = np.full((bsz, w), float(base_prompt_tokens))
        wait = np.zeros((bsz, w))
        if l > 0:
            pred = edges[:, l - 1].astype(bool) & active[:, l - 1, :, None] & active[:, l, None, :]
            for i in range(w):
                p = pred[:, i, :]
                prompt = np.where(p, prompt + out[:, l - 1, i, None], prompt)
                wait = np.where(p, np.maximum(wait, finish_prev[:, i, None]), wait)
        node_flops = flops_per_token[:, l] * (prompt + out[:, l])
        node_lat = overhead[:, l] + prompt / prefill[:, l] + out[:, l] / decode[:, l]
        finish = np.where(active[:, l], node_lat + wait, 0.0)
        for i in range(w):
            flops = np.where(active[:, l, i], flops + node_flops[:, i], flops)
        latency = np.maximum(latency, finish.max(axis=1))
        finish_prev = finish
    return flops, latency


def feasible(model, role, edges, model_costs, base_prompt_tokens, budget):
    """``flops <= budget`` for each graph."""
    return graph_cost(model, role, edges, model_costs, base_prompt_tokens)[0] <= budget


# ---------------------------------------------------------------- probabilities
def _single_pred_columns(x: np.ndarray, col_active: np.ndarray):
    """For edges ``x[B, W, W]`` between two layers: mask of one-predecessor columns, its source."""
    count = x.sum(axis=1)
    return col_active & (count == 1), np.argmax(x, axis=1)


def log_prob(depth_logits, width_logits, model_logits, role_logits, edge_logits,
             model, role, edges):
    """Exact log-probability of each graph under the ProbGraph; -inf where impossible."""
    bsz, d, w = model.shape
    valid, depth, widths, active = _structure(model, role, edges)
    dd = np.clip(depth - 1, 0, d - 1)
    logp = log_softmax(depth_logits)[dd]
    lsm_w = log_softmax(width_logits, axis=-1)
    layers = np.arange(d)
    below = layers[None, :] < depth[:, None]
    wterm = lsm_w[dd[:, None], layers[None, :], np.clip(widths - 1, 0, w - 1)]
    logp = logp + np.where(below, wterm, 0.0).sum(axis=1)
    slots = np.arange(w)
    idx = np.where(active, model, 0)
    mterm = log_softmax(model_logits, axis=-1)[layers[None, :, None], slots[None, None, :], idx]
    logp = logp + np.where(active, mterm, 0.0).sum(axis=(1, 2))
    if d > 1:
        ridx = np.where(active, role, 0)
        rterm = log_softmax(role_logits, axis=-1)[layers[None, :, None], slots[None, None, :], ridx]
        logp = logp + np.where(active[:, 1:], rterm[:, 1:], 0.0).sum(axis=(1, 2))
    for l in range(d - 1):
        a = edge_logits[l]
        mask = active[:, l, :, None] & active[:, l + 1, None, :]
        x = edges[:, l].astype(bool) & mask
        term = np.where(mask, np.where(x, a, 0.0) - softplus(a), 0.0).sum(axis=(1, 2))
        single, src = _single_pred_columns(x, active[:, l + 1])
        a_src = a[src, slots[None, :]]
        log_w = np.log(np.maximum(widths[:, l], 1))[:, None]
        extra = np.logaddexp(a_src, -log_w) - a_src
        logp = logp + term + np.where(single, extra, 0.0).sum(axis=1)
    return np.where(valid, logp, -np.inf)


def grad_log_prob(depth_logits, width_logits, model_logits, role_logits, edge_logits,
                  model, role, edges, weights):
    """``sum_b weights[b] * d log p(graph_b) / d logits`` for every logit array."""
    bsz, d, w = model.shape
    valid, depth, widths, active = _structure(model, role, edges)
    if not valid.all():
        bad = int(np.flatnonzero(~valid)[0])
        raise ValueError(f"graph {bad} has probability zero under this ProbGraph "
                         "(grad_log_prob needs possible graphs)")
    weights = np.asarray(weights, dtype=np.float64)
    layers = np.arange(d)

    g_depth = (np.bincount(depth - 1, weights=weights, minlength=d)
               - weights.sum() * softmax(depth_logits))

    g_width = np.zeros_like(width_logits)
    below = layers[None, :] < depth[:, None]
    bb, ll = np.nonzero(below)
    np.add.at(g_width, (depth[bb] - 1, ll, widths[bb, ll] - 1), weights[bb])
    mass = np.zeros((d, d))                      # [depth-1, layer]: weight of graphs using it
    np.add.at(mass, (depth[bb] - 1, ll), weights[bb])
    g_width -= mass[:, :, None] * softmax(width_logits, axis=-1)

    g_model = np.zeros_like(model_logits)
    bb, ll, ii = np.nonzero(active)
    np.add.at(g_model, (ll, ii, model[bb, ll, ii]), weights[bb])
    slot_mass = np.einsum("b,bli->li", weights, active.astype(np.float64))
    g_model -= slot_mass[:, :, None] * softmax(model_logits, axis=-1)

    g_role = np.zeros_like(role_logits)
    later = active.copy()
    later[:, 0] = False
    bb, ll, ii = np.nonzero(later)
    np.add.at(g_role, (ll, ii, role[bb, ll, ii]), weights[bb])
    slot_mass = np.einsum("b,bli->li", weights, later.astype(np.float64))
    g_role -= slot_mass[:, :, None] * softmax(role_logits, axis=-1)

    g_edge = np.zeros_like(edge_logits)
    for l in range(d - 1):
        a = edge_logits[l]
        mask = active[:, l, :, None] & active[:, l + 1, None, :]
        x = edges[:, l].astype(bool) & mask
        single, _ = _single_pred_columns(x, active[:, l + 1])
        log_w = np.log(np.maximum(widths[:, l], 1))[:, None, None]
        # a one-predecessor column's source gets sigmoid(a + log w) instead of 1 (see docs)
        pull = np.where(single[:, None, :], sigmoid(a[None] + log_w), 1.0)
        per = np.where(mask, np.where(x, pull, 0.0) - sigmoid(a)[None], 0.0)
        g_edge[l] = np.einsum("b,bij->ij", weights, per)
    return g_depth, g_width, g_model, g_role, g_edge


# ---------------------------------------------------------------- sampling
# The sampler turns the logits into tables (alias tables, the terms of the log-probability) and
# draws from a stream of 32-bit random words with the same operations, in the same order, as the
# C++ kernel (csrc/sample.hpp): Python floats are IEEE doubles and `math` calls the same C
# library, so the tables, the draws and the log-probabilities summed along the way are the
# compiled kernel's, bit for bit.

_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
CHUNK = 4
"""Predecessor candidates are drawn this many at a time: one subset draw per chunk."""


def _splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & _M64
    z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return state, z ^ (z >> 31)


LANES = 8
"""The stream interleaves this many xoshiro256** generators (csrc/rng.hpp, XoshiroLanes)."""


def lane_states(seed: int) -> list[list[int]]:
    """The xoshiro256** state of each lane for ``seed``: lane i takes splitmix64 outputs
    ``4i .. 4i+3`` (never all zero)."""
    state, lanes = seed, []
    for _ in range(LANES):
        words = []
        for _ in range(4):
            state, z = _splitmix64(state)
            words.append(z)
        if not any(words):
            words[0] = 1
        lanes.append(words)
    return lanes


def random_words(seed: int) -> Iterator[int]:
    """The sampler's random words, round by round: round r is the r-th output of lanes 0, 1,
    ..., LANES - 1, each output giving two words, its high half first."""
    lanes = lane_states(seed)
    while True:
        for lane in lanes:
            s0, s1, s2, s3 = lane
            x = (s1 * 5) & _M64
            r = ((((x << 7) | (x >> 57)) & _M64) * 9) & _M64
            t = (s1 << 17) & _M64
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            lane[:] = s0, s1, s2, ((s3 << 45) | (s3 >> 19)) & _M64
            yield r >> 32
            yield r & _M32


def _llround(x: float) -> int:
    """C's llround for x >= 0 (halves away from zero)."""
    f = math.floor(x)
    return int(f) + (1 if x - f >= 0.5 else 0)


def alias_table(weights: Sequence[float]) -> tuple[list[int], list[int]]:
    """The Walker/Vose alias table ``(keep, alias)`` of one row of unnormalised weights: a draw
    landing in bucket b keeps b when its 32-bit fraction is below ``keep[b]`` (``2**32``:
    always), else takes ``alias[b]``."""
    n = len(weights)
    q = list(weights)
    total = 0.0
    for v in q:
        total += v
    small: list[int] = []
    large: list[int] = []
    for k in range(n):
        q[k] = q[k] / total * n
        (small if q[k] < 1.0 else large).append(k)
    keep, alias = [1 << 32] * n, list(range(n))  # what is left over always keeps
    while small and large:
        sk, lk = small.pop(), large[-1]
        keep[sk], alias[sk] = _llround(q[sk] * 4294967296.0), lk
        q[lk] = (q[lk] + q[sk]) - 1.0
        if q[lk] < 1.0:
            large.pop()
            small.append(lk)
    return keep, alias


def _log_softmax_rows(x: np.ndarray) -> list[float]:
    """Log-softmax of each row along the last axis, flattened."""
    out: list[float] = []
    for row in x.reshape(-1, x.shape[-1]).tolist():
        mx = max(row)
        s = 0.0
        for v in row:
            s += math.exp(v - mx)
        lse = mx + math.log(s)
        out.extend(v - lse for v in row)
    return out


def _sigmoid(a: float) -> float:
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def _softplus(a: float) -> float:
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


def _logaddexp(x: float, y: float) -> float:
    return max(x, y) + math.log1p(math.exp(-abs(x - y)))


class AliasRows:
    """Alias tables of equal rows of ``n`` categories, flat: row ``r`` starts at ``r * n``."""

    def __init__(self, weight_rows: Iterable[Sequence[float]], n: int) -> None:
        self.n = n
        self.keep: list[int] = []
        self.alias: list[int] = []
        for weights in weight_rows:
            keep, alias = alias_table(weights)
            self.keep += keep
            self.alias += alias

    def draw(self, u: int, row: int) -> int:
        """A category of ``row`` from one 32-bit word: ``u * n`` splits into the bucket (its
        high 32 bits) and the fraction that decides keep or alias (its low 32 bits)."""
        x = u * self.n
        b = row * self.n + (x >> 32)
        return b - row * self.n if (x & _M32) < self.keep[b] else self.alias[b]


class SamplerTables:
    """What the sampler reads, derived once from the logits: log-softmax rows and their alias
    tables, the edge logits transposed to columns (``edge_t[(l * W + j) * W + i]`` is the logit
    of edge ``(l, i) -> (l + 1, j)``), ``negsp`` (at ``i``: ``-sum_{i' <= i} softplus``), and per
    column, chunk by chunk, the alias table over the ``2**CHUNK`` subsets of the chunk's
    candidates (the product of their Bernoullis; 0 or 1 past the template's width)."""

    def __init__(self, depth_logits: np.ndarray, width_logits: np.ndarray,
                 model_logits: np.ndarray, role_logits: np.ndarray,
                 edge_logits: np.ndarray) -> None:
        d, w, k = model_logits.shape
        self.dims = (d, w, k, role_logits.shape[2])
        self.ldepth = _log_softmax_rows(depth_logits)
        self.lwidth = _log_softmax_rows(width_logits)
        self.lmodel = _log_softmax_rows(model_logits)
        self.lrole = _log_softmax_rows(role_logits)
        self.depth_alias, self.width_alias, self.model_alias, self.role_alias = (
            AliasRows(_rows([math.exp(v) for v in logp], n), n)
            for logp, n in ((self.ldepth, d), (self.lwidth, w), (self.lmodel, k),
                            (self.lrole, self.dims[3])))
        self.edge_t: list[float] = np.transpose(edge_logits, (0, 2, 1)).ravel().tolist()
        self.negsp: list[float] = []
        for column in _rows(self.edge_t, w):
            acc = 0.0
            for a in column:
                acc += _softplus(a)
                self.negsp.append(-acc)
        self.nchunk = (w + CHUNK - 1) // CHUNK
        self.chunk_alias = AliasRows(
            (_chunk_weights(column, c) for column in _rows(self.edge_t, w)
             for c in range(self.nchunk)), 1 << CHUNK)
        self._single: dict[tuple[int, int], float] = {}

    def single(self, e: int, wl: int) -> float:
        """The extra log-probability of a lone predecessor (edge ``edge_t[e]``) among ``wl``
        candidates, which the uniform fallback may have drawn: ``logaddexp(a, -log wl) - a``."""
        key = (e, wl)
        if key not in self._single:
            a = self.edge_t[e]
            self._single[key] = _logaddexp(a, -math.log(float(wl))) - a
        return self._single[key]


def _rows(flat: list[float], n: int) -> list[list[float]]:
    return [flat[base:base + n] for base in range(0, len(flat), n)]


def _chunk_weights(column: list[float], c: int) -> list[float]:
    """Weight of each subset ``o`` of chunk ``c`` of a column's candidates (bit t: candidate
    ``c * CHUNK + t`` is a predecessor), multiplied in candidate order."""
    weights = []
    for o in range(1 << CHUNK):
        weight = 1.0
        for t in range(CHUNK):
            i, on = c * CHUNK + t, (o >> t) & 1
            if i < len(column):
                weight = weight * _sigmoid(column[i] if on else -column[i])
            else:
                weight = weight * (0.0 if on else 1.0)
        weights.append(weight)
    return weights


@dataclass(frozen=True)
class _Budget:
    """What budget-conditioned sampling reads: per-model FLOPs per token and output tokens."""

    flops_per_token: list[float]
    out_tokens: list[float]
    base: float
    budget: float

    def node_flops(self, k: int, prompt: float) -> float:
        return self.flops_per_token[k] * (prompt + self.out_tokens[k])

    def lower_bounds(self, models: list[list[int]]) -> tuple[list[float], float] | None:
        """``(done, lower)``: ``lower`` bounds the FLOPs of the whole graph from below and
        ``done[q]`` is its running sum up to node q, in (layer, slot) order (so what is left
        after node q is ``lower - done[q]``); None if ``lower`` exceeds the budget.

        A node after layer 0 reads at least one answer of the layer before, so its prompt is
        at least ``base`` plus the smallest output among that layer's models; each term is at
        most the exact one, and rounding is monotone, so the bound never exceeds the exact sum.
        On layer 0 the terms are exact (the prompt is ``base + 0.0``).
        """
        done: list[float] = []
        lower = min_out = 0.0
        for layer in models:
            prompt = self.base + min_out
            for k in layer:
                lower += self.node_flops(k, prompt)
                done.append(lower)
            min_out = min(self.out_tokens[k] for k in layer)
        if lower > self.budget:
            return None
        return done, lower


def _draw_graph(t: SamplerTables, word: Callable[[], int], cost: _Budget | None
                ) -> tuple[list[list[int]], list[list[int]], list[list[int]], float] | None:
    """One draw: ``(models, roles, masks, logp)`` per layer (``masks[l][j]``: the predecessors
    of node ``(l + 1, j)`` as bits over layer l), or None if the budget rejected it.

    The words are read in this order: the depth; the width of each layer; the model of each node
    in (layer, slot) order; then column by column (layer ``l + 1``, slot ``j``) its
    predecessors: none when layer ``l`` has one node (the edge is certain), else one subset draw
    per chunk of CHUNK candidates (candidates past ``w_l`` are dropped) and, if no candidate
    came up, one uniform pick among the ``w_l``; last, the role of each node after layer 0 in
    (layer, slot) order. A conditioned draw is rejected after the models when their lower bound
    exceeds the budget, and after each column when its exact partial sum plus the bound of the
    rest exceeds it (by a relative margin of 1e-12, above the rounding error of the two orders
    of summation), and at the end when the exact sum exceeds it: a rejected graph draws no
    roles.
    """
    d_max, w_max, n_models, n_roles = t.dims
    d = t.depth_alias.draw(word(), 0) + 1
    ls = t.ldepth[d - 1]
    widths = []
    for l in range(d):
        row = (d - 1) * d_max + l
        k = t.width_alias.draw(word(), row)
        widths.append(k + 1)
        ls += t.lwidth[row * w_max + k]
    models, lm = [], 0.0
    for l, wl in enumerate(widths):
        layer = []
        for i in range(wl):
            k = t.model_alias.draw(word(), l * w_max + i)
            layer.append(k)
            lm += t.lmodel[(l * w_max + i) * n_models + k]
        models.append(layer)
    done: list[float] = []
    lower = flops = 0.0
    if cost is not None:
        bounds = cost.lower_bounds(models)
        if bounds is None:
            return None
        done, lower = bounds
        flops = done[widths[0] - 1]  # layer 0, exactly
    early_exit = cost is not None and cost.budget > 0.0
    masks, lc, q = [], 0.0, widths[0]
    for l in range(d - 1):
        wl = widths[l]
        layer_masks = []
        for j in range(widths[l + 1]):
            column = l * w_max + j
            mask = 1
            if wl > 1:
                mask = 0
                for c in range(-(-wl // CHUNK)):
                    mask |= t.chunk_alias.draw(word(), column * t.nchunk + c) << (c * CHUNK)
                mask &= (1 << wl) - 1
                if mask == 0:
                    mask = 1 << ((word() * wl) >> 32)
            layer_masks.append(mask)
            chosen = [i for i in range(wl) if (mask >> i) & 1]
            sum_a = 0.0
            for i in chosen:
                sum_a += t.edge_t[column * w_max + i]
            extra = t.single(column * w_max + chosen[0], wl) if len(chosen) == 1 else 0.0
            lc += (t.negsp[column * w_max + wl - 1] + sum_a) + extra
            if cost is not None:
                prompt = cost.base
                for i in chosen:
                    prompt += cost.out_tokens[models[l][i]]
                flops += cost.node_flops(models[l + 1][j], prompt)
                if early_exit and flops + (lower - done[q]) > cost.budget * (1.0 + 1e-12):
                    return None
                q += 1
        masks.append(layer_masks)
    if cost is not None and flops > cost.budget:
        return None
    roles, lr = [[0] * widths[0]], 0.0
    for l in range(1, d):
        layer = []
        for i in range(widths[l]):
            r = t.role_alias.draw(word(), l * w_max + i)
            layer.append(r)
            lr += t.lrole[(l * w_max + i) * n_roles + r]
        roles.append(layer)
    return models, roles, masks, ((ls + lm) + lr) + lc


class Sampler:
    """The tables of one distribution, built once, for drawing any number of batches from it."""

    def __init__(self, depth_logits, width_logits, model_logits, role_logits, edge_logits):
        self.tables = SamplerTables(depth_logits, width_logits, model_logits, role_logits,
                                    edge_logits)

    def sample(self, model_costs, base_prompt_tokens, n, seed, budget, max_draws):
        """``(model, role, edges, logp, n_drawn)``, as `sample_graphs`."""
        d, w = self.tables.dims[:2]
        model = np.full((n, d, w), -1, np.int16)
        role = np.zeros((n, d, w), np.int8)
        edges = np.zeros((n, max(d - 1, 0), w, w), np.uint8)
        logp = np.zeros(n)
        cost = None
        if budget != math.inf:
            cost = _Budget(model_costs[:, 0].tolist(), model_costs[:, 1].tolist(),
                           float(base_prompt_tokens), float(budget))
        word = random_words(seed).__next__
        accepted = drawn = 0
        while accepted < n and drawn < max_draws:
            drawn += 1
            graph = _draw_graph(self.tables, word, cost)
            if graph is None:
                continue
            models, roles, masks, logp[accepted] = graph
            for l, (layer, layer_roles) in enumerate(zip(models, roles)):
                model[accepted, l, :len(layer)] = layer
                role[accepted, l, :len(layer)] = layer_roles
            for l, layer_masks in enumerate(masks):
                for j, mask in enumerate(layer_masks):
                    for i in range(mask.bit_length()):
                        edges[accepted, l, i, j] = (mask >> i) & 1
            accepted += 1
        return model[:accepted], role[:accepted], edges[:accepted], logp[:accepted], drawn


def sample_graphs(depth_logits, width_logits, model_logits, role_logits, edge_logits,
                  model_costs, base_prompt_tokens, n, seed, budget, max_draws):
    """Draw graphs until ``n`` fit the budget (``inf``: no budget, and ``model_costs`` is not
    read) or ``max_draws`` were drawn.

    Returns ``(model, role, edges, logp, n_drawn)`` with only the accepted graphs, in draw
    order, each with its unconditioned log-probability; ``n_drawn`` counts the draws made.
    """
    return Sampler(depth_logits, width_logits, model_logits, role_logits,
                   edge_logits).sample(model_costs, base_prompt_tokens, n, seed, budget,
                                       max_draws)


# ---------------------------------------------------------------- answers
def vote(ids, weights=None):
    """Per row: the id with the most (weighted) support; ties to the first seen; -1 = missing."""
    q, b = ids.shape
    present = ids != -1
    w = np.ones((q, b)) if weights is None else weights
    w = np.where(present, w, 0.0)
    total = np.zeros((q, b))
    for k in range(b):  # sequential over positions, as the C++ loop sums
        total += np.where(ids == ids[:, k:k + 1], w[:, k:k + 1], 0.0)
    total = np.where(present, total, -np.inf)
    if b == 0:
        return np.full(q, -1, np.int64), np.zeros(q)
    best = np.argmax(total, axis=1)
    rows = np.arange(q)
    has_any = present.any(axis=1)
    winner = np.where(has_any, ids[rows, best], -1).astype(np.int64)
    support = np.where(has_any, total[rows, best], 0.0)
    return winner, support


def intern_answers(answers):
    """FNV-1a 64 of each string's UTF-8 bytes, masked to 63 bits; None -> -1."""
    out = np.empty(len(answers), np.int64)
    for k, text in enumerate(answers):
        if text is None:
            out[k] = -1
            continue
        if not isinstance(text, str):
            raise ValueError(f"answers[{k}] must be a str or None, got {type(text).__name__}")
        h = FNV_OFFSET
        for byte in text.encode("utf-8", "surrogatepass"):
            h = ((h ^ byte) * FNV_PRIME) & _MASK64
        out[k] = h & _MASK63
    return out


# ---------------------------------------------------------------- final answers in texts
_FINAL = re.compile(r"the answer is\s*:?\s*\(?\s*([A-Za-z0-9+\-]+)", re.IGNORECASE)
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*\**\s*\$?\s*(-?\d{1,3}(?:,\d{3})+|-?\d+(?:\.\d+)?)",
                        re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?![\d])|(?<![\w.])-?\d+(?:\.\d+)?")


def extract_final_answer(text):
    """The X of the last "The answer is X" in ``text`` (letters upper-cased), else None."""
    found = _FINAL.findall(text)
    if not found:
        return None
    answer = found[-1]
    return answer.upper() if answer.isalpha() else answer


def extract_number(text):
    """The number after the last "the answer is", else the last number in ``text``, written
    canonically (no thousands separators; "7.0" -> "7"). None when there is no number."""
    stated = list(_ANSWER_IS.finditer(text))
    if stated:
        raw = stated[-1].group(1)
    else:
        numbers = _NUMBER.findall(text)
        if not numbers:
            return None
        raw = numbers[-1]
    raw = raw.replace(",", "")
    if "." in raw:
        value = float(raw)
        return str(int(value)) if value.is_integer() else repr(value)
    # Not str(int(raw)): int() refuses numbers of over 4300 digits, and a reply may hold one.
    digits = raw.lstrip("-")
    if not digits.isascii():  # \d is any Unicode decimal digit
        digits = "".join(str(unicodedata.decimal(c)) for c in digits)
    digits = digits.lstrip("0") or "0"
    return "-" + digits if raw.startswith("-") and digits != "0" else digits


# ---------------------------------------------------------------- canonical form
# The canonical slot order of a layered graph, up to permutations of the slots within each layer.
# Steps (the C++ kernel in csrc/canon.hpp takes the same ones, in the same order, so that both
# return the same order and not just equally canonical ones):
#  1. Twins (one layer, same model, role, predecessor set and successor set) are interchangeable:
#     each twin class becomes one node of a quotient graph, labelled with its multiplicity.
#  2. Colour refinement of the quotient: the initial colour ranks (layer, model, role,
#     multiplicity); each round ranks (colour, sorted predecessor colours, sorted successor
#     colours) until no colour class splits. Ranks are dense and sorted, so the colours are
#     invariant under relabelling and keep the layers in order.
#  3. If classes of several nodes remain, individualisation-refinement: the first such class is
#     split by giving each member in turn its own colour, refining, and recursing; the leaf with
#     the smallest encoding wins. Automorphisms found at leaves prune children in a known orbit
#     and cut subtrees equivalent to explored ones (as nauty does), so symmetric graphs cost
#     about one leaf per level, not one per ordering.
def _refine(colour: list[int], preds: list[list[int]], succs: list[list[int]]) -> list[int]:
    """Colour refinement to the coarsest stable colouring finer than ``colour`` (dense ranks)."""
    n_colours = len(set(colour))
    while True:
        sig = [(colour[q], tuple(sorted(colour[p] for p in preds[q])),
                tuple(sorted(colour[s] for s in succs[q]))) for q in range(len(colour))]
        rank = {s: k for k, s in enumerate(sorted(set(sig)))}
        if len(rank) == n_colours:
            return colour
        colour = [rank[s] for s in sig]
        n_colours = len(rank)


def _individualise(colour: list[int], v: int) -> list[int]:
    """``v`` keeps its colour c; the rest of its class moves to c + 1, later classes shift up."""
    c = colour[v]
    return [x + 1 if x > c or (x == c and q != v) else x for q, x in enumerate(colour)]


_Leaf = tuple[list[int], list[int], list[int]]  # (encoding, colouring, path) of a leaf


class _CanonSearch:
    """Individualisation-refinement over a quotient graph; ``best`` is the canonical colouring."""

    def __init__(self, preds: list[list[int]], succs: list[list[int]], start: list[int],
                 layer: list[int]) -> None:
        self.preds, self.succs, self.start, self.layer = preds, succs, start, layer
        self.first: _Leaf | None = None   # the first leaf
        self.best: _Leaf | None = None    # the leaf with the smallest encoding so far
        self.generators: list[list[int]] = []

    def encode(self, colour: list[int]) -> list[int]:
        """Per position, the bitmask of its predecessors' positions within their layer."""
        order = [0] * len(colour)
        for q, p in enumerate(colour):
            order[p] = q
        out = []
        for q in order:
            base = self.start[self.layer[q] - 1] if self.layer[q] else 0
            out.append(sum(1 << (colour[p] - base) for p in self.preds[q]))
        return out

    def _automorphism(self, colour: list[int], other: list[int]) -> None:
        """Record the map sending each node to the node at the same position in ``other``."""
        order = [0] * len(other)
        for q, p in enumerate(other):
            order[p] = q
        self.generators.append([order[colour[q]] for q in range(len(colour))])

    def _same_orbit(self, v: int, explored: list[int], path: list[int]) -> bool:
        """Whether automorphisms found so far that fix ``path`` map an explored child to ``v``."""
        parent = list(range(len(self.preds)))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for gamma in self.generators:
            if all(gamma[x] == x for x in path):
                for x, y in enumerate(gamma):
                    parent[find(x)] = find(y)
        return any(find(w) == find(v) for w in explored)

    def run(self, colour: list[int], path: list[int]) -> int | None:
        """Explore the subtree below ``colour``; a return value is the depth to unwind to."""
        n = len(colour)
        counts = [0] * n
        for c in colour:
            counts[c] += 1
        target = next((c for c in range(n) if counts[c] > 1), None)
        if target is None:
            return self._leaf(colour, path)
        explored: list[int] = []
        for v in [q for q in range(n) if colour[q] == target]:
            if explored and self._same_orbit(v, explored, path):
                continue
            jump = self.run(_refine(_individualise(colour, v), self.preds, self.succs),
                            path + [v])
            explored.append(v)
            if jump is not None and jump < len(path):
                return jump
        return None

    def _leaf(self, colour: list[int], path: list[int]) -> int | None:
        enc = self.encode(colour)
        if self.first is None or self.best is None:  # set together, at the first leaf
            self.first = self.best = (enc, colour, path)
            return None
        for other in (self.first, self.best):
            if enc == other[0]:
                self._automorphism(colour, other[1])
                # This leaf's subtree mirrors one explored already: resume where the paths part.
                return next(k for k, (a, b) in enumerate(zip(path, other[2])) if a != b)
        if enc < self.best[0]:
            self.best = (enc, colour, path)
        return None


def _canonical_order_one(model: np.ndarray, role: np.ndarray, edges: np.ndarray) -> np.ndarray:
    d, w = model.shape
    m, r, e = model.tolist(), role.tolist(), edges.tolist()
    slots = [[i for i in range(w) if m[l][i] >= 0] for l in range(d)]
    pred_mask = [[0] * w for _ in range(d)]
    succ_mask = [[0] * w for _ in range(d)]
    for l in range(d - 1):
        for i in slots[l]:
            for j in slots[l + 1]:
                if e[l][i][j]:
                    succ_mask[l][i] |= 1 << j
                    pred_mask[l + 1][j] |= 1 << i
    # 1. twin classes, numbered layer by layer in the order of their first slot
    members: list[list[int]] = []
    label: list[tuple[int, int, int, int]] = []
    layer: list[int] = []
    start = [0] * (d + 1)
    class_of = [[-1] * w for _ in range(d)]
    for l in range(d):
        start[l] = len(members)
        index: dict[tuple[int, int, int, int], int] = {}
        for i in slots[l]:
            key = (m[l][i], r[l][i], pred_mask[l][i], succ_mask[l][i])
            if key not in index:
                index[key] = len(members)
                members.append([])
                layer.append(l)
            class_of[l][i] = index[key]
            members[index[key]].append(i)
        for q in range(start[l], len(members)):
            i = members[q][0]
            label.append((l, m[l][i], r[l][i], len(members[q])))
    start[d] = len(members)
    preds = [sorted({class_of[layer[q] - 1][i] for i in range(w)
                     if pred_mask[layer[q]][members[q][0]] >> i & 1}) for q in range(len(members))]
    succs = [sorted({class_of[layer[q] + 1][j] for j in range(w)
                     if succ_mask[layer[q]][members[q][0]] >> j & 1}) for q in range(len(members))]
    # 2. and 3.
    rank = {x: k for k, x in enumerate(sorted(set(label)))}
    search = _CanonSearch(preds, succs, start, layer)
    search.run(_refine([rank[x] for x in label], preds, succs), [])
    out = np.full((d, w), -1, np.int32)
    if search.best is not None:
        colour = search.best[1]
        for l in range(d):
            ranked = sorted(range(start[l], start[l + 1]), key=lambda q: colour[q])
            row = [i for q in ranked for i in members[q]]
            out[l, : len(row)] = row
    return out


def canonical_order(model, role, edges):
    """``int32[B, D, W]``: row ``[b, l]`` lists the slots of layer l of graph b in canonical order
    (then -1). Graphs equal up to permutations of slots within layers get orders under which
    their arrays coincide; a slot holds a node where ``model >= 0``."""
    b, d, w = model.shape
    out = np.full((b, d, w), -1, np.int32)
    for k in range(b):
        out[k] = _canonical_order_one(model[k], role[k], edges[k])
    return out
