"""A LocalServer whose process dies says so at once: the next request fails with one LLMError
naming the signal (and, for SIGILL, the cause and the portable reinstall command) and carrying
the server's last output, with no rounds of retries against the dead process.

The process is a stand-in (tests/dying_server.py) that crashes on a chosen request, so these
tests need neither llama.cpp nor a CPU that traps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from dying_server import LAST_WORDS

from pytts import CollaborationGraph, ModelPool
from pytts.errors import LLMError, ServerExitedError
from pytts.evaluate import Evaluator
from pytts.execute import GraphExecutor
from pytts.llm.local import REINSTALL_PORTABLE, LocalServer
from pytts.llm.openai import OpenAIClient
from pytts.llm.router import RoutedClient
from pytts.tasks.arith import ArithTask

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]

MESSAGES = [{"role": "user", "content": "2+2?"}]
DEADLINE_S = 2.0


class DyingServer(LocalServer):
    """LocalServer running tests/dying_server.py: request ``at`` (1 = the startup completion)
    gets ``then`` (a signal name, or ``hang``)."""

    def __init__(self, tmp_path: Path, at: int, then: str) -> None:
        super().__init__(startup_timeout_s=30)
        self.hits_file = tmp_path / "hits"
        self.at, self.then = at, then

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name("dying_server.py")),
                "--port", str(self.port), "--hits", str(self.hits_file), "--at", str(self.at),
                "--then", self.then]

    @property
    def hits(self) -> int:
        """Completion requests that reached the process (the startup one included)."""
        return len(self.hits_file.read_text().split()) if self.hits_file.exists() else 0


def client_of(server: LocalServer) -> OpenAIClient:
    return OpenAIClient(server.base_url, liveness=server.exit_reason, jitter_seed=0)


def retries_logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum("retrying" in r.getMessage() for r in caplog.records)


async def test_sigill_mid_request_fails_at_once_naming_the_cause_and_the_fix(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "pytts.llm")
    async with DyingServer(tmp_path, at=3, then="ILL") as server, client_of(server) as client:
        assert server.hits == 1                       # startup ended with a real completion
        await client.complete("m", MESSAGES)          # request 2 is answered
        t0 = time.perf_counter()
        with pytest.raises(ServerExitedError) as info:
            await client.complete("m", MESSAGES)      # request 3: the process raises SIGILL
        elapsed = time.perf_counter() - t0
        message = str(info.value)
        assert elapsed < DEADLINE_S, elapsed
        assert "SIGILL" in message and "CPU instructions" in message
        assert REINSTALL_PORTABLE in message
        assert LAST_WORDS.format(action="ILL", n=3) in message     # the output tail
        assert info.value.endpoint == server.base_url
        assert server.hits == 3 and retries_logged(caplog) <= 1
        t0 = time.perf_counter()
        with pytest.raises(ServerExitedError, match="SIGILL"):
            await client.complete("m", MESSAGES)      # later requests: no attempt at all
        assert time.perf_counter() - t0 < 0.1 and server.hits == 3


async def test_sigkill_mid_request_fails_at_once_naming_the_signal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "pytts.llm")
    async with DyingServer(tmp_path, at=2, then="hang") as server, client_of(server) as client:
        request = asyncio.ensure_future(client.complete("m", MESSAGES))
        while server.hits < 2:                        # the request is inside the server
            await asyncio.sleep(0.01)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        t0 = time.perf_counter()
        with pytest.raises(ServerExitedError) as info:
            await request
        assert time.perf_counter() - t0 < DEADLINE_S
        assert "SIGKILL" in str(info.value) and "out-of-memory" in str(info.value)
        assert LAST_WORDS.format(action="hang", n=2) in str(info.value)
        assert server.hits == 2 and retries_logged(caplog) <= 1


async def test_a_death_mid_evaluation_stops_the_evaluation_with_that_error(
        tmp_path: Path) -> None:
    async with DyingServer(tmp_path, at=6, then="ILL") as server:
        spec = {"family": "fake", "params_b": 1.0, "endpoint": server.base_url}
        pool = ModelPool.from_dicts([{"name": "a", **spec}, {"name": "b", **spec}])
        client = RoutedClient(pool, max_concurrency=2,
                              liveness={server.base_url: server.exit_reason})
        task = ArithTask(n=40, seed=0)
        evaluator = Evaluator(GraphExecutor(client, pool, task), concurrency=2)
        try:
            t0 = time.perf_counter()
            with pytest.raises(ServerExitedError, match="SIGILL"):
                await evaluator.evaluate(CollaborationGraph.layered([[0, 1]], pool.names))
            assert time.perf_counter() - t0 < DEADLINE_S + 1.0
        finally:
            await client.aclose()
    assert server.hits == 6     # nothing was sent after the crash, and 40 questions were not


def test_a_crash_on_the_startup_completion_fails_startup(tmp_path: Path) -> None:
    server = DyingServer(tmp_path, at=1, then="ILL")
    with pytest.raises(ServerExitedError) as info:
        server.start()
    assert "SIGILL" in str(info.value) and "on its first completion" in str(info.value)
    assert REINSTALL_PORTABLE in str(info.value)
    assert not server.running and server.exit_reason() is not None


def test_exit_reason_is_none_while_running_and_says_stopped_after_stop(tmp_path: Path) -> None:
    with DyingServer(tmp_path, at=99, then="ILL") as server:
        assert server.exit_reason() is None
    assert "was stopped" in (server.exit_reason() or "")


async def test_liveness_failure_is_raised_before_any_attempt(tmp_path: Path) -> None:
    with DyingServer(tmp_path, at=99, then="ILL") as server:
        url, reason = server.base_url, server.exit_reason
    async with OpenAIClient(url, liveness=reason) as client:
        with pytest.raises(LLMError, match="was stopped"):
            await client.complete("m", MESSAGES)
