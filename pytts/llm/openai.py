"""An LLMClient for any server that speaks OpenAI chat-completions, over one aiohttp session.

Works against vLLM, SGLang, llama.cpp / llama-cpp-python, Ollama and OpenAI itself. The retry
policy (which failures are retried and how long to wait) lives in :class:`RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from time import monotonic, perf_counter
from typing import Any

import aiohttp

from ..defaults import (
    BACKOFF_BASE_S,
    BACKOFF_MAX_S,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT_S,
    MAX_RETRIES,
)
from ..errors import (
    ConfigError,
    ContextOverflowError,
    EndpointUnreachableError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    ServerExitedError,
)
from . import dialects
from .base import Completion, Liveness, Message, sample_seed

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
_CONNECTION_WARN_EVERY_S = 30.0
"""While an endpoint refuses connections, one retry per this many seconds is logged as a
warning (the rest at debug level): every call in flight fails at once, and one line says it."""

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""Default cap on one response body (JSON or event stream); a larger body is an LLMError."""
_READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed attempts are retried, how often, and how long to wait in between.

    Waits are "full jitter" exponential backoff: uniform in ``[0, min(max, base * 2**attempt)]``,
    which spreads a burst of clients that failed together. A 429's ``Retry-After`` (seconds or
    an HTTP date) is honoured instead, but capped at ``4 * backoff_max_s`` so a misbehaving
    server cannot stall a search for minutes; a value that is not a finite delay >= 0 is ignored.
    The defaults are those of `pytts.defaults`.
    """

    max_retries: int = MAX_RETRIES
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_max_s: float = BACKOFF_MAX_S

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

    @staticmethod
    def retries_error(exc: aiohttp.ClientError) -> bool:
        """False for client errors that another attempt cannot fix: a URL that is not http(s),
        a redirect loop, a certificate the server will present again."""
        return not isinstance(exc, (aiohttp.InvalidURL, aiohttp.TooManyRedirects,
                                    aiohttp.ClientConnectorCertificateError))

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s >= 0:
            return min(retry_after_s, 4.0 * self.backoff_max_s)
        return rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * (2.0 ** attempt)))


class _RetryableFailure(Exception):
    """One failed attempt that the policy may retry; carries what the final error reports."""

    def __init__(self, cause: str, status: int | None = None,
                 retry_after_s: float | None = None, *, connection: bool = False,
                 timed_out: bool = False) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.retry_after_s = retry_after_s
        self.connection = connection  # no HTTP answer: connecting failed or the link dropped
        self.timed_out = timed_out

    @property
    def error_type(self) -> type[LLMError]:
        """The LLMError subclass that reports this failure once the retries have run out."""
        if self.connection:
            return EndpointUnreachableError
        if self.status == 429:
            return RateLimitError
        return LLMTimeoutError if self.timed_out else LLMError


def _parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (delta-seconds or an HTTP date, RFC 9110);
    None when it is absent or not a finite delay >= 0 (nan, inf, -1, garbage).

    A date in the past means "now" (0.0); ``now`` defaults to the current UTC time.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def check_http_url(url: object, what: str = "base_url") -> str:
    """``url`` when it is an http(s) URL with a host; ConfigError naming ``what`` otherwise.

    Any other scheme (``file://``, a bare host) fails the same way on every attempt, so it is
    refused before the first one.
    """
    if not isinstance(url, str):
        raise ConfigError(f"{what} must be a string URL such as http://HOST:PORT/v1, got "
                          f"{url!r}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{what} = {url!r} is not an http(s) URL; use e.g. "
                          "http://HOST:PORT/v1")
    return url


class _SchemaError(Exception):
    """A field of a reply has the wrong type or range; the message names the field."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        super().__init__(f"{field} is {shown}, expected {expected}")


def _token_count(usage: dict[str, Any], key: str, field: str) -> int | None:
    value = usage.get(key)
    if value is None:
        return None
    # bool is an int subclass; an integral float (12.0) is tolerated, a fraction or a sign not
    integral = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())
    if not integral or value < 0:
        raise _SchemaError(field, value, "an integer >= 0")
    return int(value)


def _read_choices(doc: Any, n: int) -> list[tuple[str, int, int, str | None]]:
    """(text, prompt tokens, completion tokens, finish reason) of the first ``n`` choices of a
    chat-completion body, every field type- and range-checked; _SchemaError names a bad one."""
    if not isinstance(doc, dict):
        raise _SchemaError("the body", doc, "a JSON object")
    choices = doc.get("choices")
    if not isinstance(choices, list):
        raise _SchemaError("choices", choices, "a list")
    usage = doc.get("usage")
    if usage is None:
        usage = {}
    elif not isinstance(usage, dict):
        raise _SchemaError("usage", usage, "an object or null")
    prompt_tokens = _token_count(usage, "prompt_tokens", "usage.prompt_tokens") or 0
    total = _token_count(usage, "completion_tokens", "usage.completion_tokens") or 0
    choices = choices[:n]
    share, extra = divmod(total, len(choices)) if choices else (0, 0)
    out = []
    for i, choice in enumerate(choices):
        where = f"choices[{i}]"
        if not isinstance(choice, dict):
            raise _SchemaError(where, choice, "an object")
        message = choice.get("message")
        if message is None:
            message = {}
        elif not isinstance(message, dict):
            raise _SchemaError(f"{where}.message", message, "an object or null")
        text = message.get("content")
        if text is not None and not isinstance(text, str):
            raise _SchemaError(f"{where}.message.content", text, "a string or null")
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise _SchemaError(f"{where}.finish_reason", finish, "a string or null")
        own = choice.get("usage")
        if own is not None and not isinstance(own, dict):
            raise _SchemaError(f"{where}.usage", own, "an object or null")
        tokens = _token_count(own, "completion_tokens", f"{where}.usage.completion_tokens") \
            if own else None
        out.append((text or "", prompt_tokens, share + (i < extra) if tokens is None else tokens,
                    finish))
    return out


class OpenAIClient:
    """A client of one OpenAI-compatible endpoint (``base_url`` ends in ``/v1``).

    It owns one ``aiohttp.ClientSession``, created on first use inside the running event loop
    and bound to that loop, and a semaphore that caps the requests in flight at
    ``max_concurrency``. ``timeout_s`` bounds each attempt; failed attempts are retried per
    ``retry`` (a :class:`RetryPolicy`, default the policy of `pytts.defaults`). When they run
    out, a 429 fails with `RateLimitError`, timeouts with `LLMTimeoutError`. A response body is
    read in chunks and refused (an LLMError naming the limit, not retried) once it passes
    ``max_response_bytes``, so an endless or huge body cannot exhaust memory; bodies are
    requested and read uncompressed. The API key (``api_key`` or the environment variable named
    by ``api_key_env``) is sent as a Bearer token and never shown in ``repr``, errors or logs.

    Each returned :class:`Completion` carries the request's prompt tokens (the prompt is shared by
    all ``n`` choices), its share of the completion tokens and the wall time of the attempt that
    succeeded (queueing behind the semaphore and retry waits are excluded: they measure this
    client, not the model).

    ``liveness`` (see :data:`~pytts.llm.base.Liveness`) is for an endpoint whose server process
    this program owns (the embedded model): it is asked before each attempt and after a lost
    connection, and once the process is gone requests fail at once with `ServerExitedError`.
    A request whose every attempt found no HTTP answer fails with `EndpointUnreachableError`.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None,
                 api_key_env: str | None = None, max_concurrency: int = DEFAULT_CONCURRENCY,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy | None = None,
                 headers: Mapping[str, str] | None = None,
                 jitter_seed: int | None = None, liveness: Liveness | None = None,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        check_http_url(base_url)
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        if max_response_bytes < 1:
            raise ConfigError(f"max_response_bytes must be >= 1, got {max_response_bytes}")
        if api_key is None and api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if api_key is None:
                raise ConfigError(f"environment variable {api_key_env!r} (api_key_env for "
                                  f"{base_url}) is not set; export it or drop api_key_env")
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self.retry = retry if retry is not None else RetryPolicy()
        self._url = self.base_url + "/chat/completions"
        self._api_key = api_key or None
        # identity: a compressed body could inflate far past the cap in one decoded chunk
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity",
                         **(headers or {})}
        if self._api_key:
            self._headers["Authorization"] = "Bearer " + self._api_key
        # Jitter only shapes timing, never results; still seedable so no global RNG is touched.
        self._rng = random.Random(jitter_seed)
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned_n = False
        self._liveness = liveness
        self._quiet_until = 0.0
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
            connector=connector, headers=self._headers, auto_decompress=False,
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
                       temperature: float = DEFAULT_TEMPERATURE,
                       max_tokens: int = DEFAULT_MAX_TOKENS,
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
            replies = _read_choices(doc, n)
        except _SchemaError as exc:
            # Valid JSON of the wrong shape is a server/protocol mismatch: retrying won't help.
            raise LLMError(f"response is not a chat completion: {exc}; body: "
                           f"{self._redact(str(doc)[:_SNIPPET_CHARS])}",
                           endpoint=self.base_url, model=model, status=200) from None
        return [Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=tokens,
                           latency_s=latency, model=model, finish_reason=finish)
                for text, prompt_tokens, tokens, finish in replies]

    async def _read_body(self, resp: aiohttp.ClientResponse, model: str) -> bytes:
        """The body of ``resp``, read in chunks; LLMError once it passes max_response_bytes."""
        limit = self.max_response_bytes
        declared = resp.content_length
        body = bytearray()
        if declared is None or declared <= limit:
            async for chunk in resp.content.iter_chunked(_READ_CHUNK_BYTES):
                body += chunk
                if len(body) > limit:
                    break
            else:
                return bytes(body)
        sent = f"declared {declared}" if body == b"" else "sent more"
        raise LLMError(f"response body exceeds max_response_bytes = {limit} bytes (the server "
                       f"{sent}); raise max_response_bytes if such replies are expected",
                       endpoint=self.base_url, model=model, status=resp.status)

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
                    self._check_alive(model)
                    t0 = perf_counter()
                    async with session.post(self._url, data=body) as resp:
                        status = resp.status
                        raw = await self._read_body(resp, model)
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
                failure = _RetryableFailure(f"timed out after {self.timeout_s}s", timed_out=True)
            except aiohttp.ClientError as exc:
                if not policy.retries_error(exc):
                    raise LLMError(self._redact(f"{type(exc).__name__}: {exc}"),
                                   endpoint=self.base_url, model=model) from exc
                failure = _RetryableFailure(
                    self._redact(f"{type(exc).__name__}: {exc}" if str(exc)
                                 else type(exc).__name__),
                    connection=isinstance(exc, aiohttp.ClientConnectionError))
                if failure.connection:
                    self._check_alive(model)
            if attempt >= policy.max_retries:
                raise failure.error_type(f"gave up after {attempt + 1} attempt(s); last "
                                         f"cause: {failure.cause}", endpoint=self.base_url,
                                         model=model, status=failure.status)
            wait = policy.delay(attempt, failure.retry_after_s, self._rng)
            log.log(self._retry_log_level(failure),
                    "retrying %s model=%s in %.2fs (attempt %d of %d): %s", self.base_url,
                    model, wait, attempt + 1, policy.max_retries + 1, failure.cause)
            await asyncio.sleep(wait)
            attempt += 1

    def _check_alive(self, model: str) -> None:
        """Raise ServerExitedError when the liveness callback says the server process is gone."""
        gone = self._liveness() if self._liveness is not None else None
        if gone is not None:
            raise ServerExitedError(gone, endpoint=self.base_url, model=model)

    def _retry_log_level(self, failure: _RetryableFailure) -> int:
        if not failure.connection:
            return logging.WARNING
        now = monotonic()
        if now < self._quiet_until:
            return logging.DEBUG
        self._quiet_until = now + _CONNECTION_WARN_EVERY_S
        return logging.WARNING
