"""How a searcher talks to its LLM: every prompt fitted to the model's context window (the most
detailed variant that fits, room left for the reply), the reply constrained by a JSON schema
where the server can, and one more try, more compact, when the server still reports an
overflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..defaults import AGENT_CONTEXT_FLOOR
from ..errors import AgentReplyError, ContextOverflowError
from ..llm.base import LLMClient, Message, ServerInfo
from ..llm.dialects import estimate_tokens

log = logging.getLogger("pytts.search")

MARGIN_TOKENS = 16
MARGIN_FRACTION = 0.02
"""Tokens kept free in the window besides the reply: a fixed part and a share of the window,
for a tokenizer route that counts a little differently from the chat path."""


def reply_and_room(window: int, max_tokens: int) -> tuple[int, int]:
    """(reply allowance, prompt room) in a ``window``-token context: the reply gets
    ``min(max_tokens, window // 2)`` tokens, the prompt the rest less the margin."""
    reply = min(max_tokens, window // 2)
    return reply, window - reply - MARGIN_TOKENS - int(MARGIN_FRACTION * window)


@dataclass
class Prompt:
    """One variant of a request: its messages, the reply schema that goes with them (it may
    depend on what the messages show, e.g. which ids an anchor may name), and how many graphs
    it shows."""

    messages: list[Message]
    schema: dict[str, Any] | None
    shown: int


PromptVariant = Callable[[], Prompt]
"""Builds one variant; a request lists them from the most detailed to the most compact."""


class LLMChannel:
    """One LLM that a searcher asks, and what it has learned about that LLM's context window.

    The window is ``context_tokens`` when configured, else what the server reports
    (`ServerInfo.context_window`), else unknown until an overflow error states it. Under a
    known window the reply and the prompt share it as `reply_and_room` says, and the prompt is
    the first variant whose tokens (counted by the server's tokenizer, else by
    `estimate_tokens`, which errs high) fit its room. The most compact variants of pytts's
    searchers fit windows down to `AGENT_CONTEXT_FLOOR`. ``overflows`` counts requests the
    server refused as too long plus prompts that could not be fitted at all.
    """

    def __init__(self, client: LLMClient, model: str, *,
                 context_tokens: int | None = None) -> None:
        if context_tokens is not None and context_tokens < 1:
            raise ValueError(f"context_tokens must be >= 1, got {context_tokens}")
        self.client = client
        self.model = model
        self.window = context_tokens
        self.window_source: str | None = "config" if context_tokens else None
        self.overflows = 0
        self.counted_by: str | None = None
        self._asked_server = False

    async def _window(self) -> int | None:
        if self.window is None and not self._asked_server and isinstance(self.client,
                                                                         ServerInfo):
            self._asked_server = True
            window = await self.client.context_window(self.model)
            if window is not None:
                self.window, self.window_source = window, "server"
        return self.window

    async def _count(self, messages: list[Message]) -> int:
        counted = None
        if isinstance(self.client, ServerInfo):
            counted = await self.client.count_tokens(self.model, messages)
        self.counted_by = "server tokenizer" if counted is not None else "estimate"
        return counted if counted is not None else estimate_tokens(messages)

    async def _fit(self, variants: Sequence[PromptVariant], max_tokens: int,
                   start: int) -> tuple[int, Prompt, int, int]:
        """(index, prompt, its tokens, reply max_tokens) of the first variant from ``start``
        that fits; ContextOverflowError when none does."""
        window = await self._window()
        if window is None:
            return start, variants[start](), 0, max_tokens
        reply, room = reply_and_room(window, max_tokens)
        tokens = 0
        for index in range(start, len(variants)):
            prompt = variants[index]()
            tokens = await self._count(prompt.messages)
            if tokens <= room:
                return index, prompt, tokens, reply
        self.overflows += 1
        raise ContextOverflowError(
            f"the most compact prompt takes {tokens} tokens ({self.counted_by}), more than the "
            f"{room} a {window}-token context window ({self.window_source}) leaves beside "
            f"{reply} for the reply; pytts's prompts are made to fit windows of "
            f"{AGENT_CONTEXT_FLOOR} tokens and more: raise agent_context_tokens if the model's "
            "window is larger, or serve the agent model with a larger context",
            window=window, model=self.model)

    async def ask(self, variants: Sequence[PromptVariant], *, temperature: float,
                  max_tokens: int, seed: int | None) -> tuple[str, Prompt]:
        """The reply text to the best-fitting variant, and that variant.

        An overflow the server reports teaches the window (from its message when it says, else
        below what was sent) and is retried once with the next more compact variant that fits;
        a second one, or a fit that fails, raises ContextOverflowError. AgentReplyError when the
        server returns no completion.
        """
        if not variants:
            raise ValueError("ask needs at least one prompt variant")
        start = 0
        while True:
            index, prompt, tokens, reply = await self._fit(variants, max_tokens, start)
            try:
                completions = await self.client.complete(
                    self.model, prompt.messages, n=1, temperature=temperature,
                    max_tokens=reply, seed=seed, json_schema=prompt.schema)
            except ContextOverflowError as exc:
                self.overflows += 1
                self._learn(exc, tokens, reply)
                if start > 0 or index + 1 >= len(variants):
                    raise
                log.warning("%s: %s; retrying with a more compact prompt", self.model, exc)
                start = index + 1
                continue
            if not completions:
                raise AgentReplyError("the endpoint returned no completion")
            return completions[0].text, prompt

    def _learn(self, exc: ContextOverflowError, tokens: int, reply: int) -> None:
        if exc.window is not None:
            learned = exc.window
        elif tokens:
            learned = tokens + reply - 1     # the window is below what was just sent
        else:
            return
        if self.window is None or learned < self.window:
            self.window, self.window_source = learned, "overflow error"

    @property
    def schema_form(self) -> str | None:
        """How the server takes reply schemas (None when it was never asked, or cannot say)."""
        return self.client.schema_form if isinstance(self.client, ServerInfo) else None

    def summary(self) -> dict[str, Any]:
        """What was learned: window and its source, how tokens were counted, the schema form,
        and the overflow count."""
        return {"context_window": self.window, "window_source": self.window_source,
                "tokens_counted_by": self.counted_by, "schema_form": self.schema_form,
                "context_overflows": self.overflows}


@runtime_checkable
class AsksLLM(Protocol):
    """A searcher part that asks an LLM and can say how that went (for the run's summary)."""

    def reply_stats(self) -> dict[str, Any]:
        """Requests, replies that could not be used, context overflows, and `LLMChannel`'s
        summary."""
        ...


__all__ = ["AsksLLM", "LLMChannel", "MARGIN_FRACTION", "MARGIN_TOKENS", "Prompt",
           "PromptVariant", "reply_and_room"]
