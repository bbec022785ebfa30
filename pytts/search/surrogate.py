"""A surrogate of a graph's accuracy from what a run observes: a Gaussian process over generic
test-time-scaling descriptors of the graph (docs/method.md, "The surrogate").

The descriptors are what any TTS practitioner would tabulate: how many first answers each model
writes, how many refinements and fusions it does, how deep the graph is and how many answers are
voted. Nothing of how answers are produced is assumed; the GP learns how these descriptors map to
measured accuracy, with each measurement's binomial noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from ..graph import ASSISTANT, FUSER, CollaborationGraph

_LENGTHSCALES = (0.6, 1.0, 1.6, 2.6)
_SIGNAL_VARIANCES = (0.0015, 0.006, 0.024)
_NOISE_FLOOR = 0.05
"""Floor of p(1-p) in a measurement's noise, so 0% or 100% on few questions is not certain."""


def graph_features(graph: CollaborationGraph) -> np.ndarray:
    """Descriptors of ``graph``: per model, log(1 + count) of its first answers, refinements
    and fusions; then log(1 + depth - 1), log(1 + number of voted answers) and
    log(1 + number of nodes) (length ``3 K + 3`` for a pool of K models)."""
    k = len(graph.model_names)
    active = graph.active
    model, role = graph.model, graph.role
    first = np.bincount(model[0][active[0]], minlength=k)
    later = active.copy()
    later[0] = False
    refine = np.bincount(model[later & (role == ASSISTANT)], minlength=k)
    fuse = np.bincount(model[later & (role == FUSER)], minlength=k)
    shape = [graph.depth - 1, len(graph.sinks()), graph.n_nodes]
    return np.log1p(np.concatenate([first, refine, fuse, shape]).astype(np.float64))


def features_of(graphs: Sequence[CollaborationGraph]) -> np.ndarray:
    """`graph_features` of each graph, stacked ``[G, 3K + 3]``."""
    return np.array([graph_features(g) for g in graphs], dtype=np.float64)


@dataclass(frozen=True)
class Observation:
    """One measured graph: its accuracy on ``n`` questions."""

    graph: CollaborationGraph
    accuracy: float
    n: int


class GraphSurrogate:
    """GP regression of accuracy on `graph_features`, with per-observation binomial noise.

    Kernel: ``s2 * exp(-|x - x'|^2 / (2 l^2))`` with a constant mean (the observations' mean);
    ``l`` and ``s2`` are picked on a small grid by marginal likelihood at every `fit`.
    """

    def __init__(self) -> None:
        self._x: np.ndarray | None = None
        self._alpha: np.ndarray | None = None
        self._chol: np.ndarray | None = None
        self.mean = 0.5
        self.lengthscale = _LENGTHSCALES[1]
        self.signal = _SIGNAL_VARIANCES[1]

    @property
    def fitted(self) -> bool:
        return self._x is not None

    def fit(self, observations: Sequence[Observation]) -> GraphSurrogate:
        """Fit to ``observations`` (repeated graphs are fine: each is a measurement)."""
        if not observations:
            raise ValueError("the surrogate needs at least one observation")
        return self.fit_features(features_of([o.graph for o in observations]),
                                 np.array([o.accuracy for o in observations]),
                                 np.array([o.n for o in observations]))

    def fit_features(self, x: np.ndarray, accuracy: np.ndarray, n: np.ndarray
                     ) -> GraphSurrogate:
        """`fit` to observations given as arrays: `features_of` their graphs ``[N, 3K + 3]``,
        their accuracies ``[N]`` and their numbers of questions ``[N]`` (for callers that refit
        often and keep the features)."""
        if len(x) == 0 or not len(x) == len(accuracy) == len(n):
            raise ValueError(f"the surrogate needs as many features as accuracies and counts "
                             f"(at least one), got {len(x)}, {len(accuracy)}, {len(n)}")
        y = np.asarray(accuracy, dtype=np.float64)
        n = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
        self.mean = float(np.average(y, weights=n))
        p = np.clip((y * n + self.mean) / (n + 1), 0.0, 1.0)
        noise = np.maximum(p * (1 - p), _NOISE_FLOOR) / n
        d2 = _sq_dist(x, x)
        best = None
        for ls in _LENGTHSCALES:
            base = np.exp(-d2 / (2 * ls * ls))
            for s2 in _SIGNAL_VARIANCES:
                cov = s2 * base + np.diag(noise)
                try:
                    chol = np.linalg.cholesky(cov)
                except np.linalg.LinAlgError:
                    continue
                alpha = _solve(chol, y - self.mean)
                # log marginal likelihood up to a constant
                lml = -0.5 * (y - self.mean) @ alpha - np.log(np.diag(chol)).sum()
                if best is None or lml > best[0]:
                    best = (lml, ls, s2, chol, alpha)
        if best is None:
            raise ValueError("the surrogate's covariance is not positive definite")
        _, self.lengthscale, self.signal, self._chol, self._alpha = best
        self._x = x
        return self

    def predict(self, graphs: Sequence[CollaborationGraph] | np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the accuracy of each graph (the prior's,
        mean and sqrt(signal), before `fit`)."""
        x = graphs if isinstance(graphs, np.ndarray) else features_of(graphs)
        if self._x is None or self._alpha is None or self._chol is None:
            return (np.full(len(x), self.mean), np.full(len(x), math.sqrt(self.signal)))
        cross = self.signal * np.exp(-_sq_dist(x, self._x) / (2 * self.lengthscale ** 2))
        mu = self.mean + cross @ self._alpha
        v = np.linalg.solve(self._chol, cross.T)
        var = np.maximum(self.signal - (v * v).sum(axis=0), 1e-12)
        return mu, np.sqrt(var)


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """E[max(f - best, 0)] for f ~ N(mu, sd^2), elementwise."""
    sd = np.maximum(sd, 1e-12)
    z = (mu - best) / sd
    cdf = ndtr(z)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return (mu - best) * cdf + sd * pdf


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def _solve(chol: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.solve(chol.T, np.linalg.solve(chol, y))
