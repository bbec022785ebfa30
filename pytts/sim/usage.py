"""Simulated usage of a call: how long a reply runs and how its latency varies, drawn from the
call's keyed bits (`pytts.sim.draws`), so the text path and the fast evaluator agree."""

from __future__ import annotations

import numpy as np

from .draws import DRAW_LATENCY, DRAW_TOKENS, normal

__all__ = ["MIN_REPLY_TOKENS", "latency_factor", "reply_tokens"]

TOKEN_SIGMA = 0.25      # lognormal spread of completion lengths
LATENCY_SIGMA = 0.06    # lognormal spread of latencies (load, scheduling)
MIN_REPLY_TOKENS = 8


def reply_tokens(out_tokens: np.ndarray | float, bits: np.ndarray) -> np.ndarray:
    """Completion tokens of each call (before any ``max_tokens`` cut): a mean-preserving
    lognormal around the model's ``out_tokens``, so the CostModel's mean stays right."""
    drawn = np.asarray(out_tokens) * np.exp(TOKEN_SIGMA * normal(bits, DRAW_TOKENS)
                                            - TOKEN_SIGMA ** 2 / 2)
    return np.maximum(MIN_REPLY_TOKENS, np.rint(drawn)).astype(np.int64)


def latency_factor(bits: np.ndarray) -> np.ndarray:
    """The factor by which each call's latency departs from its speed profile."""
    return np.exp(LATENCY_SIGMA * normal(bits, DRAW_LATENCY))
