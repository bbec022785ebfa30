"""The Python face of the simulator's latent-code kernel: builds its arrays from graphs, questions
and a preset's `Thresholds`, checks them once, and runs the compiled kernel (``pytts._core``) or
its NumPy twin (`pytts.sim.simulate_reference`), whichever `pytts.kernels.BACKEND` selects
(``PYTTS_FORCE_REFERENCE`` forces the twin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from .. import kernels
from ..graph import FUSER, CollaborationGraph, GraphBatch
from . import simulate_reference
from .latent import Thresholds

__all__ = ["BACKEND", "SimGraphs", "kernel_arguments", "run_codes", "score_sums"]


def _select_backend() -> tuple[str, ModuleType]:
    if kernels.BACKEND == "core":
        from .. import _core
        if hasattr(_core, "sim_runs"):
            return "core", _core
    return "reference", simulate_reference


BACKEND, _impl = _select_backend()


@dataclass(frozen=True)
class SimGraphs:
    """Graphs as the kernel reads them: a batch with model indices into the preset's pool, each
    node's key, and each graph's sinks in vote order (flat ``l * W + i``, padded with -1)."""

    batch: GraphBatch
    keys: np.ndarray        # uint64 [B, D, W]
    sinks: np.ndarray       # int16 [B, D * W]

    @property
    def max_fuser_inputs(self) -> int:
        """The most candidates any fuser of the batch is shown (at least 1)."""
        edges = self.batch.edges
        if not edges.size:
            return 1
        fan_in = edges.sum(axis=2, dtype=np.int64)        # [B, D-1, W]: inputs of layer l + 1
        fusers = self.batch.role[:, 1:, :] == FUSER
        return max(1, int((fan_in * fusers).max()))

    @classmethod
    def of(cls, graphs: Sequence[CollaborationGraph], model_names: Sequence[str],
           keys: np.ndarray | None = None) -> SimGraphs:
        """``graphs`` (one template) for a pool whose models are ``model_names``; ``keys``
        replaces the structural node keys (e.g. the keys of a text-path run)."""
        if not graphs:
            raise ValueError("graphs must not be empty")
        names = list(model_names)
        unknown = sorted({n for g in graphs for n in g.model_names if n not in names})
        if unknown:
            raise ValueError(f"graph uses model(s) {unknown} outside the simulated pool "
                             f"({', '.join(names)})")
        models = []
        for g in graphs:
            to_pool = np.array([names.index(n) for n in g.model_names] + [-1], np.int16)
            models.append(to_pool[g.model])  # -1 (empty) indexes the trailing -1
        batch = GraphBatch(np.stack(models), np.stack([g.role for g in graphs]),
                           np.stack([g.edges for g in graphs]))
        d, w = batch.template
        sinks = np.full((len(graphs), d * w), -1, np.int16)
        for b, g in enumerate(graphs):
            order = [layer * w + slot for layer, slot in g.vote_order()]
            sinks[b, :len(order)] = order
        if keys is None:
            keys = _impl.sim_node_keys(batch.model, batch.role, batch.edges)
        else:
            keys = np.ascontiguousarray(keys, np.uint64)
            if keys.shape != batch.model.shape:
                raise ValueError(f"keys must have shape {batch.model.shape}, got {keys.shape}")
        return cls(batch, keys, sinks)


def kernel_arguments(graphs: SimGraphs, th: Thresholds, qkeys: np.ndarray,
                     samples: Sequence[int] | np.ndarray, seed: int) -> tuple:
    """The positional arguments of both backends' ``sim_runs``/``sim_expect``, checked."""
    if th.max_inputs < graphs.max_fuser_inputs:
        raise ValueError(f"thresholds cover fusers of up to {th.max_inputs} inputs, the graphs "
                         f"have one of {graphs.max_fuser_inputs}")
    qkeys = np.ascontiguousarray(qkeys, np.uint64)
    if qkeys.ndim != 1 or th.right.shape[1] != len(qkeys):
        raise ValueError(f"question_keys must be [Q] with Q = {th.right.shape[1]} (the "
                         f"thresholds' questions), got shape {qkeys.shape}")
    sample_arr = np.ascontiguousarray(samples, np.uint64)
    if sample_arr.ndim != 1 or not len(sample_arr):
        raise ValueError("samples must be a non-empty 1-D sequence of sample numbers")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    b = graphs.batch
    tables = [np.ascontiguousarray(a, np.int64) for a in (th.fail, th.right, th.pick, th.cuts,
                                                           th.keep)]
    return (b.model, b.role, b.edges, graphs.keys, graphs.sinks, *tables, qkeys, sample_arr,
            int(seed))


def run_codes(graphs: SimGraphs, th: Thresholds, qkeys: np.ndarray,
              samples: Sequence[int] | np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every node's answer code and each run's voted code, for every graph x question x sample:
    ``(codes int16[B, Q, S, D, W], winner int16[B, Q, S])``."""
    return _impl.sim_runs(*kernel_arguments(graphs, th, qkeys, samples, seed))


def score_sums(graphs: SimGraphs, th: Thresholds, qkeys: np.ndarray,
               samples: Sequence[int] | np.ndarray, seed: int, *,
               lone_sink_mean: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per graph and question, the sum and sum of squares over ``samples`` of each run's score
    (1 for a right vote; with ``lone_sink_mean``, a single sink's probability of being right
    given its inputs): ``(float64[B, Q], float64[B, Q])``."""
    return _impl.sim_expect(*kernel_arguments(graphs, th, qkeys, samples, seed),
                            bool(lone_sink_mean))
