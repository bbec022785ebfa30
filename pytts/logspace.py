"""Numerically stable log-space functions on NumPy arrays: softmax, log-softmax, sigmoid, softplus.

They are what ``scipy.special`` offers under these names, written here so that ``import pytts``
does not pay scipy's import time. The formulas are the ones the C++ kernels use
(csrc/sample.hpp), so the NumPy reference and the distribution methods of `ProbGraph` agree
with the compiled kernels to rounding.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def log_softmax(x: npt.ArrayLike, axis: int = -1) -> FloatArray:
    """``x - logsumexp(x)`` along ``axis`` (shifted by the maximum, so never overflows)."""
    a = np.asarray(x, dtype=np.float64)
    shifted = a - np.max(a, axis=axis, keepdims=True)
    out: FloatArray = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return out


def softmax(x: npt.ArrayLike, axis: int = -1) -> FloatArray:
    """``exp(log_softmax(x))`` along ``axis``."""
    out: FloatArray = np.exp(log_softmax(x, axis))
    return out


def softplus(a: npt.ArrayLike) -> FloatArray:
    """``log(1 + exp(a))`` without overflow."""
    out: FloatArray = np.logaddexp(0.0, np.asarray(a, dtype=np.float64))
    return out


def sigmoid(a: npt.ArrayLike) -> FloatArray:
    """``1 / (1 + exp(-a))`` without overflow for large ``|a|``."""
    x = np.asarray(a, dtype=np.float64)
    e = np.exp(-np.abs(x))
    out: FloatArray = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return out
