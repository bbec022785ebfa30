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
one-predecessor column can arise from either path, and both are counted).

Floating-point sums over slots and predecessors run in slot order, as in the C++ loops, so that
costs (and therefore feasibility) agree bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from .constants import FNV_OFFSET, FNV_PRIME, MAX_DEPTH, MAX_MODELS, MAX_ROLES, MAX_WIDTH
from .logspace import log_softmax, sigmoid, softmax, softplus

__all__ = ["FNV_OFFSET", "FNV_PRIME", "MAX_DEPTH", "MAX_MODELS", "MAX_ROLES", "MAX_WIDTH",
           "Sampler", "feasible", "grad_log_prob", "graph_cost", "intern_answers", "log_prob",
           "sample_graphs", "vote"]

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

    g_depth = np.bincount(depth - 1, weights=weights, minlength=d) - weights.sum() * softmax(depth_logits)

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
def _inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category index for uniforms ``u[...]`` and matching cumulative rows ``cdf[..., C]``."""
    return np.minimum((cdf <= u[..., None]).sum(axis=-1), cdf.shape[-1] - 1)


def _draw(rng: np.random.Generator, m: int, depth_logits, width_logits, model_logits,
          role_logits, edge_logits):
    d, w = model_logits.shape[:2]
    depth = _inverse_cdf(np.cumsum(softmax(depth_logits)), rng.random(m)) + 1
    cdf_w = np.cumsum(softmax(width_logits, axis=-1), axis=-1)
    widths = np.zeros((m, d), np.int64)
    for l in range(d):
        drawn = _inverse_cdf(cdf_w[depth - 1, l], rng.random(m)) + 1
        widths[:, l] = np.where(l < depth, drawn, 0)
    active = np.arange(w)[None, None, :] < widths[:, :, None]
    cdf_m = np.cumsum(softmax(model_logits, axis=-1), axis=-1)
    model = np.where(active, _inverse_cdf(cdf_m[None], rng.random((m, d, w))), -1).astype(np.int16)
    cdf_r = np.cumsum(softmax(role_logits, axis=-1), axis=-1)
    role = np.where(active, _inverse_cdf(cdf_r[None], rng.random((m, d, w))), 0)
    role[:, 0] = 0
    role = role.astype(np.int8)
    edges = np.zeros((m, max(d - 1, 0), w, w), np.uint8)
    if d > 1:
        mask = active[:, :-1, :, None] & active[:, 1:, None, :]
        x = (rng.random((m, d - 1, w, w)) < sigmoid(edge_logits)[None]) & mask
        orphan = active[:, 1:, :] & ~x.any(axis=2)                     # [m, D-1, W]
        pick = np.floor(rng.random((m, d - 1, w)) * widths[:, :-1, None]).astype(np.int64)
        pick = np.minimum(pick, np.maximum(widths[:, :-1, None] - 1, 0))
        bb, ll, jj = np.nonzero(orphan)
        x[bb, ll, pick[bb, ll, jj], jj] = True
        edges = x.astype(np.uint8)
    return model, role, edges


def sample_graphs(depth_logits, width_logits, model_logits, role_logits, edge_logits,
                  model_costs, base_prompt_tokens, n, seed, budget, max_draws):
    """Draw graphs until ``n`` fit the budget or ``max_draws`` were drawn.

    Returns ``(model, role, edges, logp, n_drawn)`` with only the accepted graphs, in draw order;
    ``n_drawn`` counts draws up to the last accepted graph (or all of them if fewer than ``n``
    were accepted). ``logp`` is the unconditioned log-probability.
    """
    d, w = model_logits.shape[:2]
    rng = np.random.default_rng(seed)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    accepted = drawn = 0
    last_needed = 0
    conditioned = budget != math.inf
    while accepted < n and drawn < max_draws:
        rate = (accepted + 1) / (drawn + 1)
        m = int(min(max_draws - drawn, max(256, 1.2 * (n - accepted) / rate)))
        model, role, edges = _draw(rng, m, depth_logits, width_logits, model_logits,
                                   role_logits, edge_logits)
        if conditioned:
            keep = feasible(model, role, edges, model_costs, base_prompt_tokens, budget)
        else:
            keep = np.ones(m, bool)
        kept = np.flatnonzero(keep)[: n - accepted]
        if kept.size:
            last_needed = drawn + int(kept[-1]) + 1
        parts.append((model[kept], role[kept], edges[kept]))
        accepted += kept.size
        drawn += m
    n_drawn = last_needed if accepted >= n else drawn
    if parts:
        model = np.concatenate([p[0] for p in parts])
        role = np.concatenate([p[1] for p in parts])
        edges = np.concatenate([p[2] for p in parts])
    else:
        model = np.zeros((0, d, w), np.int16)
        role = np.zeros((0, d, w), np.int8)
        edges = np.zeros((0, max(d - 1, 0), w, w), np.uint8)
    logp = log_prob(depth_logits, width_logits, model_logits, role_logits, edge_logits,
                    model, role, edges)
    return model, role, edges, logp, n_drawn


class Sampler:
    """The logits of one distribution, kept for drawing any number of batches from it."""

    def __init__(self, depth_logits, width_logits, model_logits, role_logits, edge_logits):
        self._logits = tuple(np.array(a, dtype=np.float64) for a in (
            depth_logits, width_logits, model_logits, role_logits, edge_logits))

    def sample(self, model_costs, base_prompt_tokens, n, seed, budget, max_draws):
        """``(model, role, edges, logp, n_drawn)``, as `sample_graphs`."""
        return sample_graphs(*self._logits, model_costs, base_prompt_tokens, n, seed, budget,
                             max_draws)


# ---------------------------------------------------------------- answers
def vote(ids, weights):
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
