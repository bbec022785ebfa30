"""The constants both kernel twins and every layer above them share: template limits, the FNV-1a
parameters of answer interning, the FLOPs factor and the layout of the kernels' cost table.

The compiled module holds its own copies where C++ needs them at compile time (array sizes, hash
constants); it exports them, and a test checks that they equal these.
"""

from __future__ import annotations

MAX_DEPTH = 16
"""Most layers a graph template may have (sizes the kernels' per-graph scratch)."""

MAX_WIDTH = 64
"""Most slots per layer (a node's predecessor set is one 64-bit mask)."""

MAX_MODELS = 32767
"""Most models in a pool: model indices are stored as int16."""

MAX_ROLES = 127
"""Most roles in the role registry: roles are stored as int8."""

FNV_OFFSET = 0xCBF29CE484222325
"""FNV-1a 64 offset basis (answer interning)."""

FNV_PRIME = 0x100000001B3
"""FNV-1a 64 prime (answer interning)."""

FLOPS_PER_PARAM_TOKEN = 2.0
"""A decoder's forward pass costs about 2 FLOPs per parameter per token."""

COST_COLUMNS: tuple[str, ...] = ("flops_per_token", "out_tokens", "prefill_tps", "decode_tps",
                                 "overhead_s")
"""Columns of the kernels' per-model cost table, in order (``flops_per_token`` is
``FLOPS_PER_PARAM_TOKEN * 1e9 * params_b``: the kernels carry no FLOPs factor of their own)."""
