"""Self-checks of an installation (``pytts doctor``): which kernels run and how they were built,
whether the embedded model runs on this CPU and how fast, and whether each endpoint of a pool
file answers. Each check is one line, OK or why not."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import LLMError, PyttsError

NATIVE_FLAGS = ("-march=native", "-mtune=native", "-mcpu=native")
"""Compiler flags that tie a build to the CPU of the machine that built it."""

PROBE_MESSAGES = [{"role": "user", "content": "Say OK."}]
"""The one tiny request sent to each endpoint."""

SPEED_PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to "
                                            "cook."}]
SPEED_TOKENS = 64
SPEED_TIMEOUT_S = 300.0
"""The timed completion of the embedded model: a prompt that keeps it talking, this many tokens,
and a timeout generous enough for a busy CPU (the figure is what this check is for)."""

_UNPORTABLE_CPU_FEATURES = ("AVX512", "AMX")
"""llama.cpp CPU features that a CPU may advertise and a virtual machine still trap on."""


@dataclass(frozen=True)
class Check:
    """The outcome of one self-check: what was checked, whether it passed, and the figure or
    the reason (with what to do)."""

    item: str
    ok: bool
    detail: str

    def line(self) -> str:
        """``OK   item: detail`` or ``FAIL item: detail``."""
        return f"{'OK  ' if self.ok else 'FAIL'} {self.item}: {self.detail}"


def check_backend() -> Check:
    """Which kernel implementation runs (``core`` or ``reference``); always passes."""
    from .kernels import BACKEND
    why = {"core": "the C++ extension", "reference": "the NumPy reference"}[BACKEND]
    if BACKEND == "reference" and os.environ.get("PYTTS_FORCE_REFERENCE", "") not in ("", "0"):
        why += ", forced by PYTTS_FORCE_REFERENCE"
    return Check("backend", True, f"{BACKEND} ({why})")


def check_extension_build() -> Check:
    """Whether ``pytts._core`` loads and whether it was built for this CPU only."""
    item = "extension build"
    try:
        from . import _core
    except ImportError as exc:
        return Check(item, False, f"pytts._core does not load ({exc}); the kernels run on the "
                                  "slower NumPy reference. Reinstall with a C++17 compiler: "
                                  "pip install -e .")
    flags = getattr(_core, "BUILD_FLAGS", "unknown")
    if flags == "unknown":
        return Check(item, True, "built without setup.py; its compiler flags are not recorded")
    if any(flag in flags.split() for flag in NATIVE_FLAGS):
        return Check(item, True, f"native ({flags}): runs only on CPUs like the build machine's")
    return Check(item, True, f"portable ({flags})")


def check_llama_build() -> Check:
    """The CPU features llama-cpp-python was compiled to use (asked in a child process, so a
    build that cannot even load here fails this check, not the doctor)."""
    item = "llama.cpp build"
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return Check(item, False, "importing llama_cpp took more than 60 s")
    if proc.returncode != 0:
        from .llm.local import describe_exit
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return Check(item, False, f"importing llama_cpp {describe_exit(proc.returncode)}: "
                                  f"{tail}")
    # "CPU : SSE3 = 1 | AVX = 1 | ... |": the names of the features set to 1
    features = [part.split("=")[0].split(":")[-1].strip() for part in proc.stdout.split("|")
                if part.strip().endswith("= 1")]
    risky = [f for f in features if f.startswith(_UNPORTABLE_CPU_FEATURES)]
    detail = "features " + " ".join(features)
    if risky:
        detail += (f"; uses {' '.join(risky)}, which a virtual machine may advertise and "
                   "still not allow (if the embedded model dies with SIGILL, rebuild portable)")
    return Check(item, True, detail)


def check_embedded_model(n_threads: int = 2) -> Check:
    """Start the embedded model (its startup ends with a real completion), time one
    completion of ``SPEED_TOKENS`` tokens and report tokens per second."""
    from .llm.base import Completion
    from .llm.local import SERVED_MODEL, LocalServer
    from .llm.openai import OpenAIClient, RetryPolicy

    async def timed(url: str) -> Completion:
        async with OpenAIClient(url, retry=RetryPolicy(max_retries=0), timeout_s=SPEED_TIMEOUT_S,
                                liveness=server.exit_reason) as client:
            out = await client.complete(SERVED_MODEL, SPEED_PROMPT, max_tokens=SPEED_TOKENS,
                                        temperature=0.0, seed=0)
        return out[0]

    item = "embedded model"
    server = LocalServer(n_threads=n_threads)
    t0 = time.perf_counter()
    try:
        with server:
            startup = time.perf_counter() - t0
            done = asyncio.run(timed(server.base_url))
    except PyttsError as exc:
        return Check(item, False, _one_line(str(exc)))
    return Check(item, True, f"{SERVED_MODEL} started in {startup:.1f} s; "
                             f"{done.completion_tokens} tokens in {done.latency_s:.2f} s = "
                             f"{done.completion_tokens / done.latency_s:.0f} tokens/s "
                             f"({done.prompt_tokens}-token prompt, {n_threads} threads)")


async def probe_endpoints(pool_path: str, timeout_s: float = 30.0) -> list[Check]:
    """One tiny request (no retries) to each (endpoint, served model) of a pool file."""
    from .llm.openai import OpenAIClient, RetryPolicy
    from .pool import ModelPool

    try:
        pool = ModelPool.from_file(pool_path)
    except (PyttsError, OSError) as exc:
        return [Check(f"pool {pool_path}", False, _one_line(str(exc)))]
    targets = sorted({(m.endpoint, m.api_model or m.name, m.api_key_env) for m in pool})

    async def probe(endpoint: str | None, model: str, key_env: str | None) -> Check:
        item = f"endpoint {endpoint} ({model})"
        if not endpoint:
            return Check(f"model {model}", False, "no endpoint in the pool file")
        try:
            async with OpenAIClient(endpoint, api_key_env=key_env, retry=RetryPolicy(max_retries=0),
                                    timeout_s=timeout_s) as client:
                out = await client.complete(model, PROBE_MESSAGES, max_tokens=1,
                                            temperature=0.0)
        except PyttsError as exc:
            # the item already names the endpoint and the model
            return Check(item, False, _one_line(exc.reason if isinstance(exc, LLMError)
                                                else str(exc)))
        return Check(item, True, f"answered in {out[0].latency_s:.2f} s")

    return list(await asyncio.gather(*(probe(*t) for t in targets)))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_checks(pool_path: str | None = None, *, local: bool = True,
               n_threads: int = 2) -> Iterator[Check]:
    """Every check, in order, each yielded as soon as it is done."""
    yield check_backend()
    yield check_extension_build()
    if local:
        yield check_llama_build()
        yield check_embedded_model(n_threads)
    if pool_path is not None:
        yield from asyncio.run(probe_endpoints(pool_path))
