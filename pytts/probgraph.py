"""The probabilistic graph: distributions over depth, width, models, roles and edges.

A `ProbGraph` is the search distribution of Agent-REINFORCE and REINFORCE. The sampling
semantics of its logits are documented in ``pytts._reference`` and implemented by the kernels:
`sample`, `log_prob` and `grad_log_prob` call down into `pytts.kernels` with the logits, validated
once per set of values and cached with the sampler's tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from . import kernels
from .cost import Budget, CostModel, as_flops
from .graph import ROLES, CollaborationGraph, GraphBatch, check_template
from .logspace import log_softmax, softmax

_LOGIT_FIELDS = ("depth_logits", "width_logits", "model_logits", "role_logits", "edge_logits")


@dataclass
class ProbGraphGrad:
    """A gradient (or any update direction) with one array per ProbGraph logit array."""

    depth_logits: np.ndarray
    width_logits: np.ndarray
    model_logits: np.ndarray
    role_logits: np.ndarray
    edge_logits: np.ndarray

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f) for f in _LOGIT_FIELDS)

    def __mul__(self, scale: float) -> ProbGraphGrad:
        return ProbGraphGrad(*(a * scale for a in self.arrays()))

    __rmul__ = __mul__

    def __add__(self, other: ProbGraphGrad) -> ProbGraphGrad:
        return ProbGraphGrad(*(a + b for a, b in zip(self.arrays(), other.arrays())))

    def norm(self) -> float:
        """Euclidean norm over all arrays."""
        return float(np.sqrt(sum(float((a * a).sum()) for a in self.arrays())))


@dataclass
class ProbGraph:
    """Logits of a distribution over collaboration graphs on a ``D x W`` template.

    ``depth_logits[D]`` (depth 1..D), ``width_logits[D, D, W]`` (width of layer l given depth d
    at ``[d-1, l]``), ``model_logits[D, W, K]``, ``role_logits[D, W, R]`` and Bernoulli
    ``edge_logits[D-1, W, W]``. ``model_names`` are the pool's names, in pool order.
    """

    depth_logits: np.ndarray
    width_logits: np.ndarray
    model_logits: np.ndarray
    role_logits: np.ndarray
    edge_logits: np.ndarray
    model_names: tuple[str, ...] = field(default_factory=tuple)
    _kernel: kernels.Logits | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _LOGIT_FIELDS:
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        d = self.depth_logits.shape[0]
        w = self.model_logits.shape[1]
        check_template(d, w)
        if not self.model_names:
            self.model_names = tuple(f"m{k}" for k in range(self.model_logits.shape[2]))
        self.model_names = tuple(self.model_names)
        if len(self.model_names) != self.model_logits.shape[2]:
            raise ValueError(f"model_names has {len(self.model_names)} names, model_logits "
                             f"{self.model_logits.shape[2]} models")
        self._kernel_logits()  # shapes and finiteness, with errors naming the array

    # ------------------------------------------------------------- constructors
    @classmethod
    def uniform(cls, depth: int, width: int, model_names: Sequence[str],
                n_roles: int = len(ROLES)) -> ProbGraph:
        """All logits zero: depth, widths, models and roles uniform; each edge p = 0.5."""
        check_template(depth, width)
        k = len(model_names)
        if k < 1:
            raise ValueError("model_names must not be empty")
        return cls(np.zeros(depth), np.zeros((depth, depth, width)), np.zeros((depth, width, k)),
                   np.zeros((depth, width, n_roles)), np.zeros((max(depth - 1, 0), width, width)),
                   tuple(model_names))

    @classmethod
    def from_preference(cls, depth: int, width: int, model_names: Sequence[str],
                        preference: Sequence[float] | dict[str, float],
                        n_roles: int = len(ROLES)) -> ProbGraph:
        """Uniform structure; every slot's model distribution proportional to ``preference``.

        ``preference`` is a weight per model (a sequence in pool order or a name -> weight
        mapping; missing names weigh 0). Zero weights become a small floor (1e-3 of the total)
        so that no model is ruled out for good.
        """
        pg = cls.uniform(depth, width, model_names, n_roles)
        if isinstance(preference, dict):
            unknown = set(preference) - set(model_names)
            if unknown:
                raise ValueError(f"preference names unknown models {sorted(unknown)}")
            weights = np.array([float(preference.get(n, 0.0)) for n in model_names])
        else:
            weights = np.asarray(preference, dtype=np.float64)
        if weights.shape != (len(model_names),) or not np.isfinite(weights).all() \
                or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("preference must be one finite weight >= 0 per model, not all 0")
        weights = np.maximum(weights / weights.sum(), 1e-3)
        pg.model_logits[:] = np.log(weights)
        return pg

    @classmethod
    def from_arrays(cls, arrays: Iterable[np.ndarray], model_names: tuple[str, ...]) -> ProbGraph:
        """A ProbGraph of the five logit arrays, in `logit_arrays` order, over ``model_names``."""
        # Unpacked by name: with ``cls(*arrays, model_names=...)`` mypy cannot tell that the
        # arrays fill only the logit fields.
        depth, width, model, role, edge = arrays
        return cls(depth, width, model, role, edge, model_names=model_names)

    # ------------------------------------------------------------- shape
    @property
    def depth_max(self) -> int:
        return self.depth_logits.shape[0]

    @property
    def width_max(self) -> int:
        return self.model_logits.shape[1]

    @property
    def n_models(self) -> int:
        return self.model_logits.shape[2]

    @property
    def n_roles(self) -> int:
        return self.role_logits.shape[2]

    def logit_arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f) for f in _LOGIT_FIELDS)

    def copy(self) -> ProbGraph:
        return ProbGraph.from_arrays((a.copy() for a in self.logit_arrays()), self.model_names)

    # ------------------------------------------------------------- distributions
    def depth_probs(self) -> np.ndarray:
        """``P(depth = d + 1)`` for d in 0..D-1."""
        return softmax(self.depth_logits)

    def width_probs(self) -> np.ndarray:
        """``[D, D, W]``: ``P(width of layer l = w + 1 | depth = d + 1)`` at ``[d, l, w]``."""
        return softmax(self.width_logits, axis=-1)

    def model_probs(self) -> np.ndarray:
        """``[D, W, K]``: each slot's distribution over models."""
        return softmax(self.model_logits, axis=-1)

    def edge_probs(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.edge_logits))

    def mean_model_probs(self) -> np.ndarray:
        """``[K]``: the model distribution averaged over the slots a sample is expected to use."""
        usage = self.slot_usage()
        return np.einsum("lw,lwk->k", usage, self.model_probs()) / usage.sum()

    def slot_usage(self) -> np.ndarray:
        """``[D, W]``: probability that each slot holds a node."""
        pd, pw = self.depth_probs(), self.width_probs()
        # P(width >= i+1) for each (depth, layer): reversed cumulative sum over widths
        at_least = np.flip(np.cumsum(np.flip(pw, -1), -1), -1)
        layer_used = np.arange(self.depth_max)[None, :] < np.arange(1, self.depth_max + 1)[:, None]
        return np.einsum("d,dl,dlw->lw", pd, layer_used.astype(float), at_least)

    # ------------------------------------------------------------- kernels
    def _kernel_logits(self) -> kernels.Logits:
        """The logits as the kernels take them: validated, with the sampler's tables, and made
        again only when the arrays (replaced or changed in place) no longer hold those values."""
        arrays = self.logit_arrays()
        if self._kernel is None or not self._kernel.holds(arrays):
            self._kernel = kernels.Logits(*arrays)
        return self._kernel

    def sample(self, n: int, seed: int, budget: Budget | float | str | None = None,
               cost: CostModel | None = None, *, max_draws: int | None = None
               ) -> tuple[GraphBatch, np.ndarray, kernels.SampleStats]:
        """``n`` graphs (within ``budget`` if given, which needs ``cost``), their
        unconditioned log-probabilities, and acceptance statistics.

        Raises BudgetError when the budget admits no graph of the template (`Budget.resolve`
        checks that before sampling), or when fewer than ``n`` graphs were accepted within
        ``max_draws`` draws (default ``max(100_000, 2000 n)``).
        """
        limit = math.inf
        if budget is not None:
            if cost is None:
                raise ValueError("cost is required when a budget is given")
            limit = as_flops(budget, cost)
        table = cost.table if cost is not None else None
        model, role, edges, logp, stats = kernels.sample_graphs(
            self._kernel_logits(), n, seed, table, limit, max_draws=max_draws)
        return GraphBatch._of_samples(model, role, edges), logp, stats

    def log_prob(self, graphs: GraphBatch | CollaborationGraph | Sequence[CollaborationGraph]
                 ) -> np.ndarray:
        """Log-probability of each graph (-inf for graphs this distribution cannot produce)."""
        batch = _as_batch(graphs)
        return kernels.log_prob(self._kernel_logits(), batch.model, batch.role, batch.edges)

    def grad_log_prob(self, graphs: GraphBatch | CollaborationGraph | Sequence[CollaborationGraph],
                      weights: Sequence[float] | np.ndarray | None = None) -> ProbGraphGrad:
        """``sum_b weights[b] * grad log p(graph_b)`` (the REINFORCE score function)."""
        batch = _as_batch(graphs)
        return ProbGraphGrad(*kernels.grad_log_prob(self._kernel_logits(), batch.model,
                                                    batch.role, batch.edges, weights))

    def step(self, direction: ProbGraphGrad, lr: float) -> ProbGraph:
        """A new ProbGraph moved ``lr`` along ``direction`` (gradient ascent)."""
        moved = [a + lr * g for a, g in zip(self.logit_arrays(), direction.arrays())]
        return ProbGraph.from_arrays(moved, self.model_names)

    def entropy(self) -> float:
        """Exact entropy (nats) of the graph distribution (not only of the independent draws).

        A one-predecessor column can arise from a Bernoulli draw or from the forced edge;
        the per-column term accounts for that merge exactly.
        """
        d_max = self.depth_max
        pd = self.depth_probs()
        pw = self.width_probs()
        h = _cat_entropy(self.depth_logits)
        h_width = _cat_entropy(self.width_logits)                      # [D, D]
        h_slot = _cat_entropy(self.model_logits)                       # [D, W]
        h_slot[1:] += _cat_entropy(self.role_logits)[1:]
        nodes_upto = np.concatenate([np.zeros((d_max, 1)), np.cumsum(h_slot, axis=1)], axis=1)
        col = self._column_entropy_cumsum()                            # [D-1, W(src), W+1]
        for d in range(1, d_max + 1):
            hd = 0.0
            for l in range(d):
                hd += h_width[d - 1, l] + pw[d - 1, l] @ nodes_upto[l, 1:]
                if l < d - 1:
                    hd += pw[d - 1, l] @ col[l, :, 1:] @ pw[d - 1, l + 1]
            h += pd[d - 1] * hd
        return float(h)

    def _column_entropy_cumsum(self) -> np.ndarray:
        """``[D-1, W, W+1]``: at ``[l, w-1, n]`` the edge entropy of the first n columns into
        layer l+1 when layer l has w nodes."""
        d_max, w_max = self.depth_max, self.width_max
        out = np.zeros((max(d_max - 1, 0), w_max, w_max + 1))
        for l in range(d_max - 1):
            for w in range(1, w_max + 1):
                a = self.edge_logits[l, :w, :]                          # [w, W(cols)]
                sp = np.logaddexp(0.0, a)
                p = 1.0 / (1.0 + np.exp(-a))
                h_bern = (sp - p * a).sum(axis=0)                      # sum of h(p_i)
                log_z = -sp.sum(axis=0)
                log_a = a + log_z
                log_q = np.logaddexp(log_a, log_z - np.log(w))
                h_col = (h_bern + (np.exp(log_a) * log_a).sum(axis=0) + np.exp(log_z) * log_z
                         - (np.exp(log_q) * log_q).sum(axis=0))
                out[l, w - 1, 1:] = np.cumsum(h_col)
        return out

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the logits and model names to an ``.npz`` file."""
        np.savez(path, *self.logit_arrays(), model_names=json.dumps(list(self.model_names)))

    @classmethod
    def load(cls, path: str | Path) -> ProbGraph:
        with np.load(path, allow_pickle=False) as data:
            arrays = [data[f"arr_{k}"] for k in range(len(_LOGIT_FIELDS))]
            names = tuple(json.loads(str(data["model_names"])))
        return cls.from_arrays(arrays, names)

    def state_dict(self) -> dict:
        """JSON-ready logits and names (for searcher checkpoints)."""
        state = {f.name: getattr(self, f.name).tolist() for f in fields(self)
                 if f.name in _LOGIT_FIELDS}
        state["shapes"] = {f: list(getattr(self, f).shape) for f in _LOGIT_FIELDS}
        state["model_names"] = list(self.model_names)
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> ProbGraph:
        return cls.from_arrays((np.asarray(state[f], dtype=np.float64).reshape(state["shapes"][f])
                                 for f in _LOGIT_FIELDS), tuple(state["model_names"]))


def _cat_entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy of softmax(logits) along the last axis."""
    lsm = log_softmax(logits, axis=-1)
    return -(np.exp(lsm) * lsm).sum(axis=-1)


def _as_batch(graphs) -> GraphBatch:
    if isinstance(graphs, GraphBatch):
        return graphs
    if isinstance(graphs, CollaborationGraph):
        return GraphBatch.from_graphs([graphs])
    return GraphBatch.from_graphs(list(graphs))
