"""Types of the compiled kernels (csrc/bindings.cpp); `pytts._reference` is their NumPy twin.

Every array argument must be a C-contiguous, aligned numpy array of exactly the dtype given
here (no implicit conversion); anything else is a ValueError naming the argument.
"""

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

MAX_DEPTH: Final[int]
MAX_WIDTH: Final[int]
MAX_MODELS: Final[int]
MAX_ROLES: Final[int]
FNV_OFFSET: Final[int]
FNV_PRIME: Final[int]
BUILD_FLAGS: Final[str]

_F64 = npt.NDArray[np.float64]
_Graphs = tuple[npt.NDArray[np.int16], npt.NDArray[np.int8], npt.NDArray[np.uint8]]
_Sample = tuple[npt.NDArray[np.int16], npt.NDArray[np.int8], npt.NDArray[np.uint8], _F64, int]

def graph_cost(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
               edges: npt.NDArray[np.uint8], model_costs: _F64,
               base_prompt_tokens: float) -> tuple[_F64, _F64]:
    """``(flops[B], latency[B])`` of a batch of graphs."""

def feasible(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
             edges: npt.NDArray[np.uint8], model_costs: _F64, base_prompt_tokens: float,
             budget: float) -> npt.NDArray[np.bool_]:
    """``bool[B]``: flops <= budget."""

def log_prob(depth_logits: _F64, width_logits: _F64, model_logits: _F64, role_logits: _F64,
             edge_logits: _F64, model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
             edges: npt.NDArray[np.uint8]) -> _F64:
    """``logp[B]`` of each graph (-inf outside the support)."""

def grad_log_prob(depth_logits: _F64, width_logits: _F64, model_logits: _F64,
                  role_logits: _F64, edge_logits: _F64, model: npt.NDArray[np.int16],
                  role: npt.NDArray[np.int8], edges: npt.NDArray[np.uint8],
                  weights: _F64) -> tuple[_F64, _F64, _F64, _F64, _F64]:
    """Weighted sum of the graphs' score functions, shaped like the logits."""

def sample_graphs(depth_logits: _F64, width_logits: _F64, model_logits: _F64,
                  role_logits: _F64, edge_logits: _F64, model_costs: _F64 | None,
                  base_prompt_tokens: float, n: int, seed: int, budget: float,
                  max_draws: int) -> _Sample:
    """``(model, role, edges, logp, n_drawn)``: up to n graphs, rejection-conditioned on
    flops <= budget (``inf``: no budget, and model_costs is not read)."""

class Sampler:
    """The sampling tables of one set of logits, built once; `sample` draws."""

    def __init__(self, depth_logits: _F64, width_logits: _F64, model_logits: _F64,
                 role_logits: _F64, edge_logits: _F64) -> None: ...
    def sample(self, model_costs: _F64 | None, base_prompt_tokens: float, n: int, seed: int,
               budget: float, max_draws: int) -> _Sample:
        """``(model, role, edges, logp, n_drawn)``, as `sample_graphs`."""

def vote(ids: npt.NDArray[np.int64],
         weights: _F64 | None = None) -> tuple[npt.NDArray[np.int64], _F64]:
    """``(winner[Q], support[Q])`` of a weighted vote per row; -1 ids are missing."""

def intern_answers(answers: Sequence[str | None]) -> npt.NDArray[np.int64]:
    """int64 ids: FNV-1a 64 of the UTF-8, top bit cleared; None -> -1."""

def extract_final_answer(text: str) -> str | None:
    """The X of the last "The answer is X" (letters upper-cased), else None."""

def extract_number(text: str) -> str | None:
    """The number after the last "answer is", else the last number, canonically; or None."""

def canonical_order(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
                    edges: npt.NDArray[np.uint8]) -> npt.NDArray[np.int32]:
    """int32[B, D, W]: each layer's slots in canonical order (then -1)."""

# The simulator's latent-code kernel; its NumPy twin is `pytts.sim.simulate_reference`.
def sim_node_keys(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
                  edges: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """uint64[B, D, W]: the simulator's key of each node (0 in empty slots)."""

def sim_runs(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
             edges: npt.NDArray[np.uint8], keys: npt.NDArray[np.uint64],
             sinks: npt.NDArray[np.int32], fail: npt.NDArray[np.uint32],
             right: npt.NDArray[np.uint32], pick: npt.NDArray[np.uint32],
             cuts: npt.NDArray[np.uint32], keep: npt.NDArray[np.uint32],
             question_keys: npt.NDArray[np.uint64], samples: npt.NDArray[np.int64],
             seed: int) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    """(codes int16[B, Q, S, D, W], winner int16[B, Q, S]) of simulated runs."""

def sim_expect(model: npt.NDArray[np.int16], role: npt.NDArray[np.int8],
               edges: npt.NDArray[np.uint8], keys: npt.NDArray[np.uint64],
               sinks: npt.NDArray[np.int32], fail: npt.NDArray[np.uint32],
               right: npt.NDArray[np.uint32], pick: npt.NDArray[np.uint32],
               cuts: npt.NDArray[np.uint32], keep: npt.NDArray[np.uint32],
               question_keys: npt.NDArray[np.uint64], samples: npt.NDArray[np.int64],
               seed: int, lone_sink_mean: bool) -> tuple[_F64, _F64]:
    """(sum[B, Q], sumsq[B, Q]) over samples of each simulated run's score."""
