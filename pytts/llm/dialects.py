"""Where OpenAI-compatible servers differ beyond plain chat: how each takes a JSON schema for
constrained output, where each reports its context window, how each counts tokens, and how each
says that a prompt overflowed. Pure data and parsing; `OpenAIClient` does the asking.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Message


# ===================================================================== JSON-schema request forms
@dataclass(frozen=True)
class SchemaForm:
    """One way of sending a JSON schema with a chat request: ``fields(schema)`` are the body
    fields to add, ``markers`` the field names a server's refusal of them mentions."""

    name: str
    fields: Callable[[Mapping[str, Any]], dict[str, Any]]
    markers: tuple[str, ...]


SCHEMA_FORMS: tuple[SchemaForm, ...] = (
    # llama.cpp's servers (llama-cpp-python 0.3 and llama-server): a grammar built from the
    # schema. llama-cpp-python 0.3 rejects the "json_schema" type below, so this goes first.
    SchemaForm("llama.cpp json_object+schema",
               lambda s: {"response_format": {"type": "json_object", "schema": dict(s)}},
               ("response_format", "schema")),
    # OpenAI structured outputs, also vLLM >= 0.6, SGLang and llama-server.
    SchemaForm("openai json_schema",
               lambda s: {"response_format": {"type": "json_schema", "json_schema": {
                   "name": "reply", "schema": dict(s), "strict": True}}},
               ("response_format", "json_schema")),
    # vLLM's guided decoding in the extra body (older vLLM without json_schema).
    SchemaForm("vllm guided_json", lambda s: {"guided_json": dict(s)}, ("guided_json",)),
)
"""Tried in this order until a server accepts one; then that one is kept for the endpoint."""

NO_SCHEMA_FORM = "none"
"""The form name once an endpoint refused every form: schemas are no longer sent there."""

_REFUSAL_STATUSES = (400, 422)


def refuses_form(form: SchemaForm, status: int | None, message: str) -> bool:
    """True when a failed request reads as the server refusing ``form``'s fields: a 400/422,
    or any failure whose message names one of its fields (llama-cpp-python answers an unknown
    ``response_format`` type with a 500 that quotes it)."""
    return status in _REFUSAL_STATUSES or any(m in message for m in form.markers)


def preferred_form(models_doc: Any) -> int:
    """Index in `SCHEMA_FORMS` to start from for a server, given its ``GET /v1/models`` body:
    vLLM (its model cards carry ``max_model_len``) accepts the llama.cpp form but ignores its
    schema, so it starts at OpenAI's form."""
    cards = models_doc.get("data") if isinstance(models_doc, dict) else None
    if isinstance(cards, list) and any(isinstance(c, dict) and "max_model_len" in c
                                       for c in cards):
        return 1
    return 0


# ===================================================================== context window
_WINDOW_KEYS = ("max_model_len", "context_length")
"""Model-card fields holding the context window: vLLM's, and OpenRouter's (and others')."""


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 1:
        return None
    return int(value)


def window_from_models(doc: Any, model: str) -> int | None:
    """The context window of ``model`` in a ``GET /v1/models`` body, if its card says (the
    card named ``model``, or the only card)."""
    cards = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(cards, list):
        return None
    cards = [c for c in cards if isinstance(c, dict)]
    named = [c for c in cards if c.get("id") == model] or (cards if len(cards) == 1 else [])
    for card in named:
        for key in _WINDOW_KEYS:
            window = _positive_int(card.get(key))
            if window is not None:
                return window
    return None


def window_from_props(doc: Any) -> int | None:
    """The context window in a llama.cpp server's ``GET /props`` body
    (``default_generation_settings.n_ctx``, or a top-level ``n_ctx``)."""
    if not isinstance(doc, dict):
        return None
    settings = doc.get("default_generation_settings")
    if isinstance(settings, dict) and _positive_int(settings.get("n_ctx")) is not None:
        return _positive_int(settings["n_ctx"])
    return _positive_int(doc.get("n_ctx"))


PROPS_PATH = "/props"
"""llama.cpp's server-properties route, at the server root (not under ``/v1``)."""


# ===================================================================== context overflow
_OVERFLOW_MARKERS = ("context_length_exceeded", "maximum context length", "context window",
                     "exceed_context_size", "context size", "context length")
_WINDOW_PATTERNS = (re.compile(r"maximum context length is (\d+)"),   # OpenAI, vLLM, llama-cpp-py
                    re.compile(r"context window of (\d+)"),           # llama-cpp-python's own
                    re.compile(r'"n_ctx"\s*:\s*(\d+)'))               # llama-server


def is_overflow(status: int | None, message: str) -> bool:
    """True when a failed request's message says the prompt (plus max_tokens) overflowed the
    context window."""
    text = message.lower()
    return status in _REFUSAL_STATUSES and any(m in text for m in _OVERFLOW_MARKERS)


def window_from_overflow(message: str) -> int | None:
    """The context window an overflow message states, if it does."""
    for pattern in _WINDOW_PATTERNS:
        found = pattern.search(message)
        if found:
            return _positive_int(int(found.group(1)))
    return None


# ===================================================================== token counting
@dataclass(frozen=True)
class TokenizeRoute:
    """A route that counts the tokens of a text: ``path`` at the server root, ``body(model,
    text)`` the request, ``count(doc)`` the token count in the reply (None if absent)."""

    path: str
    body: Callable[[str, str], dict[str, Any]]
    count: Callable[[Any], int | None]


def _count_field(doc: Any) -> int | None:
    if not isinstance(doc, dict):
        return None
    count = doc.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    tokens = doc.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


TOKENIZE_ROUTES: tuple[TokenizeRoute, ...] = (
    # llama-cpp-python
    TokenizeRoute("/extras/tokenize/count", lambda model, text: {"input": text}, _count_field),
    # llama-server reads "content", vLLM reads "model" and "prompt"; each ignores the others.
    TokenizeRoute("/tokenize", lambda model, text: {"content": text, "model": model,
                                                    "prompt": text}, _count_field),
)

TEMPLATE_TOKENS_PER_MESSAGE = 8
"""Allowance for a chat template's tokens around each message (role headers, end markers:
5 with SmolLM2's ChatML, up to 8 with Llama 3's), and once more for the reply's header."""

LETTERS_PER_TOKEN = 4
"""Letters per token in a run of letters, for the estimate used when no tokenizer can be asked;
every digit and every other non-space character counts as a token of its own. Measured against
SmolLM2's tokenizer, this overestimates by 1.2-1.6x on the prompts of pytts (prose, and context
JSON that is dense in digits and punctuation, 1.9-2.3 characters per token); a plain
characters-per-token rate does not fit both (prose runs near 3.7)."""

_PIECES = re.compile(r"[A-Za-z]+|[^\sA-Za-z]")


def chat_text(messages: Sequence[Message]) -> str:
    """The message contents as one text, for a tokenizer route."""
    return "\n".join(str(m.get("content") or "") for m in messages)


def template_allowance(messages: Sequence[Message]) -> int:
    """Tokens a chat template may add around ``messages`` and the reply's header."""
    return TEMPLATE_TOKENS_PER_MESSAGE * (len(messages) + 1)


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A deliberately high estimate of the prompt tokens of ``messages`` (no tokenizer): see
    `LETTERS_PER_TOKEN`."""
    pieces = _PIECES.findall(chat_text(messages))
    return sum(math.ceil(len(p) / LETTERS_PER_TOKEN) if p[0].isalpha() else 1 for p in pieces) \
        + template_allowance(messages)


__all__ = ["LETTERS_PER_TOKEN", "NO_SCHEMA_FORM", "PROPS_PATH", "SCHEMA_FORMS",
           "SchemaForm", "TEMPLATE_TOKENS_PER_MESSAGE", "TOKENIZE_ROUTES", "TokenizeRoute",
           "chat_text", "estimate_tokens", "is_overflow", "preferred_form", "refuses_form",
           "template_allowance", "window_from_models", "window_from_overflow",
           "window_from_props"]
