"""The exceptions pytts raises; each message says what the user should change."""

from __future__ import annotations


class PyttsError(Exception):
    """Base class of every error pytts raises on purpose."""


class ConfigError(PyttsError, ValueError):
    """A configuration value (file, flag or argument) is malformed or out of range."""


class BudgetError(PyttsError, ValueError):
    """The FLOPs budget admits no graph of the template, or almost none (rejection is hopeless)."""


class LLMError(PyttsError):
    """An LLM call failed for good (after retries, or with a status that is not retried).

    Attributes name where it failed so the message can be acted on; ``reason`` is the
    message without them.
    """

    def __init__(self, message: str, *, endpoint: str | None = None, model: str | None = None,
                 status: int | None = None) -> None:
        parts = [message]
        if endpoint is not None:
            parts.append(f"endpoint={endpoint}")
        if model is not None:
            parts.append(f"model={model}")
        if status is not None:
            parts.append(f"status={status}")
        super().__init__(" | ".join(parts))
        self.reason = message
        self.endpoint = endpoint
        self.model = model
        self.status = status


class RateLimitError(LLMError):
    """The endpoint kept answering HTTP 429 (rate limited) until the retries ran out: lower
    ``concurrency``, raise the provider's limit, or wait."""


class LLMTimeoutError(LLMError):
    """No complete reply came within the time allowed (every attempt timed out, or a server did
    not come up in time): raise ``timeout_s`` or ask for fewer ``max_tokens``."""


class EndpointUnreachableError(LLMError):
    """No HTTP answer came back: every attempt failed to connect or lost the connection."""


class ServerExitedError(EndpointUnreachableError):
    """The server process behind an endpoint has exited; no later request to it can succeed."""


class BankError(PyttsError):
    """A ResponseBank file cannot be opened, read or written (damaged, not a bank, of another
    schema version, or in a place that cannot be written); the message names the file. The run
    stops, since answers it cannot store or look up would be paid for again and again."""


class ContextOverflowError(LLMError):
    """The server refused a request whose prompt plus ``max_tokens`` exceed the model's context
    window; ``window`` is the window in tokens when the server's message says it."""

    def __init__(self, message: str, *, window: int | None = None, **where: object) -> None:
        super().__init__(message, **where)  # type: ignore[arg-type]
        self.window = window


class BankMissError(LLMError):
    """A replay-only ResponseBank was asked for a completion it does not hold."""


class AgentReplyError(PyttsError):
    """An agent's reply could not be parsed or was out of range (the search falls back)."""


class SandboxError(PyttsError):
    """The sandbox itself could not run a candidate (not: the candidate failed)."""
