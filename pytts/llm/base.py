"""The LLM client protocol every backend speaks, and the completion record it returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload, runtime_checkable

from ..defaults import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE

Message = Mapping[str, str]
"""One chat message: ``{"role": "system"|"user"|"assistant", "content": str}``."""

Liveness = Callable[[], str | None]
"""Asks whether the process serving an endpoint still runs: None while it does, else a message
saying why it is gone (exit code or signal, its last output). A client that has one fails a
request at once when the process is gone instead of retrying connections nobody will accept."""


@dataclass(frozen=True)
class Completion:
    """One generated answer with what it cost.

    ``latency_s`` is the wall time of the request that produced it; ``cached`` is True when a
    ResponseBank served it instead of a server.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str
    finish_reason: str | None = None
    cached: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class SamplingParams:
    """The sampling settings of one request; part of the ResponseBank key."""

    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    json_schema: str | None = None
    """The reply's JSON schema as canonical JSON text (None: an unconstrained reply)."""


@runtime_checkable
class LLMClient(Protocol):
    """Anything that turns chat messages into completions (a server, a bank, a simulation)."""

    async def complete(self, model: str, messages: Sequence[Message], *, n: int = 1,
                       temperature: float = DEFAULT_TEMPERATURE,
                       max_tokens: int = DEFAULT_MAX_TOKENS,
                       seed: int | None = None, stop: Sequence[str] | None = None,
                       json_schema: Mapping[str, Any] | None = None) -> list[Completion]:
        """Return ``n`` completions of ``messages`` by ``model`` (a pool model name).

        ``json_schema`` asks for a reply that is one JSON value matching it: a server that
        can constrain its output to a schema does; any other backend answers as usual, so
        callers still validate what comes back.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the client is unusable afterwards."""
        ...


@runtime_checkable
class ServerInfo(Protocol):
    """What a client can learn about the server behind it, beyond completions (optional: a
    client that cannot ask answers None)."""

    async def context_window(self, model: str) -> int | None:
        """The context window of ``model`` in tokens (prompt plus reply), if the server says."""
        ...

    async def count_tokens(self, model: str, messages: Sequence[Message]) -> int | None:
        """The prompt tokens ``messages`` take with ``model``'s tokenizer, if the server can
        count them (chat-template tokens included, up to a small allowance)."""
        ...

    @property
    def schema_form(self) -> str | None:
        """How JSON schemas are sent to this server (None until the first request with one;
        ``"none"`` once the server refused every form)."""
        ...


# Overloads: a seeded request's samples are seeded too (callers rely on the int).
@overload
def sample_seed(seed: int, index: int) -> int: ...
@overload
def sample_seed(seed: None, index: int) -> None: ...
def sample_seed(seed: int | None, index: int) -> int | None:
    """The seed of sample ``index`` of a request seeded with ``seed``.

    Servers that ignore ``n`` (llama.cpp) and the ResponseBank both ask for sample ``k`` as its
    own ``n=1`` request; giving each index its own seed keeps those samples distinct yet
    reproducible. Index 0 keeps ``seed`` itself, so a plain ``n=1`` call and sample 0 of a larger
    request are the same request. The result stays a non-negative 31-bit int because some
    servers reject larger seeds.
    """
    if seed is None or index == 0:
        return seed
    # splitmix64 finaliser: neighbouring (seed, index) pairs land far apart.
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFF
