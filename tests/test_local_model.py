"""The embedded SmolLM2-135M server answers chat completions, deterministically under a seed,
and a ResponseBank in front of it replays a run with no new calls."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytts import runner
from pytts.config import SearchConfig
from pytts.errors import LLMError, ServerExitedError
from pytts.llm.bank import BankedClient, ResponseBank
from pytts.llm.local import (
    REINSTALL_PORTABLE,
    SERVED_MODEL,
    LocalServer,
    local_gguf_path,
    local_pool_specs,
)
from pytts.llm.openai import OpenAIClient
from pytts.llm.router import RoutedClient

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300)]

QUESTION = [{"role": "user", "content": "What is 7 + 5? Answer with a number."}]


def test_gguf_ships_in_the_package() -> None:
    path = local_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


async def test_chat_completion_returns_text_and_usage(local_server: LocalServer) -> None:
    async with OpenAIClient(local_server.base_url) as client:
        out = await client.complete(SERVED_MODEL, QUESTION, max_tokens=16, seed=1)
    comp = out[0]
    assert comp.text.strip()
    assert comp.prompt_tokens > 5 and 0 < comp.completion_tokens <= 16
    assert comp.latency_s > 0 and comp.finish_reason in ("stop", "length")


async def test_same_seed_gives_same_text(local_server: LocalServer) -> None:
    async with OpenAIClient(local_server.base_url) as client:
        runs = [await client.complete(SERVED_MODEL, QUESTION, max_tokens=24, temperature=1.0,
                                      seed=seed) for seed in (11, 11, 12, 13)]
    texts = [r[0].text for r in runs]
    assert texts[0] == texts[1]
    assert len(set(texts[1:])) > 1  # other seeds do sample something else


class _Pool:
    def __init__(self, specs: list[dict]) -> None:
        self._specs = {s["name"]: type("Spec", (), s) for s in specs}
        self.names = list(self._specs)

    def __getitem__(self, name: str) -> object:
        return self._specs[name]


async def test_bank_fills_then_replays_with_no_new_calls(local_server: LocalServer,
                                                         tmp_path: Path) -> None:
    pool = _Pool(local_pool_specs(local_server.base_url))
    path = tmp_path / "bank.sqlite"
    with ResponseBank(path) as bank:
        client = BankedClient(RoutedClient(pool), bank)
        first = await client.complete("smollm2-135m-cold", QUESTION, n=2, max_tokens=12, seed=3)
        await client.aclose()
    assert client.calls_made == 2 and len({c.text for c in first}) >= 1
    with ResponseBank(path, replay_only=True) as bank:
        client = BankedClient(RoutedClient(pool), bank)
        again = await client.complete("smollm2-135m-cold", QUESTION, n=2, max_tokens=12, seed=3)
        await client.aclose()
    assert client.calls_made == 0 and client.calls_served == 2
    assert [c.text for c in again] == [c.text for c in first]
    assert all(c.cached and c.model == "smollm2-135m-cold" for c in again)


def test_startup_failure_reports_the_server_output() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalServer(port=taken.getsockname()[1], startup_timeout_s=60)
        with pytest.raises(LLMError, match="(?i)address already in use"):
            server.start()
    assert not server.running


def test_leaving_the_context_stops_the_process_group() -> None:
    with LocalServer() as server:
        pid = server.pid
        assert pid is not None
        os.killpg(pid, 0)  # the group exists while serving
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_local_pool_is_one_model_under_named_settings() -> None:
    specs = local_pool_specs("http://127.0.0.1:9/v1")
    fields = {"name", "family", "params_b", "out_tokens", "prefill_tps", "decode_tps",
              "overhead_s", "endpoint", "api_model", "api_key_env", "temperature",
              "prompt_style"}
    assert all(set(s) == fields for s in specs)
    assert len({s["name"] for s in specs}) == len(specs) >= 3
    assert {(s["prompt_style"], s["temperature"]) for s in specs} == {
        ("few-shot", 0.7), ("zero-shot", 0.7), ("few-shot", 0.2)}
    assert all(s["api_model"] == SERVED_MODEL and s["endpoint"] == "http://127.0.0.1:9/v1"
               and s["name"].startswith("smollm2-135m-") for s in specs)


def test_serve_local_stops_its_server_on_sigterm() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen(
            [sys.executable, "-c", f"from pytts.llm.local import serve_local; serve_local({port})"],
            stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}/v1" in banner
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    with pytest.raises(OSError):  # the llama server went down with it
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def _llama_server_pid(port: int) -> int:
    """The pid of the model server process listening on ``port`` (found in /proc): the
    embedded model runs as ``python -m pytts.llm.llama_server`` (llama_cpp.server plus /props)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        if b"pytts.llm.llama_server" in argv and str(port).encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no model server process on port {port}")


def test_serve_local_says_why_its_server_died() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with subprocess.Popen(
            [sys.executable, "-m", "pytts.cli", "serve-local", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert f"127.0.0.1:{port}/v1" in proc.stdout.readline()
        os.kill(_llama_server_pid(port), signal.SIGILL)    # as an illegal instruction would
        assert proc.wait(timeout=20) == 128 + signal.SIGILL
        said = proc.stderr.read()
    assert "SIGILL" in said and REINSTALL_PORTABLE in said


async def test_a_local_run_fails_at_once_when_its_model_server_dies() -> None:
    setup = runner.resolve(SearchConfig().merged({"pool": "local", "task": "arith",
                                                  "n_questions": 2}))
    async with runner.open_client(setup) as (client, pool):
        name = pool.names[0]
        await client.complete(name, QUESTION, max_tokens=4, seed=0)
        port = int(pool[name].endpoint.rsplit(":", 1)[1].split("/")[0])
        os.kill(_llama_server_pid(port), signal.SIGILL)
        t0 = time.perf_counter()
        with pytest.raises(ServerExitedError, match="SIGILL"):
            await client.complete(name, QUESTION, max_tokens=4, seed=1)
        assert time.perf_counter() - t0 < 2.0


def test_server_threads_sleep_while_waiting_unless_the_user_says_otherwise(
        local_server: LocalServer) -> None:
    environ = Path(f"/proc/{local_server.pid}/environ").read_bytes().split(b"\0")
    expected = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    assert f"OMP_WAIT_POLICY={expected}".encode() in environ
