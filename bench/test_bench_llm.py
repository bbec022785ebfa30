"""pytest-benchmark view of bench.llm_overhead: one OpenAIClient call against the instant server.

Run ``pytest bench/test_bench_llm.py --benchmark-enable``; with benchmarks disabled (the default
in pyproject) it still checks that a call round-trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.llm_overhead import MESSAGES, MODEL, start_instant_server
from pytts.llm.openai import OpenAIClient


@pytest.fixture(scope="module")
def instant_url() -> Iterator[str]:
    url, proc = start_instant_server()
    yield url
    proc.terminate()
    proc.join()


def test_openai_client_call(benchmark, instant_url: str) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.new_event_loop()
    client = OpenAIClient(instant_url)

    def call() -> object:
        return loop.run_until_complete(client.complete(MODEL, MESSAGES, max_tokens=64, seed=1))

    try:
        out = benchmark(call)
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    assert out[0].text.endswith("72.") and out[0].prompt_tokens == 52
