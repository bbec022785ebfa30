"""A numba port of ``pytts._core``'s budget-conditioned sampler and of ``graph_cost``.

It exists to answer "would numba have been enough?": the same algorithm as csrc/sample.hpp and
csrc/cost.hpp (xoshiro256** seeded by splitmix64, alias tables, the flat node loop, the FLOPs lower
bound before the edges and the early exit during them, subset-sum tables), compiled with
``@njit(cache=False)``. Tables are built in plain Python with the same operations in the same
order, so for a seed it draws the very graphs the C++ kernel draws; the benchmark checks that.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)
_SUBSET_MAX_WIDTH = 8


# ---------------------------------------------------------------- tables (plain Python, tiny)
def _softplus(a: float) -> float:
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


def _sigmoid(a: float) -> float:
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def _logaddexp(x: float, y: float) -> float:
    return max(x, y) + math.log1p(math.exp(-abs(x - y)))


def _llround(x: float) -> int:
    f = math.floor(x)
    return int(f) + (1 if x - f >= 0.5 else 0)


def _log_softmax_rows(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    for r in range(flat.shape[0]):
        row = [float(v) for v in flat[r]]
        mx = max(row)
        s = 0.0
        for v in row:
            s += math.exp(v - mx)
        lse = mx + math.log(s)
        for k, v in enumerate(row):
            out[r, k] = v - lse
    return out.reshape(x.shape)


def _alias(logp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose alias tables (keep thresholds scaled by 2^32, aliases) per row, as build_alias."""
    flat = logp.reshape(-1, logp.shape[-1])
    rows, n = flat.shape
    keep = np.zeros((rows, n), np.uint64)
    alias = np.zeros((rows, n), np.int64)
    for r in range(rows):
        q = [math.exp(float(v)) for v in flat[r]]
        total = 0.0
        for v in q:
            total += v
        small: list[int] = []
        large: list[int] = []
        for k in range(n):
            q[k] = q[k] / total * n
            (small if q[k] < 1.0 else large).append(k)
        while small and large:
            sk, lk = small.pop(), large[-1]
            keep[r, sk] = _llround(q[sk] * 4294967296.0)
            alias[r, sk] = lk
            q[lk] = (q[lk] + q[sk]) - 1.0
            if q[lk] < 1.0:
                large.pop()
                small.append(lk)
        for k in small + large:
            keep[r, k] = 1 << 32
            alias[r, k] = k
    return keep.reshape(logp.shape), alias.reshape(logp.shape)


def build_tables(depth_logits, width_logits, model_logits, role_logits, edge_logits):
    """All per-call tables of the sampler, as numpy arrays (see ProbTables in sample.hpp)."""
    d, w = model_logits.shape[:2]
    ldepth = _log_softmax_rows(depth_logits)
    lwidth = _log_softmax_rows(width_logits)
    lmodel = _log_softmax_rows(model_logits)
    lrole = _log_softmax_rows(role_logits)
    edge_t = np.ascontiguousarray(np.transpose(edge_logits, (0, 2, 1)))  # [l, j, i]
    ne = max(d - 1, 0)
    negsp = np.zeros((ne, w, w))
    thr = np.zeros((ne, w, w + 1), np.uint64)  # one spare entry per column for the pair reads
    single = np.zeros((ne, w, w, w))
    subset = np.zeros((ne, w, 1 << w) if w <= _SUBSET_MAX_WIDTH else (0, 0, 0))
    for l in range(ne):
        for j in range(w):
            acc = 0.0
            for i in range(w):
                a = float(edge_t[l, j, i])
                acc += _softplus(a)
                negsp[l, j, i] = -acc
                thr[l, j, i] = _llround(_sigmoid(a) * 4294967296.0)
            for ww in range(1, w + 1):
                for i in range(ww):
                    a = float(edge_t[l, j, i])
                    single[l, j, ww - 1, i] = _logaddexp(a, -math.log(float(ww))) - a
            if w <= _SUBSET_MAX_WIDTH:
                for mask in range(1, 1 << w):
                    hi = mask.bit_length() - 1
                    subset[l, j, mask] = subset[l, j, mask & ~(1 << hi)] + edge_t[l, j, hi]
    dk, da = _alias(ldepth)
    wk, wa = _alias(lwidth)
    mk, ma = _alias(lmodel)
    rk, ra = _alias(lrole)
    return (ldepth, lwidth, lmodel, lrole, dk, da, wk, wa, mk, ma, rk, ra,
            edge_t, negsp, thr, single, subset)


# ---------------------------------------------------------------- the loop
@njit(cache=False, inline="always")
def _rotl(x, k):
    return (x << _U64(k)) | (x >> _U64(64 - k))


@njit(cache=False, inline="always")
def _splitmix(state):
    state = state + _U64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return state, z ^ (z >> _U64(31))


@njit(cache=False, inline="always")
def _next(s0, s1, s2, s3):
    result = _rotl(s1 * _U64(5), 7) * _U64(9)
    t = s1 << _U64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return s0, s1, s2, s3, result


@njit(cache=False, inline="always")
def _alias_draw(r, keep, alias, n):
    b = ((r >> _U64(32)) * _U64(n)) >> _U64(32)
    bi = np.int64(b)
    return bi if (r & _MASK32) < keep[bi] else alias[bi]


@njit(cache=False)
def _sample_loop(ldepth, lwidth, lmodel, lrole, dk, da, wk, wa, mk, ma, rk, ra,
                 edge_t, negsp, thr, single, subset, out_tokens, flops_per_token,
                 base, n, seed, budget, max_draws, conditioned,
                 om, orl, oe, ologp):
    d_max, w_max = lmodel.shape[0], lmodel.shape[1]
    k_models = lmodel.shape[2]
    r_roles = lrole.shape[2]
    use_subset = subset.shape[0] > 0
    st = _U64(seed)
    st, s0 = _splitmix(st)
    st, s1 = _splitmix(st)
    st, s2 = _splitmix(st)
    st, s3 = _splitmix(st)
    # FLOPs of a node of model k: exact in the first layer, a lower bound after it (at least one
    # predecessor, whose output is at least the pool's smallest).
    node_lower = np.zeros((2, k_models))
    if conditioned:
        min_out = np.inf
        for k in range(k_models):
            min_out = min(min_out, out_tokens[k])
        for k in range(k_models):
            node_lower[0, k] = flops_per_token[k] * (base + out_tokens[k])
            node_lower[1, k] = flops_per_token[k] * ((base + min_out) + out_tokens[k])
    early_exit = conditioned and budget > 0.0
    budget_margin = budget * (1.0 + 1e-12)
    rest = np.zeros(d_max * w_max + 1)
    w = np.zeros(d_max, np.int64)
    m = np.zeros(d_max * w_max, np.int64)
    slot = np.zeros(d_max * w_max, np.int64)
    out_prev = np.zeros(w_max)
    accepted = 0
    drawn = 0
    while accepted < n and drawn < max_draws:
        drawn += 1
        s0, s1, s2, s3, r = _next(s0, s1, s2, s3)
        d = _alias_draw(r, dk, da, d_max) + 1
        ls = ldepth[d - 1]
        nodes = 0
        for l in range(d):
            s0, s1, s2, s3, r = _next(s0, s1, s2, s3)
            k = _alias_draw(r, wk[d - 1, l], wa[d - 1, l], w_max)
            w[l] = k + 1
            ls += lwidth[d - 1, l, k]
            for i in range(k + 1):
                slot[nodes + i] = l * w_max + i
            nodes += k + 1
        lm = 0.0
        lower = 0.0
        for q in range(nodes):
            sq = slot[q]
            l, i = sq // w_max, sq % w_max
            s0, s1, s2, s3, r = _next(s0, s1, s2, s3)
            k = _alias_draw(r, mk[l, i], ma[l, i], k_models)
            m[sq] = k
            lm += lmodel[l, i, k]
            if conditioned:
                rest[q] = node_lower[1 if q >= w[0] else 0, k]
                lower += rest[q]
        if conditioned and lower > budget:
            continue
        if early_exit:
            rest[nodes] = 0.0
            for q in range(nodes - 1, -1, -1):
                rest[q] += rest[q + 1]
        row_m = om[accepted]
        row_r = orl[accepted]
        row_e = oe[accepted]
        row_m[:, :] = -1
        for q in range(nodes):
            sq = slot[q]
            row_m[sq // w_max, sq % w_max] = m[sq]
        lr = 0.0
        for q in range(w[0], nodes):
            sq = slot[q]
            l, i = sq // w_max, sq % w_max
            s0, s1, s2, s3, r = _next(s0, s1, s2, s3)
            k = _alias_draw(r, rk[l, i], ra[l, i], r_roles)
            row_r[l, i] = k
            lr += lrole[l, i, k]
        F = 0.0
        if conditioned:
            for i in range(w[0]):
                F += flops_per_token[m[i]] * (base + out_tokens[m[i]])
                out_prev[i] = out_tokens[m[i]]
        lc = 0.0
        rejected = False
        q_next = w[0]
        for l in range(d - 1):
            if rejected:
                break
            wl, wn = w[l], w[l + 1]
            for j in range(wn):
                mask = 0
                sum_a = 0.0
                prompt = base
                if wl == 1:
                    mask = 1
                    row_e[l, 0, j] = 1
                    sum_a = edge_t[l, j, 0]
                    prompt += out_prev[0]
                for i in range(0, wl if wl > 1 else 0, 2):
                    s0, s1, s2, s3, r = _next(s0, s1, s2, s3)
                    x0 = (r & _MASK32) < thr[l, j, i]
                    x1 = ((r >> _U64(32)) < thr[l, j, i + 1]) and (i + 1 < wl)
                    if x0:
                        mask |= 1 << i
                        row_e[l, i, j] = 1
                        sum_a += edge_t[l, j, i]
                        prompt += out_prev[i]
                    if x1:
                        mask |= 1 << (i + 1)
                        row_e[l, i + 1, j] = 1
                        sum_a += edge_t[l, j, i + 1]
                        prompt += out_prev[i + 1]
                if wl > 1 and mask == 0:
                    s0, s1, s2, s3, r = _next(s0, s1, s2, s3)
                    ist = np.int64(((r >> _U64(32)) * _U64(wl)) >> _U64(32))
                    mask = 1 << ist
                    row_e[l, ist, j] = 1
                    sum_a = edge_t[l, j, ist]
                    prompt += out_prev[ist]
                if use_subset and wl > 1:
                    sum_a = subset[l, j, mask]
                extra = 0.0
                if mask & (mask - 1) == 0:
                    lone = 0
                    while (mask >> lone) & 1 == 0:
                        lone += 1
                    extra = single[l, j, wl - 1, lone]
                lc += (negsp[l, j, wl - 1] + sum_a) + extra
                if conditioned:
                    mj = m[(l + 1) * w_max + j]
                    F += flops_per_token[mj] * (prompt + out_tokens[mj])
                    q_next += 1
                    if early_exit and F + rest[q_next] > budget_margin:
                        rejected = True
                        break
            if conditioned:
                if F > budget:
                    rejected = True
                for j in range(wn):
                    out_prev[j] = out_tokens[m[(l + 1) * w_max + j]]
        if rejected:
            row_r[:, :] = 0
            row_e[:, :, :] = 0
            continue
        ologp[accepted] = ((ls + lm) + lr) + lc
        accepted += 1
    return accepted, drawn


def sample_graphs(depth_logits, width_logits, model_logits, role_logits, edge_logits,
                  model_costs, base_prompt_tokens, n, seed, budget, max_draws):
    """Same signature and results as ``pytts._core.sample_graphs`` (inputs are trusted)."""
    d, w = model_logits.shape[:2]
    tables = build_tables(depth_logits, width_logits, model_logits, role_logits, edge_logits)
    conditioned = math.isfinite(budget)
    if conditioned:
        out_tokens = np.ascontiguousarray(model_costs[:, 1])
        flops_per_token = np.ascontiguousarray(model_costs[:, 0])
    else:
        out_tokens = flops_per_token = np.zeros(model_logits.shape[2])
    om = np.empty((n, d, w), np.int16)
    orl = np.zeros((n, d, w), np.int8)
    oe = np.zeros((n, max(d - 1, 0), w, w), np.uint8)
    ologp = np.empty(n)
    accepted, drawn = _sample_loop(*tables, out_tokens, flops_per_token, float(base_prompt_tokens),
                                   int(n), int(seed), float(budget), int(max_draws), conditioned,
                                   om, orl, oe, ologp)
    return om[:accepted], orl[:accepted], oe[:accepted], ologp[:accepted], drawn


@njit(cache=False)
def _cost_loop(model, edges, out_tokens, flops_per_token, prefill, decode, overhead, base,
               flops, latency):
    bsz, d, w = model.shape
    prompt = np.empty(w)
    maxfin = np.empty(w)
    fin_prev = np.zeros(w)
    fin_cur = np.zeros(w)
    for b in range(bsz):
        F = 0.0
        L = 0.0
        for l in range(d):
            prompt[:] = base
            maxfin[:] = 0.0
            if l > 0:
                for i in range(w):
                    mi = model[b, l - 1, i]
                    if mi < 0:
                        continue
                    o = out_tokens[mi]
                    f = fin_prev[i]
                    for j in range(w):
                        if edges[b, l - 1, i, j]:
                            prompt[j] += o
                            maxfin[j] = max(maxfin[j], f)
            for j in range(w):
                mj = model[b, l, j]
                if mj < 0:
                    fin_cur[j] = 0.0
                    continue
                F += flops_per_token[mj] * (prompt[j] + out_tokens[mj])
                fin_cur[j] = (overhead[mj] + prompt[j] / prefill[mj] + out_tokens[mj] / decode[mj]
                              + maxfin[j])
                L = max(L, fin_cur[j])
            fin_prev[:] = fin_cur
        flops[b] = F
        latency[b] = L


def graph_cost(model, role, edges, model_costs, base_prompt_tokens):
    """Same signature and results as ``pytts._core.graph_cost`` (inputs are trusted)."""
    mc = np.ascontiguousarray(model_costs)
    flops = np.empty(model.shape[0])
    latency = np.empty(model.shape[0])
    _cost_loop(model, edges, np.ascontiguousarray(mc[:, 1]), np.ascontiguousarray(mc[:, 0]),
               np.ascontiguousarray(mc[:, 2]), np.ascontiguousarray(mc[:, 3]),
               np.ascontiguousarray(mc[:, 4]), float(base_prompt_tokens), flops, latency)
    return flops, latency
