"""A numba port of ``pytts._core``'s sampler (budget-conditioned or not) and of ``graph_cost``.

It exists to answer "would numba have been enough?": the draw loop is the algorithm of
csrc/sample.hpp and ``pytts._reference`` (the same stream of 32-bit words from eight
xoshiro256** lanes, the same alias draws in the same order, the same bounds and early exits),
compiled with ``@njit(cache=False)``. Its tables come from the reference
(`pytts._reference.SamplerTables`, bit for bit the compiled kernel's), so for a seed it draws
the very graphs both backends draw; the benchmark checks that.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pytts import _reference as ref

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)


# ---------------------------------------------------------------- tables (from the reference)
def _alias_arrays(rows: ref.AliasRows) -> tuple[np.ndarray, np.ndarray]:
    return np.array(rows.keep, np.uint64), np.array(rows.alias, np.int64)


def build_tables(depth_logits, width_logits, model_logits, role_logits, edge_logits):
    """The reference's sampler tables as flat numpy arrays (argument order of `_sample_loop`)."""
    t = ref.SamplerTables(depth_logits, width_logits, model_logits, role_logits, edge_logits)
    d, w = t.dims[:2]
    # The lone-predecessor terms, tabulated at [column][w_l - 1][i].
    single = np.zeros((max(d - 1, 0) * w, w, w))
    for column in range(single.shape[0]):
        for wl in range(1, w + 1):
            for i in range(wl):
                single[column, wl - 1, i] = t.single(column * w + i, wl)
    return (np.array(t.ldepth), np.array(t.lwidth), np.array(t.lmodel), np.array(t.lrole),
            *_alias_arrays(t.depth_alias), *_alias_arrays(t.width_alias),
            *_alias_arrays(t.model_alias), *_alias_arrays(t.role_alias),
            *_alias_arrays(t.chunk_alias), np.array(t.edge_t), np.array(t.negsp), single,
            t.nchunk)


# ---------------------------------------------------------------- the loop
@njit(cache=False, inline="always")
def _rotl(x, k):
    return (x << _U64(k)) | (x >> _U64(64 - k))


@njit(cache=False, inline="always")
def _word(state, buf):
    """The next 32-bit word. ``state`` holds the lanes' s0 (8 values), s1, s2, s3, then the
    index of the next word in ``buf``, the current round's 16 words (16: used up)."""
    k = state[32]
    if k == _U64(16):
        for i in range(8):
            s0, s1, s2, s3 = state[i], state[8 + i], state[16 + i], state[24 + i]
            result = _rotl(s1 * _U64(5), 7) * _U64(9)
            t = s1 << _U64(17)
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            state[i], state[8 + i], state[16 + i], state[24 + i] = s0, s1, s2, _rotl(s3, 45)
            buf[2 * i] = result >> _U64(32)
            buf[2 * i + 1] = result & _MASK32
        k = _U64(0)
    state[32] = k + _U64(1)
    return buf[k]


@njit(cache=False, inline="always")
def _alias(u, keep, alias, base, n):
    x = u * _U64(n)
    b = np.int64(x >> _U64(32))
    return b if (x & _MASK32) < keep[base + b] else alias[base + b]


@njit(cache=False)
def _sample_loop(ldepth, lwidth, lmodel, lrole, dk, da, wk, wa, mk, ma, rk, ra, ck, ca, edge_t,
                 negsp, single, nchunk, state, buf, out_tokens, flops_per_token, base, n, budget,
                 max_draws, conditioned, om, orl, oe, ologp):
    d_max, w_max = om.shape[1], om.shape[2]
    k_models = lmodel.shape[0] // (d_max * w_max)
    r_roles = lrole.shape[0] // (d_max * w_max)
    early_exit = conditioned and budget > 0.0
    budget_margin = budget * (1.0 + 1e-12)
    w = np.zeros(d_max, np.int64)
    m = np.zeros(d_max * w_max, np.int64)
    done = np.zeros(d_max * w_max)
    accepted = 0
    drawn = 0
    while accepted < n and drawn < max_draws:
        drawn += 1
        d = _alias(_word(state, buf), dk, da, 0, d_max) + 1
        ls = ldepth[d - 1]
        nodes = 0
        for l in range(d):
            row = (d - 1) * d_max + l
            k = _alias(_word(state, buf), wk, wa, row * w_max, w_max)
            w[l] = k + 1
            ls += lwidth[row * w_max + k]
            nodes += k + 1
        lm = 0.0
        for l in range(d):
            for i in range(w[l]):
                s = l * w_max + i
                k = _alias(_word(state, buf), mk, ma, s * k_models, k_models)
                m[s] = k
                lm += lmodel[s * k_models + k]
        lower = 0.0
        if conditioned:
            min_out = 0.0
            q = 0
            for l in range(d):
                prompt = base + min_out
                layer_min = np.inf
                for i in range(w[l]):
                    k = m[l * w_max + i]
                    lower += flops_per_token[k] * (prompt + out_tokens[k])
                    done[q] = lower
                    layer_min = min(layer_min, out_tokens[k])
                    q += 1
                min_out = layer_min
            if lower > budget:
                continue
        row_m = om[accepted]
        row_r = orl[accepted]
        row_e = oe[accepted]
        row_m[:, :] = -1
        for l in range(d):
            for i in range(w[l]):
                row_m[l, i] = m[l * w_max + i]
        F = done[w[0] - 1] if conditioned else 0.0  # layer 0, exactly
        lc = 0.0
        rejected = False
        q_next = w[0]
        for l in range(d - 1):
            wl = w[l]
            for j in range(w[l + 1]):
                column = l * w_max + j
                mask = 1
                if wl > 1:
                    mask = 0
                    for c in range((wl + 3) // 4):
                        o = _alias(_word(state, buf), ck, ca, (column * nchunk + c) * 16, 16)
                        mask |= o << (4 * c)
                    if wl < 64:
                        mask &= (1 << wl) - 1
                    if mask == 0:
                        mask = 1 << np.int64((_word(state, buf) * _U64(wl)) >> _U64(32))
                sum_a = 0.0
                prompt = base
                first = -1
                count = 0
                for i in range(wl):
                    if (mask >> i) & 1:
                        row_e[l, i, j] = 1
                        sum_a += edge_t[column * w_max + i]
                        prompt += out_tokens[m[l * w_max + i]] if conditioned else 0.0
                        count += 1
                        if first < 0:
                            first = i
                extra = single[column, wl - 1, first] if count == 1 else 0.0
                lc += (negsp[column * w_max + wl - 1] + sum_a) + extra
                if conditioned:
                    mj = m[(l + 1) * w_max + j]
                    F += flops_per_token[mj] * (prompt + out_tokens[mj])
                    if early_exit and F + (lower - done[q_next]) > budget_margin:
                        rejected = True
                        break
                    q_next += 1
            if rejected:
                break
        if conditioned and F > budget:
            rejected = True
        if rejected:
            row_e[:, :, :] = 0
            continue
        lr = 0.0
        for l in range(1, d):
            for i in range(w[l]):
                s = l * w_max + i
                k = _alias(_word(state, buf), rk, ra, s * r_roles, r_roles)
                row_r[l, i] = k
                lr += lrole[s * r_roles + k]
        ologp[accepted] = ((ls + lm) + lr) + lc
        accepted += 1
    return accepted, drawn


class Sampler:
    """The tables of one set of logits, built once; `sample` runs the compiled loop (as
    ``pytts._core.Sampler``)."""

    def __init__(self, depth_logits, width_logits, model_logits, role_logits, edge_logits):
        self.shape = model_logits.shape
        self.tables = build_tables(depth_logits, width_logits, model_logits, role_logits,
                                   edge_logits)

    def sample(self, model_costs, base_prompt_tokens, n, seed, budget, max_draws):
        """Same arguments and results as ``pytts._core.Sampler.sample`` (inputs are trusted)."""
        d, w, k = self.shape
        conditioned = budget != math.inf
        if conditioned:
            out_tokens = np.ascontiguousarray(model_costs[:, 1])
            flops_per_token = np.ascontiguousarray(model_costs[:, 0])
        else:
            out_tokens = flops_per_token = np.zeros(k)
        lanes = ref.lane_states(int(seed))
        state = np.array([lane[k] for k in range(4) for lane in lanes] + [16], np.uint64)
        buf = np.zeros(16, np.uint64)
        om = np.empty((n, d, w), np.int16)
        orl = np.zeros((n, d, w), np.int8)
        oe = np.zeros((n, max(d - 1, 0), w, w), np.uint8)
        ologp = np.empty(n)
        accepted, drawn = _sample_loop(*self.tables, state, buf, out_tokens, flops_per_token,
                                       float(base_prompt_tokens), int(n), float(budget),
                                       int(max_draws), conditioned, om, orl, oe, ologp)
        return om[:accepted], orl[:accepted], oe[:accepted], ologp[:accepted], drawn


def sample_graphs(depth_logits, width_logits, model_logits, role_logits, edge_logits,
                  model_costs, base_prompt_tokens, n, seed, budget, max_draws):
    """Same signature and results as ``pytts._core.sample_graphs`` (inputs are trusted)."""
    return Sampler(depth_logits, width_logits, model_logits, role_logits,
                   edge_logits).sample(model_costs, base_prompt_tokens, n, seed, budget,
                                       max_draws)


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
