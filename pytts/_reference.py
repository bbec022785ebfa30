"""NumPy reference of every kernel of ``pytts._core``: same names, same signatures, same results.

This is the test oracle for the compiled kernels and the fallback when no compiler was present.
Inputs are trusted here (``pytts.kernels`` validates them once); shapes, per DESIGN.md:
``depth_logits[D]``, ``width_logits[D, D, W]``, ``model_logits[D, W, K]``,
``role_logits[D, W, R]``, ``edge_logits[D-1, W, W]``; graphs ``model[B, D, W]`` int16,
``role[B, D, W]`` int8, ``edges[B, D-1, W, W]`` uint8; ``model_costs[K, 5]`` with columns
params_b, out_tokens, prefill_tps, decode_tps, overhead_s.

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
import re
import unicodedata

import numpy as np
from scipy.special import expit, log_softmax, softmax

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
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


def _softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


# ---------------------------------------------------------------- cost
def graph_cost(model, role, edges, model_costs, base_prompt_tokens):
    """FLOPs and critical-path latency of each graph (see pytts.cost for the formulas)."""
    bsz, d, w = model.shape
    active = model >= 0
    idx = np.where(active, model, 0)
    params, out, prefill, decode, overhead = (model_costs[idx, c] for c in range(5))
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
        node_flops = 2e9 * params[:, l] * (prompt + out[:, l])
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
        term = np.where(mask, np.where(x, a, 0.0) - _softplus(a), 0.0).sum(axis=(1, 2))
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
        pull = np.where(single[:, None, :], expit(a[None] + log_w), 1.0)
        per = np.where(mask, np.where(x, pull, 0.0) - expit(a)[None], 0.0)
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
        x = (rng.random((m, d - 1, w, w)) < expit(edge_logits)[None]) & mask
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
    conditioned = math.isfinite(budget)
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


class _CanonSearch:
    """Individualisation-refinement over a quotient graph; ``best`` is the canonical colouring."""

    def __init__(self, preds: list[list[int]], succs: list[list[int]], start: list[int],
                 layer: list[int]) -> None:
        self.preds, self.succs, self.start, self.layer = preds, succs, start, layer
        self.first: tuple | None = None   # (encoding, colouring, path) of the first leaf
        self.best: tuple | None = None    # the same for the smallest encoding so far
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
        if self.first is None:
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
