"""Keyed random draws of the simulator: a counter-based hash of (seed, question, node, sample).

Every random choice of the latent model is a pure function of its key, so the text path
(`pytts.sim.client`), the NumPy twin and the C++ kernel (csrc/simulate.hpp, which writes the
same functions) draw identical bits for equal keys, in any order and any batch. A node's 64 bits
for one run are ``fold(fold(fold(seed, question key), node key), sample)``; they are read as
fields (`outcome_field` and friends) and extended by `extra_bits` for text-only choices
(reply length, latency, a fresh wrong answer).

The hash is splitmix64's finalizer; ``fold`` hashes the added word before mixing it in, so keys
that differ in one bit give unrelated streams.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["DRAW_FRESH", "DRAW_LATENCY", "DRAW_TEXT", "DRAW_TOKENS", "GOLDEN", "KEEP_BITS",
           "OUTCOME_BITS", "WRONG_BITS", "extra_bits", "fold", "keep_field", "mix64", "normal",
           "outcome_field", "run_bits", "to_threshold", "uniform53", "wrong_field"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

OUTCOME_BITS = 24
"""Resolution of the outcome draw (no answer / right / wrong): probabilities are multiples of
2**-24, fine enough that the quantisation (< 6e-8) is far below any Monte-Carlo error."""
WRONG_BITS = 16
"""Resolution of the draw that picks which wrong answer."""
KEEP_BITS = 16
"""Resolution of the draw that decides whether a refiner keeps (a fuser follows) a wrong input."""

# Numbers of the extra draws of a run (`extra_bits`), by what they decide.
DRAW_TOKENS = 1     # the reply's length (a normal deviate: draws 1 and 2)
DRAW_LATENCY = 3    # the call's latency noise (draws 3 and 4)
DRAW_TEXT = 5       # seeds the generator that writes the reply's text
DRAW_FRESH = 6      # a fresh free-form wrong answer (6, 7, ... until one is new)

_U64 = np.uint64
_S30, _S27, _S31 = _U64(30), _U64(27), _U64(31)


def _u64(x: object) -> np.ndarray:
    # Arrays of at least one dimension, never NumPy scalars: uint64 arithmetic on arrays wraps
    # silently, as in C++, where scalar arithmetic would warn on overflow.
    return np.atleast_1d(np.asarray(x, dtype=np.uint64))


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on ``uint64`` arrays (wrapping arithmetic)."""
    return _mix(_u64(x))


def fold(h: ArrayLike, v: ArrayLike) -> np.ndarray:
    """``h`` with the word ``v`` hashed into it (broadcasting)."""
    return _mix(_u64(h) ^ _mix(_u64(v) + GOLDEN))


def run_bits(seed: int, question_keys: np.ndarray, node_keys: np.ndarray,
             samples: np.ndarray) -> np.ndarray:
    """The 64 bits of each (question, node, sample): ``uint64[Q, N, S]``."""
    base = fold(fold(_u64([seed]), _u64(question_keys))[:, None], _u64(node_keys)[None, :])
    return fold(base[:, :, None], _u64(samples)[None, None, :])


def extra_bits(bits: np.ndarray, draw: int | np.ndarray) -> np.ndarray:
    """Further independent bits of the same run, numbered by ``draw`` >= 1 (an int, or an
    array of draw numbers, broadcasting)."""
    return fold(bits, _u64(draw))


def outcome_field(bits: np.ndarray) -> np.ndarray:
    """The outcome draw, an integer in [0, 2**OUTCOME_BITS)."""
    return (_u64(bits) >> _U64(64 - OUTCOME_BITS)).astype(np.int64)


def wrong_field(bits: np.ndarray) -> np.ndarray:
    """The wrong-answer draw, an integer in [0, 2**WRONG_BITS)."""
    return ((_u64(bits) >> _U64(KEEP_BITS)) & _U64(2**WRONG_BITS - 1)).astype(np.int64)


def keep_field(bits: np.ndarray) -> np.ndarray:
    """The keep/follow draw, an integer in [0, 2**KEEP_BITS)."""
    return (_u64(bits) & _U64(2**KEEP_BITS - 1)).astype(np.int64)


def uniform53(bits: np.ndarray) -> np.ndarray:
    """A float64 uniform in [0, 1) from the top 53 bits."""
    return (_u64(bits) >> _U64(11)).astype(np.float64) * 2.0**-53


def to_threshold(p: ArrayLike, bits: int) -> np.ndarray:
    """Probabilities ``p`` in [0, 1] as integer thresholds: a ``bits``-bit field ``f`` is below
    the threshold with probability ``p`` rounded to a multiple of ``2**-bits``."""
    return np.rint(np.asarray(p, dtype=np.float64) * float(2**bits)).astype(np.int64)


def normal(bits: np.ndarray, draw: int) -> np.ndarray:
    """A standard normal deviate per run (Box-Muller over extra draws ``draw`` and ``draw + 1``)."""
    pair = uniform53(extra_bits(_u64(bits)[..., None], np.array([draw, draw + 1], np.uint64)))
    return np.sqrt(-2.0 * np.log1p(-pair[..., 0])) * np.cos(2.0 * np.pi * pair[..., 1])
