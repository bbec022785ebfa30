"""RoutedClient maps pool model names to endpoints, server model names and temperatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fake_openai import FakeOpenAI

from pytts.errors import ConfigError, LLMError, RateLimitError
from pytts.llm.openai import RetryPolicy
from pytts.llm.router import RoutedClient

pytestmark = pytest.mark.server

MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Spec:
    """The ModelSpec attributes the router reads."""

    name: str
    endpoint: str | None
    api_model: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None


class Pool:
    def __init__(self, *specs: Spec) -> None:
        self._specs = {s.name: s for s in specs}

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def __getitem__(self, name: str) -> Spec:
        return self._specs[name]


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    async with FakeOpenAI() as a, FakeOpenAI() as b:
        yield a, b


async def test_models_reach_their_endpoint_under_the_server_name(
        servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    a, b = servers
    pool = Pool(Spec("warm", a.base_url, api_model="ok"),
                Spec("cold", a.base_url + "/", api_model="ok", temperature=0.1),
                Spec("ok", b.base_url))
    router = RoutedClient(pool)
    try:
        assert len(router.clients) == 2  # "warm" and "cold" share one endpoint client
        warm = await router.complete("warm", MESSAGES, temperature=0.9)
        cold = await router.complete("cold", MESSAGES, temperature=0.9)
        other = await router.complete("ok", MESSAGES)
    finally:
        await router.aclose()
    assert [r["temperature"] for r in a.requests] == [0.9, 0.1]
    assert all(r["model"] == "ok" for r in a.requests)
    assert b.hits["ok"] == 1 and a.hits["ok"] == 2
    assert (warm[0].model, cold[0].model, other[0].model) == ("warm", "cold", "ok")


def test_model_without_endpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'lonely'"):
        RoutedClient(Pool(Spec("lonely", None)))


async def test_unknown_model_names_the_known_ones(servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    router = RoutedClient(Pool(Spec("ok", servers[0].base_url)))
    with pytest.raises(LLMError, match="'nope' is not in the pool.*ok"):
        await router.complete("nope", MESSAGES)
    await router.aclose()


async def test_the_retry_policy_reaches_every_endpoint_client(
        servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    a, b = servers
    policy = RetryPolicy(max_retries=0, backoff_base_s=0.01, backoff_max_s=0.1)
    router = RoutedClient(Pool(Spec("x", a.base_url, api_model="429-then-ok"),
                               Spec("y", b.base_url, api_model="429-then-ok")), retry=policy)
    try:
        assert [c.retry for c in router.clients] == [policy, policy]
        for name, server in (("x", a), ("y", b)):
            with pytest.raises(RateLimitError):              # no retry: the 429 stands
                await router.complete(name, MESSAGES)
            assert server.hits["429-then-ok"] == 1
    finally:
        await router.aclose()
