"""An LLMClient over a model pool: each pool model name goes to the client of its endpoint."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..defaults import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT_S,
)
from ..errors import ConfigError, LLMError
from .base import Completion, Liveness, LLMClient, Message
from .openai import OpenAIClient, RetryPolicy


@dataclass(frozen=True)
class _Route:
    client: LLMClient
    api_model: str
    temperature: float | None


class RoutedClient:
    """Send each pool model's requests to its endpoint, under the server's name for it.

    ``pool`` is anything with ``pool.names`` and ``pool[name]`` returning a spec with the
    attributes ``endpoint``, ``api_model``, ``api_key_env`` and ``temperature`` (a ModelSpec).
    Models that share an endpoint (and API key variable) share one :class:`OpenAIClient`, so the
    endpoint's concurrency cap holds across them. A spec's ``temperature``, when set, replaces the
    request's: that is how one served model appears in the pool as several "models".
    ``clients`` maps a base URL to a client to use instead of a new OpenAIClient; those are
    not closed by :meth:`aclose`. ``liveness`` maps a base URL to the liveness callback of the
    process serving it (see :class:`OpenAIClient`). The remaining keywords configure the
    OpenAIClients created; ``retry`` is the :class:`RetryPolicy` every one of them follows.
    """

    def __init__(self, pool: Any, *, clients: Mapping[str, LLMClient] | None = None,
                 max_concurrency: int = DEFAULT_CONCURRENCY,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy | None = None,
                 liveness: Mapping[str, Liveness] | None = None) -> None:
        given = dict(clients or {})
        alive = {url.rstrip("/"): check for url, check in (liveness or {}).items()}
        owned: dict[tuple[str, str | None], OpenAIClient] = {}
        routes: dict[str, _Route] = {}
        for name in pool.names:
            spec = pool[name]
            endpoint = getattr(spec, "endpoint", None)
            if not endpoint:
                raise ConfigError(f"model {name!r} has no endpoint; set its endpoint to the "
                                  "server's base URL (e.g. http://127.0.0.1:8080/v1) or use a "
                                  "simulated client")
            endpoint = endpoint.rstrip("/")
            key_env = getattr(spec, "api_key_env", None)
            client: LLMClient | None = given.get(endpoint)
            if client is None:
                client = owned.get((endpoint, key_env))
                if client is None:
                    client = OpenAIClient(endpoint, api_key_env=key_env,
                                          max_concurrency=max_concurrency, timeout_s=timeout_s,
                                          retry=retry, liveness=alive.get(endpoint))
                    owned[(endpoint, key_env)] = client
            routes[name] = _Route(client, getattr(spec, "api_model", None) or name,
                                  getattr(spec, "temperature", None))
        self._routes = routes
        self._owned = list(owned.values())

    @property
    def clients(self) -> list[LLMClient]:
        """The distinct clients in use, one per endpoint."""
        seen: dict[int, LLMClient] = {}
        for route in self._routes.values():
            seen.setdefault(id(route.client), route.client)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"RoutedClient(models={sorted(self._routes)}, clients={self.clients})"

    async def complete(self, model: str, messages: Sequence[Message], *, n: int = 1,
                       temperature: float = DEFAULT_TEMPERATURE,
                       max_tokens: int = DEFAULT_MAX_TOKENS,
                       seed: int | None = None, stop: Sequence[str] | None = None,
                       json_schema: Mapping[str, Any] | None = None) -> list[Completion]:
        """Return ``n`` completions by pool model ``model``; completions carry the pool name."""
        route = self._routes.get(model)
        if route is None:
            raise LLMError(f"model {model!r} is not in the pool (known: "
                           f"{', '.join(sorted(self._routes))})", model=model)
        if route.temperature is not None:
            temperature = route.temperature
        out = await route.client.complete(route.api_model, messages, n=n,
                                          temperature=temperature, max_tokens=max_tokens,
                                          seed=seed, stop=stop, json_schema=json_schema)
        if route.api_model != model:
            out = [dataclasses.replace(c, model=model) for c in out]
        return out

    async def aclose(self) -> None:
        """Close the OpenAIClients this router created (not those passed in ``clients``)."""
        for client in self._owned:
            await client.aclose()
