"""NumPy twin of the latent-code simulation kernel (csrc/simulate.hpp): same signatures, same
bits out for the same arrays in.

A batch of graphs runs on Q questions x S samples. Each node's draws are keyed by (``seed``,
question key, node key, sample), so graphs that share a node key share its draws (common random
numbers). Node keys (`sim_node_keys`) identify a node's call as the text path's bank does: model,
role, predecessors' keys and occurrence number, never its position. Answer codes are those of
`pytts.sim.latent`; a fresh wrong answer of node (l, i) gets code ``NOISE_BASE + l * MAX_WIDTH +
i``, so copies of it can be traced to the node that wrote it.
"""

from __future__ import annotations

import numpy as np

from ..graph import FUSER, MAX_WIDTH
from .draws import OUTCOME_BITS, fold, run_bits
from .latent import (
    ANSWER,
    CORRECT,
    FUSE,
    MISSING,
    NOISE_BASE,
    REFINE,
    Thresholds,
    node_codes,
    right_threshold,
    vote_codes,
)

__all__ = ["sim_expect", "sim_node_keys", "sim_runs"]


CALL_DOMAIN = np.uint64(0x63616C6C)
"""The first word of every node key ("call"; csrc/simulate.hpp's ``kCallDomain``)."""


def sim_node_keys(model: np.ndarray, role: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``uint64[B, D, W]``: each node's key (0 in empty slots).

    call(l, i) = fold(fold(fold(CALL_DOMAIN, model), role), then each predecessor's key in slot
    order), and key(l, i) = fold(call(l, i), the number of earlier active slots of layer l with
    the same call): equal keys mean the same call (model, role and inputs, recursively) made
    the same number of times before, wherever the graph puts it.
    """
    b, d, w = model.shape
    keys = np.zeros((b, d, w), np.uint64)
    for layer in range(d):
        calls = np.zeros((b, w), np.uint64)
        for slot in range(w):
            k = fold(fold(np.full(b, CALL_DOMAIN), model[:, layer, slot].astype(np.uint64)),
                     role[:, layer, slot].astype(np.uint64))
            if layer > 0:
                for p in range(w):
                    k = np.where(edges[:, layer - 1, p, slot] != 0,
                                 fold(k, keys[:, layer - 1, p]), k)
            calls[:, slot] = k
            active = model[:, layer, :slot] >= 0
            occurrence = ((calls[:, :slot] == k[:, None]) & active).sum(axis=1)
            keys[:, layer, slot] = np.where(model[:, layer, slot] >= 0,
                                            fold(k, occurrence.astype(np.uint64)), np.uint64(0))
    return keys


def _thresholds(fail, right, pick, cuts, keep) -> Thresholds:
    return Thresholds(fail=fail, right=right, pick=pick, cuts=cuts, keep=keep)


def _kind(role: np.ndarray, preds: list[int]) -> int:
    if not preds:
        return ANSWER
    return FUSE if role == FUSER else REFINE


def _graph_codes(th: Thresholds, model, role, edges, keys, question_keys, samples, seed,
                 stop_before: int | None = None):
    """Codes of every node of one graph, ``{flat index: int16[Q, S]}``, in layer order; stops
    (without drawing it) at flat node ``stop_before``. Also returns each node's inputs."""
    d, w = model.shape
    q_index = np.arange(len(question_keys))[:, None]
    bits = run_bits(seed, question_keys, keys.reshape(-1), samples)       # [Q, D*W, S]
    codes: dict[int, np.ndarray] = {}
    preds: dict[int, list[int]] = {}
    for layer in range(d):
        for slot in range(w):
            if model[layer, slot] < 0:
                continue
            flat = layer * w + slot
            preds[flat] = ([] if layer == 0 else
                           [(layer - 1) * w + p for p in range(w) if edges[layer - 1, p, slot]])
            if flat == stop_before:
                return codes, preds
            codes[flat] = node_codes(th, int(model[layer, slot]),
                                     _kind(role[layer, slot], preds[flat]), q_index,
                                     [codes[p] for p in preds[flat]], bits[:, flat, :],
                                     NOISE_BASE + layer * MAX_WIDTH + slot)
    return codes, preds


def sim_runs(model, role, edges, keys, sinks, fail, right, pick, cuts, keep,
                  question_keys, samples, seed):
    """Every node's code and the voted code of each run: ``(codes int16[B, Q, S, D, W],
    winner int16[B, Q, S])``; empty slots hold MISSING. ``sinks[b]`` lists graph b's sinks as
    flat indices ``l * W + i`` in vote order, padded with -1."""
    th = _thresholds(fail, right, pick, cuts, keep)
    b_count, d, w = model.shape
    q, s = len(question_keys), len(samples)
    codes = np.full((b_count, q, s, d, w), MISSING, np.int16)
    winner = np.empty((b_count, q, s), np.int16)
    for b in range(b_count):
        out, _ = _graph_codes(th, model[b], role[b], edges[b], keys[b], question_keys, samples,
                              seed)
        for flat, c in out.items():
            codes[b, :, :, flat // w, flat % w] = c
        winner[b] = vote_codes([out[int(k)] for k in sinks[b] if k >= 0])
    return codes, winner


def sim_expect(model, role, edges, keys, sinks, fail, right, pick, cuts, keep,
               question_keys, samples, seed, lone_sink_mean):
    """Per graph and question, the sum and the sum of squares over samples of each run's
    score: ``(sum float64[B, Q], sumsq float64[B, Q])``.

    A run scores 1 when its vote is right. With ``lone_sink_mean``, a graph with a single sink
    scores instead that sink's probability of answering right given its inputs' codes (same
    mean, less Monte-Carlo noise). Scores are multiples of 2**-24, summed exactly; the exact sum
    of their squares is rounded once to float64.
    """
    th = _thresholds(fail, right, pick, cuts, keep)
    b_count, d, w = model.shape
    q = len(question_keys)
    total = np.empty((b_count, q))
    total_sq = np.empty((b_count, q))
    for b in range(b_count):
        order = [int(k) for k in sinks[b] if k >= 0]
        if lone_sink_mean and len(order) == 1:
            sink = order[0]
            codes, preds = _graph_codes(th, model[b], role[b], edges[b], keys[b], question_keys,
                                        samples, seed, stop_before=sink)
            k = int(model[b, sink // w, sink % w])
            inputs = [codes[p] for p in preds[sink]]
            t_right, _, _ = right_threshold(th, k, _kind(role[b, sink // w, sink % w],
                                                         preds[sink]),
                                            np.arange(q)[:, None], inputs)
            units = np.broadcast_to(t_right - th.fail[k], (q, len(samples)))
        else:
            codes, _ = _graph_codes(th, model[b], role[b], edges[b], keys[b], question_keys,
                                    samples, seed)
            right_vote = vote_codes([codes[k] for k in order]) == CORRECT
            units = np.where(right_vote, np.int64(1) << OUTCOME_BITS, 0)
        total[b] = units.sum(axis=1) * 2.0**-OUTCOME_BITS
        # squares of scores < 2**25 split in 12-bit halves, so every partial sum fits int64
        hi, lo = units >> 12, units & 0xFFF
        parts = zip((hi * hi).sum(axis=1), (hi * lo).sum(axis=1), (lo * lo).sum(axis=1))
        total_sq[b] = [float((int(a) << 24) + (int(c) << 13) + int(e)) * 2.0**(-2 * OUTCOME_BITS)
                       for a, c, e in parts]
    return total, total_sq
