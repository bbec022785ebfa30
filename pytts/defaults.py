"""The defaults of a run, in one place: sampling settings, request timeouts, concurrency and the
retry numbers. Every layer (the LLM clients, the executor, the agents, the config) reads its
default from here, so a default changed here changes everywhere at once.

Kernel limits and the FLOPs factor live in `pytts.constants`; this module holds what a user may
tune per run.
"""

from __future__ import annotations

DEFAULT_TEMPERATURE = 0.7
"""Sampling temperature of a graph node's call (a pool model may override it)."""

DEFAULT_MAX_TOKENS = 512
"""Most tokens one reply may take: a graph node's call, and any client request that names none
(long enough for a worked GSM8K/MATH answer; the config's ``max_tokens``)."""

AGENT_TEMPERATURE = 0.2
"""The LLM agent's temperature: its reply is a structured update, where low variance pays."""

AGENT_MAX_TOKENS = DEFAULT_MAX_TOKENS
"""Reply length of the LLM agent: one JSON update (a few hundred tokens)."""

OPTIMIZER_TEMPERATURE = 1.0
"""The LLM optimizer's temperature: OPRO-style proposal sampling wants diversity."""

OPTIMIZER_MAX_TOKENS = 2048
"""Reply length of the LLM optimizer: it answers with several whole graphs, each a list of
nodes, which takes four times an agent update."""

AGENT_CONTEXT_FLOOR = 2048
"""Smallest context window (tokens) that the most compact prompts of the LLM agent and the LLM
optimizer are made to fit, beside their reply allowance (`AGENT_MAX_TOKENS`; half the window
for the optimizer), on every generated simulator landscape: the window of the embedded
SmolLM2-135M. Below it a request may not fit; the searcher then falls back and says so."""

DEFAULT_TIMEOUT_S = 120.0
"""Seconds one attempt of an LLM request may take before it counts as failed (and is retried):
a long reply of a large model on a busy server takes a minute or more."""

DEFAULT_CONCURRENCY = 16
"""Requests in flight per endpoint (the client's cap), and questions in flight per evaluation
when a run is configured (the config's ``concurrency``)."""

QUESTION_CONCURRENCY = 32
"""Questions in flight per graph evaluation when an `Evaluator` is built without a setting:
twice the endpoint cap, since a question waits on several calls in turn and the endpoint's
queue should stay full meanwhile."""

MAX_RETRIES = 4
"""Retries of a failed LLM request (429, 5xx, a timeout, a lost connection) before it fails."""

BACKOFF_BASE_S = 0.25
"""First retry's mean wait bound; it doubles per attempt (full jitter)."""

BACKOFF_MAX_S = 8.0
"""Cap of one retry's wait (and a quarter of the cap on an honoured ``Retry-After``)."""
