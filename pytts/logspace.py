"""Numerically stable log-space functions on NumPy arrays: softmax, log-softmax, sigmoid, softplus.

They are what ``scipy.special`` offers under these names, written here so that ``import pytts``
does not pay scipy's import time. The formulas are the ones the C++ kernels use
(csrc/sample.hpp), so the NumPy reference and the distribution methods of `ProbGraph` agree
with the compiled kernels to rounding.
"""

from __future__ import annotations

import numpy as np


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` along ``axis`` (shifted by the maximum, so never overflows)."""
    x = np.asarray(x, dtype=np.float64)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(log_softmax(x))`` along ``axis``."""
    return np.exp(log_softmax(x, axis))


def softplus(a: np.ndarray) -> np.ndarray:
    """``log(1 + exp(a))`` without overflow."""
    return np.logaddexp(0.0, a)


def sigmoid(a: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-a))`` without overflow for large ``|a|``."""
    a = np.asarray(a, dtype=np.float64)
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
