"""An LLMClient for any server that speaks OpenAI chat-completions, over one aiohttp session.

Works against vLLM, SGLang, llama.cpp / llama-cpp-python, Ollama and OpenAI itself. The retry
policy (which failures are retried and how long to wait) lives in :class:`RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Callable, Mapping, Sequence

import aiohttp

from ..errors import ConfigError, ContextOverflowError, LLMError
from . import dialects
from .base import Completion, Message, sample_seed

try:  # orjson is several times faster at both ends; the stdlib is the fallback.
    import orjson

    _dumps: Callable[[Any], bytes] = orjson.dumps
    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads

log = logging.getLogger("pytts.llm")

_SNIPPET_CHARS = 200


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed attempts are retried, how often, and how long to wait in between.

    Waits are "full jitter" exponential backoff: uniform in ``[0, min(max, base * 2**attempt)]``,
    which spreads a burst of clients that failed together. A 429's ``Retry-After`` (seconds) is
    honoured instead, but capped at ``4 * backoff_max_s`` so a misbehaving server cannot stall a
    search for minutes.
    """

    max_retries: int = 4
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ConfigError("backoff_base_s and backoff_max_s must be >= 0, got "
                              f"{self.backoff_base_s} and {self.backoff_max_s}")

    @staticmethod
    def retries_status(status: int) -> bool:
        """True for statuses worth another attempt: rate limiting and server-side failures."""
        return status == 429 or status >= 500

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), 4.0 * self.backoff_max_s)
        return rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * (2.0 ** attempt)))


class _RetryableFailure(Exception):
    """One failed attempt that the policy may retry; carries what the final error reports."""

    def __init__(self, cause: str, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.retry_after_s = retry_after_s


def _parse_retry_after(value: str | None) -> float | None:
    # Only the delta-seconds form; an HTTP-date falls back to our own backoff.
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class OpenAIClient:
    """A client of one OpenAI-compatible endpoint (``base_url`` ends in ``/v1``).

    It owns one ``aiohttp.ClientSession``, created on first use inside the running event loop
    and bound to that loop, and a semaphore that caps the requests in flight at
    ``max_concurrency``. ``timeout_s`` bounds each attempt; failed attempts are retried per
    :class:`RetryPolicy`. The API key (``api_key`` or the environment variable named by
    ``api_key_env``) is sent as a Bearer token and never shown in ``repr``, errors or logs.

    Each returned :class:`Completion` carries the request's prompt tokens (the prompt is shared by
    all ``n`` choices), its share of the completion tokens and the wall time of the attempt that
    succeeded (queueing behind the semaphore and retry waits are excluded: they measure this
    client, not the model).
    """

    def __init__(self, base_url: str, *, api_key: str | None = None,
                 api_key_env: str | None = None, max_concurrency: int = 16,
                 timeout_s: float = 60.0, max_retries: int = 4, backoff_base_s: float = 0.25,
                 backoff_max_s: float = 8.0, headers: Mapping[str, str] | None = None,
                 jitter_seed: int | None = None) -> None:
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        if api_key is None and api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if api_key is None:
                raise ConfigError(f"environment variable {api_key_env!r} (api_key_env for "
                                  f"{base_url}) is not set; export it or drop api_key_env")
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retry = RetryPolicy(max_retries, backoff_base_s, backoff_max_s)
        self._url = self.base_url + "/chat/completions"
        self._api_key = api_key or None
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if self._api_key:
            self._headers["Authorization"] = "Bearer " + self._api_key
        # Jitter only shapes timing, never results; still seedable so no global RNG is touched.
        self._rng = random.Random(jitter_seed)
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned_n = False
        # What the server said about itself (see ServerInfo), learned once per client.
        self._form: int | None = None              # index in SCHEMA_FORMS; len() = "none"
        self._first_form = 0
        self._windows: dict[str, int | None] = {}
        self._tokenizer: dialects.TokenizeRoute | None = None
        self._tokenizer_known = False              # True once a route answered or none did

    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        return (f"OpenAIClient(base_url={self.base_url!r}, max_concurrency={self.max_concurrency},"
                f" timeout_s={self.timeout_s}, api_key={key})")

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _start(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None:
            if self._loop is not loop:
                raise RuntimeError("OpenAIClient is bound to the event loop that first used it; "
                                   "create one client per event loop")
            return self._session
        self._loop = loop
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        connector = aiohttp.TCPConnector(limit=self.max_concurrency, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def aclose(self) -> None:
        """Close the session and its connections; the client is unusable afterwards."""
        if self._session is not None:
            await self._session.close()
        self._session = None

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _snippet(self, raw: bytes) -> str:
        text = raw[:_SNIPPET_CHARS].decode("utf-8", "replace").replace("\n", " ")
        return self._redact(text + ("..." if len(raw) > _SNIPPET_CHARS else ""))

    async def complete(self, model: str, messages: Sequence[Message], *, n: int = 1,
                       temperature: float = 0.7, max_tokens: int = 256,
                       seed: int | None = None, stop: Sequence[str] | None = None,
                       json_schema: Mapping[str, Any] | None = None) -> list[Completion]:
        """Return ``n`` completions of ``messages`` by ``model`` (the server's model name).

        Servers that ignore ``n`` (llama.cpp) return one choice; the rest are then requested as
        separate ``n=1`` calls seeded with :func:`~pytts.llm.base.sample_seed`.

        ``json_schema`` goes out in the first form of `~pytts.llm.dialects.SCHEMA_FORMS` the
        server accepts (a refusal moves on to the next form, then to none, and the endpoint
        keeps what worked). A prompt that overflows the context window raises
        `ContextOverflowError`.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        msgs = [m if type(m) is dict else dict(m) for m in messages]
        payload: dict[str, Any] = {"model": model, "messages": msgs,
                                   "temperature": temperature, "max_tokens": max_tokens}
        if n != 1:
            payload["n"] = n
        if seed is not None:
            payload["seed"] = seed
        if stop:
            payload["stop"] = list(stop)
        if json_schema is None:
            doc, latency = await self._send(model, payload)
        else:
            doc, latency, payload = await self._send_constrained(model, payload, json_schema)
        out = self._completions(doc, model, latency, n)
        if len(out) < n:
            out += await self._top_up(model, payload, len(out), n)
        return out

    async def _send(self, model: str, payload: dict[str, Any]) -> tuple[Any, float]:
        """`_post` the request; a context overflow becomes ContextOverflowError."""
        try:
            return await self._post(model, _dumps(payload))
        except LLMError as exc:
            if type(exc) is not LLMError or not dialects.is_overflow(exc.status, str(exc)):
                raise
            window = dialects.window_from_overflow(str(exc))
            error = ContextOverflowError(
                "the prompt plus max_tokens exceed the context window"
                + (f" of {window} tokens" if window else "") + f": {exc}", window=window)
            error.endpoint, error.model, error.status = exc.endpoint, exc.model, exc.status
            raise error from None

    async def _send_constrained(self, model: str, payload: dict[str, Any],
                                schema: Mapping[str, Any]) -> tuple[Any, float, dict[str, Any]]:
        """Send with ``schema`` in the endpoint's form; returns the body that worked too."""
        forms = dialects.SCHEMA_FORMS
        start = self._first_form if self._form is None else self._form
        for index in range(start, len(forms) + 1):
            body = payload if index == len(forms) else {**payload, **forms[index].fields(schema)}
            try:
                doc, latency = await self._send(model, body)
            except ContextOverflowError:
                raise
            except LLMError as exc:
                if index < len(forms) and dialects.refuses_form(forms[index], exc.status,
                                                                str(exc)):
                    log.info("%s refused a JSON schema sent as %s (%s); trying the next form",
                             self.base_url, forms[index].name, exc)
                    continue
                raise
            self._form = index
            return doc, latency, body
        raise AssertionError("unreachable: the last form sends no schema")

    @property
    def schema_form(self) -> str | None:
        """The form JSON schemas go out in (`ServerInfo`): None before the first request with
        one, ``"none"`` once the server refused every form."""
        if self._form is None:
            return None
        forms = dialects.SCHEMA_FORMS
        return forms[self._form].name if self._form < len(forms) else dialects.NO_SCHEMA_FORM

    @property
    def root_url(self) -> str:
        """The server root: ``base_url`` without its trailing ``/v1``."""
        return self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url

    async def context_window(self, model: str) -> int | None:
        """``model``'s context window as the server reports it (`ServerInfo`): its model card
        in ``GET /v1/models`` (vLLM), else llama.cpp's ``GET /props``; None if neither says.
        Asked once per model; the models listing also picks the first schema form to try."""
        if model not in self._windows:
            models = await self._fetch_json(self.base_url + "/models")
            self._first_form = dialects.preferred_form(models)
            window = dialects.window_from_models(models, model)
            if window is None:
                window = dialects.window_from_props(
                    await self._fetch_json(self.root_url + dialects.PROPS_PATH))
            self._windows[model] = window
        return self._windows[model]

    async def count_tokens(self, model: str, messages: Sequence[Message]) -> int | None:
        """Prompt tokens of ``messages`` by the server's tokenizer plus the chat-template
        allowance (`ServerInfo`); None when the server has no tokenizer route. The first route
        that answers is kept; none answering is remembered too."""
        routes = dialects.TOKENIZE_ROUTES if not self._tokenizer_known else (
            [self._tokenizer] if self._tokenizer is not None else [])
        text = dialects.chat_text(messages)
        for route in routes:
            count = route.count(await self._fetch_json(self.root_url + route.path,
                                                       route.body(model, text)))
            if count is not None:
                self._tokenizer, self._tokenizer_known = route, True
                return count + dialects.template_allowance(messages)
        self._tokenizer_known = True
        return None

    async def _fetch_json(self, url: str, body: Mapping[str, Any] | None = None) -> Any:
        """One GET (or POST of ``body``) outside the retry policy, for what a server says about
        itself: the decoded JSON, or None on any failure (these routes are optional)."""
        session = self._start()
        assert self._semaphore is not None
        try:
            async with self._semaphore:
                request = (session.get(url) if body is None
                           else session.post(url, data=_dumps(dict(body))))
                async with request as resp:
                    if not 200 <= resp.status < 300:
                        return None
                    return _loads(await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None

    async def _top_up(self, model: str, payload: dict[str, Any], have: int,
                      n: int) -> list[Completion]:
        if not self._warned_n:
            self._warned_n = True
            log.info("%s returned %d of %d choices (server ignores n); requesting the rest "
                     "one by one", self.base_url, have, n)
        seed = payload.get("seed")
        payload = {k: v for k, v in payload.items() if k != "n"}

        async def one(index: int) -> Completion:
            p = dict(payload)
            s = sample_seed(seed, index)
            if s is not None:
                p["seed"] = s
            doc, latency = await self._post(model, _dumps(p))
            got = self._completions(doc, model, latency, 1)
            if not got:
                raise LLMError("server returned no choices", endpoint=self.base_url,
                               model=model, status=200)
            return got[0]

        return list(await asyncio.gather(*(one(i) for i in range(have, n))))

    def _completions(self, doc: Any, model: str, latency: float, n: int) -> list[Completion]:
        try:
            choices = doc["choices"][:n]
            usage = doc.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            total_completion = int(usage.get("completion_tokens") or 0)
            k = len(choices)
            share, extra = divmod(total_completion, k) if k else (0, 0)
            out = []
            for i, choice in enumerate(choices):
                own = choice.get("usage")
                ct = int(own["completion_tokens"]) if own else share + (i < extra)
                out.append(Completion(
                    text=(choice.get("message") or {}).get("content") or "",
                    prompt_tokens=prompt_tokens, completion_tokens=ct, latency_s=latency,
                    model=model, finish_reason=choice.get("finish_reason")))
            return out
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Valid JSON of the wrong shape is a server/protocol mismatch: retrying won't help.
            raise LLMError(f"response is not a chat completion ({type(exc).__name__}: {exc}): "
                           f"{self._redact(str(doc)[:_SNIPPET_CHARS])}",
                           endpoint=self.base_url, model=model, status=200) from exc

    async def _post(self, model: str, body: bytes) -> tuple[Any, float]:
        """POST ``body`` with retries; return the decoded JSON and the successful attempt's time."""
        session = self._start()
        semaphore = self._semaphore
        assert semaphore is not None
        policy = self.retry
        attempt = 0
        while True:
            try:
                async with semaphore:
                    t0 = perf_counter()
                    async with session.post(self._url, data=body) as resp:
                        status = resp.status
                        raw = await resp.read()
                        if 200 <= status < 300:
                            try:
                                return _loads(raw), perf_counter() - t0
                            except ValueError as exc:
                                raise _RetryableFailure(
                                    f"malformed JSON body ({exc}): {self._snippet(raw)}",
                                    status) from exc
                        retry_after = (_parse_retry_after(resp.headers.get("Retry-After"))
                                       if status == 429 else None)
                if not policy.retries_status(status):
                    raise LLMError(f"HTTP {status}: {self._snippet(raw)}",
                                   endpoint=self.base_url, model=model, status=status)
                raise _RetryableFailure(f"HTTP {status}: {self._snippet(raw)}", status,
                                        retry_after)
            except _RetryableFailure as exc:
                failure = exc
            except asyncio.TimeoutError:
                failure = _RetryableFailure(f"timed out after {self.timeout_s}s")
            except aiohttp.ClientError as exc:
                failure = _RetryableFailure(
                    self._redact(f"{type(exc).__name__}: {exc}" if str(exc)
                                 else type(exc).__name__))
            if attempt >= policy.max_retries:
                raise LLMError(f"gave up after {attempt + 1} attempt(s); last cause: "
                               f"{failure.cause}", endpoint=self.base_url, model=model,
                               status=failure.status)
            wait = policy.delay(attempt, failure.retry_after_s, self._rng)
            log.warning("retrying %s model=%s in %.2fs (attempt %d of %d): %s", self.base_url,
                        model, wait, attempt + 1, policy.max_retries + 1, failure.cause)
            await asyncio.sleep(wait)
            attempt += 1
