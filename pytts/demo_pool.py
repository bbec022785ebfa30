"""The built-in demo pool: open models of two families and several sizes (paper-like, 1B-8B).

Token and speed profiles are typical of these models served by vLLM on one GPU; they define
costs only. Simulated runs give these models skills per task (``pytts.sim``).
"""

from __future__ import annotations

from .pool import ModelPool, ModelSpec

DEMO_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("qwen2.5-1.5b", "qwen", 1.5, out_tokens=320, prefill_tps=9000, decode_tps=140,
              overhead_s=0.05),
    ModelSpec("qwen2.5-3b", "qwen", 3.0, out_tokens=300, prefill_tps=6000, decode_tps=100,
              overhead_s=0.06),
    ModelSpec("qwen2.5-7b", "qwen", 7.0, out_tokens=280, prefill_tps=3500, decode_tps=60,
              overhead_s=0.08),
    ModelSpec("llama3.2-1b", "llama", 1.2, out_tokens=260, prefill_tps=10000, decode_tps=160,
              overhead_s=0.05),
    ModelSpec("llama3.2-3b", "llama", 3.2, out_tokens=250, prefill_tps=6000, decode_tps=95,
              overhead_s=0.06),
    ModelSpec("llama3.1-8b", "llama", 8.0, out_tokens=240, prefill_tps=3200, decode_tps=55,
              overhead_s=0.08),
)


def demo_pool() -> ModelPool:
    """A fresh `ModelPool` of `DEMO_MODELS`."""
    return ModelPool(DEMO_MODELS)
