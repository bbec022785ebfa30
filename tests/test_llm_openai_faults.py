"""OpenAIClient against a loopback server that fails in each way a real endpoint can."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import AsyncIterator

import pytest
from fake_openai import FakeOpenAI

from pytts.defaults import BACKOFF_MAX_S, MAX_RETRIES
from pytts.errors import (
    ConfigError,
    EndpointUnreachableError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    ServerExitedError,
)
from pytts.llm.base import sample_seed
from pytts.llm.openai import OpenAIClient, RetryPolicy, _parse_retry_after

pytestmark = pytest.mark.server

MESSAGES = [{"role": "user", "content": "2+2?"}]


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(hang_s=5.0) as srv:
        yield srv


def client_for(server: FakeOpenAI, *, max_retries: int = MAX_RETRIES,
               backoff_max_s: float = BACKOFF_MAX_S, **kwargs: object) -> OpenAIClient:
    retry = RetryPolicy(max_retries, backoff_base_s=0.01, backoff_max_s=backoff_max_s)
    kwargs.setdefault("jitter_seed", 0)
    return OpenAIClient(server.base_url, retry=retry, **kwargs)  # type: ignore[arg-type]


async def test_429_waits_for_retry_after_then_succeeds(server: FakeOpenAI) -> None:
    async with client_for(server) as client:
        t0 = time.perf_counter()
        out = await client.complete("429-then-ok", MESSAGES)
        elapsed = time.perf_counter() - t0
    assert server.hits["429-then-ok"] == 2
    assert out[0].text.endswith("hit=2")
    assert 0.3 <= elapsed < 1.5  # the server asked for 0.3 s


async def test_a_429_that_outlasts_the_retries_is_a_rate_limit_error(server: FakeOpenAI) -> None:
    async with client_for(server, max_retries=0) as client:
        with pytest.raises(RateLimitError) as info:
            await client.complete("429-then-ok", MESSAGES)
    assert isinstance(info.value, LLMError)       # existing `except LLMError` still catches it
    assert (info.value.status, info.value.model) == (429, "429-then-ok")
    assert server.hits["429-then-ok"] == 1


async def test_retry_after_is_capped_at_four_times_backoff_max(server: FakeOpenAI) -> None:
    async with client_for(server, backoff_max_s=0.02) as client:
        t0 = time.perf_counter()
        await client.complete("429-then-ok", MESSAGES)
        elapsed = time.perf_counter() - t0
    assert server.hits["429-then-ok"] == 2
    assert elapsed < 0.25  # cap 0.08 s, not the 0.3 s the server asked for


async def test_500_is_retried_then_succeeds(server: FakeOpenAI) -> None:
    async with client_for(server) as client:
        out = await client.complete("500-then-ok", MESSAGES)
    assert server.hits["500-then-ok"] == 2
    assert out[0].text.endswith("hit=2")


async def test_persistent_5xx_gives_up_after_max_retries(server: FakeOpenAI) -> None:
    async with client_for(server, max_retries=2) as client:
        with pytest.raises(LLMError) as info:
            await client.complete("always-500", MESSAGES)
    assert server.hits["always-500"] == 3
    err = info.value
    assert (err.status, err.model, err.endpoint) == (503, "always-500", server.base_url)
    assert "overloaded" in str(err) and "3 attempt" in str(err)


async def test_hanging_server_times_out_each_attempt(server: FakeOpenAI) -> None:
    timeout, retries = 0.3, 1
    async with client_for(server, timeout_s=timeout, max_retries=retries) as client:
        t0 = time.perf_counter()
        with pytest.raises(LLMTimeoutError) as info:
            await client.complete("hang", MESSAGES)
        elapsed = time.perf_counter() - t0
    attempts = retries + 1
    assert server.hits["hang"] == attempts
    assert timeout * attempts <= elapsed < timeout * attempts + 0.5
    assert "timed out" in str(info.value) and info.value.status is None


async def test_malformed_json_is_retried_then_reported(server: FakeOpenAI) -> None:
    async with client_for(server, max_retries=2) as client:
        with pytest.raises(LLMError) as info:
            await client.complete("malformed", MESSAGES)
    assert server.hits["malformed"] == 3
    assert "malformed JSON" in str(info.value) and '{"choices"' in str(info.value)


async def test_connection_closed_mid_body_is_retried(server: FakeOpenAI) -> None:
    async with client_for(server, max_retries=1, timeout_s=2.0) as client:
        t0 = time.perf_counter()
        with pytest.raises(LLMError) as info:
            await client.complete("truncated", MESSAGES)
        elapsed = time.perf_counter() - t0
    assert server.hits["truncated"] == 2
    assert elapsed < 2.0 * 2
    assert "Payload" in str(info.value) or "Disconnected" in str(info.value)


async def test_400_is_not_retried_and_names_everything(server: FakeOpenAI) -> None:
    async with client_for(server) as client:
        with pytest.raises(LLMError) as info:
            await client.complete("400", MESSAGES)
    assert server.hits["400"] == 1
    err = info.value
    assert (err.status, err.model, err.endpoint) == (400, "400", server.base_url)
    assert "max_tokens too large" in str(err)


async def test_valid_json_that_is_not_a_completion_is_not_retried(server: FakeOpenAI) -> None:
    async with client_for(server) as client:
        with pytest.raises(LLMError, match="not a chat completion"):
            await client.complete("wrong-shape", MESSAGES)
    assert server.hits["wrong-shape"] == 1


async def test_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    async with OpenAIClient(url, retry=RetryPolicy(2, backoff_base_s=0.01)) as client:
        with pytest.raises(EndpointUnreachableError) as info:
            await client.complete("ok", MESSAGES)
    assert info.value.endpoint == url and "3 attempt" in str(info.value)


async def test_dropped_connections_give_up_as_unreachable_with_one_warning(
        server: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "pytts.llm")
    async with client_for(server, max_retries=3) as client:
        results = await asyncio.gather(*(client.complete("drop", MESSAGES) for _ in range(4)),
                                       return_exceptions=True)
    assert all(isinstance(r, EndpointUnreachableError) for r in results)
    assert server.hits["drop"] == 16                   # each call still had its retries
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 12
    assert [r.levelno for r in retries].count(logging.WARNING) == 1   # not a wall of warnings


async def test_http_errors_are_not_reported_as_unreachable(server: FakeOpenAI) -> None:
    async with client_for(server, max_retries=1) as client:
        with pytest.raises(LLMError) as info:
            await client.complete("always-500", MESSAGES)
    assert not isinstance(info.value, EndpointUnreachableError)


async def test_a_gone_server_process_fails_requests_with_no_attempt(server: FakeOpenAI) -> None:
    gone: list[str] = []
    async with client_for(server, liveness=lambda: gone[0] if gone else None) as client:
        await client.complete("ok", MESSAGES)
        gone.append("server process was killed by signal SIGILL")
        with pytest.raises(ServerExitedError, match="SIGILL") as info:
            await client.complete("ok", MESSAGES)
    assert server.hits["ok"] == 1 and info.value.endpoint == server.base_url


async def test_request_carries_sampling_params(server: FakeOpenAI) -> None:
    async with client_for(server) as client:
        await client.complete("ok", MESSAGES, n=2, temperature=0.3, max_tokens=17, seed=5,
                              stop=["\n\n"])
    body = server.requests[-1]
    assert body == {"model": "ok", "messages": MESSAGES, "n": 2, "temperature": 0.3,
                    "max_tokens": 17, "seed": 5, "stop": ["\n\n"]}


async def test_usage_is_shared_prompt_and_split_completion(server: FakeOpenAI) -> None:
    async with client_for(server) as client:
        out = await client.complete("ok", MESSAGES, n=3)
    assert [c.prompt_tokens for c in out] == [11, 11, 11]
    assert [c.completion_tokens for c in out] == [6, 5, 5]  # 16 in total
    assert all(0 < c.latency_s < 1 and c.model == "ok" and not c.cached for c in out)
    assert [c.finish_reason for c in out] == ["stop"] * 3


async def test_server_ignoring_n_is_topped_up_with_per_sample_seeds(server: FakeOpenAI) -> None:
    async with client_for(server) as client:
        out = await client.complete("single", MESSAGES, n=3, seed=7)
    assert len(out) == 3 and server.hits["single"] == 3
    assert sorted(r.get("seed") for r in server.requests) == sorted(
        [7, sample_seed(7, 1), sample_seed(7, 2)])
    assert len({c.text for c in out}) == 3


@pytest.mark.parametrize("limit, low, high", [(8, 0.2, 0.5), (2, 0.8, 1.3)])
async def test_concurrency_is_bounded_per_client(server: FakeOpenAI, limit: int, low: float,
                                                 high: float) -> None:
    async with client_for(server, max_concurrency=limit) as client:
        await client.complete("ok", MESSAGES)  # open the session outside the timed region
        t0 = time.perf_counter()
        await asyncio.gather(*(client.complete("slow", MESSAGES) for _ in range(8)))
        elapsed = time.perf_counter() - t0
    assert low <= elapsed < high


async def test_api_key_is_sent_but_never_shown(server: FakeOpenAI,
                                               caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-test-SECRET-0123456789"
    caplog.set_level(logging.DEBUG, logger="pytts.llm")
    client = client_for(server, api_key=secret, max_retries=1)
    async with client:
        await client.complete("500-then-ok", MESSAGES)  # logs a retry
        with pytest.raises(LLMError) as info:
            await client.complete("401-echo-auth", MESSAGES)  # server echoes the key back
    assert server.headers[0]["Authorization"] == f"Bearer {secret}"
    assert caplog.records, "the retry should have been logged"
    assert secret not in repr(client)
    assert secret not in str(info.value) and "***" in str(info.value)
    assert secret not in caplog.text


async def test_api_key_from_env(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTTS_TEST_KEY", "sk-from-env")
    async with client_for(server, api_key_env="PYTTS_TEST_KEY") as client:
        await client.complete("ok", MESSAGES)
    assert server.headers[0]["Authorization"] == "Bearer sk-from-env"


def test_missing_api_key_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTTS_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="PYTTS_NO_SUCH_KEY"):
        OpenAIClient("http://127.0.0.1:1/v1", api_key_env="PYTTS_NO_SUCH_KEY")


def test_backoff_is_full_jitter_and_bounded() -> None:
    policy = RetryPolicy(max_retries=4, backoff_base_s=0.25, backoff_max_s=1.0)
    rng = random.Random(1)
    waits = [policy.delay(attempt, None, rng) for attempt in range(8) for _ in range(200)]
    assert all(0.0 <= w <= 1.0 for w in waits)
    assert max(policy.delay(0, None, rng) for _ in range(200)) <= 0.25
    assert max(waits) > 0.9  # later attempts do reach the cap
    assert policy.delay(0, 2.5, rng) == 2.5 and policy.delay(0, 60.0, rng) == 4.0
    assert RetryPolicy.retries_status(429) and RetryPolicy.retries_status(502)
    assert not RetryPolicy.retries_status(400) and not RetryPolicy.retries_status(404)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e999", "soon", "", "1,5"])
def test_retry_after_that_is_not_a_finite_delay_is_ignored(value: str) -> None:
    assert _parse_retry_after(value) is None


@pytest.mark.parametrize("retry_after", [float("nan"), float("inf"), -1.0])
def test_a_non_finite_or_negative_retry_after_falls_back_to_backoff(retry_after: float) -> None:
    wait = RetryPolicy(backoff_base_s=0.25, backoff_max_s=8.0).delay(0, retry_after,
                                                                    random.Random(0))
    assert 0.0 <= wait <= 0.25


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    from datetime import datetime, timezone
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert _parse_retry_after(" 3 ") == 3.0 and _parse_retry_after("0.5") == 0.5
    assert _parse_retry_after("Wed, 01 Jan 2025 12:00:07 GMT", now) == 7.0
    assert _parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0   # past: retry now
