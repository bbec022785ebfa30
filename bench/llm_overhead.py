"""Client-side cost of an LLM call: OpenAIClient vs raw aiohttp vs ``openai.AsyncOpenAI``.

Run ``python -m bench.llm_overhead``. An "instant" chat-completions server (a bare asyncio
protocol that answers every request with the same fixed completion, no parsing beyond framing)
runs in a separate process, pinned to its own core when the machine has two, so whatever CPU
the server burns is not charged to the client.

Method:

(a) Overhead per call = client-process CPU time (``time.process_time``: user + system time of
    all threads of this process) over many sequential calls, divided by the number of calls.
    Against an instant server in another process this is exactly what one call costs the
    orchestrating process: building the payload, JSON, the HTTP exchange, the event loop and
    the syscalls. Raw aiohttp (``session.post`` + ``orjson.loads``, same payload) is the floor;
    "OpenAIClient layer" = OpenAIClient minus that floor, i.e. the Python this package adds.
(b) Throughput = requests completed per wall second with ``concurrency`` requests in flight,
    same server, same request count, each client measured ``repeats`` times interleaved with the
    others; the median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

MODEL = "bench-model"
MESSAGES = [{"role": "system", "content": "You are a careful math assistant."},
            {"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and "
                                        "then half as many in May. How many altogether?"}]

_BODY = json.dumps({
    "id": "cmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL,
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant",
                             "content": "48 + 24 = 72. The answer is 72."}}],
    "usage": {"prompt_tokens": 52, "completion_tokens": 14, "total_tokens": 66},
}).encode()
_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
             + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)


class _InstantHTTP(asyncio.Protocol):
    """HTTP/1.1 keep-alive: for each complete request (headers + Content-Length body) write the
    fixed response. Enough HTTP for these clients, and far cheaper than any client under test."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            i = head.find(b"content-length:")
            length = 0
            if i >= 0:
                j = head.find(b"\r\n", i)
                length = int(head[i + 15:j if j >= 0 else None])
            total = end + 4 + length
            if len(buf) < total:
                return
            del buf[:total]
            self._transport.write(_RESPONSE)  # type: ignore[attr-defined]


def _serve(conn: Connection, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_InstantHTTP, "127.0.0.1", 0, backlog=1024)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def start_instant_server() -> tuple[str, mp.process.BaseProcess]:
    """Start the instant server in its own process; return its base URL and the process."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu = cpus[-1] if len(cpus) >= 2 else None
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, server_cpu), daemon=True)
    proc.start()
    port = parent.recv()
    if server_cpu is not None:
        os.sched_setaffinity(0, set(cpus) - {server_cpu})
    return f"http://127.0.0.1:{port}/v1", proc


Call = Callable[[], Awaitable[object]]


@dataclass
class Contender:
    """One client under test: how to make one call, and how to close it."""

    name: str
    call: Call
    close: Callable[[], Awaitable[None]]


async def make_contenders(base_url: str, concurrency: int) -> list[Contender]:
    import aiohttp
    import openai
    import orjson

    from pytts.llm.openai import OpenAIClient

    ours = OpenAIClient(base_url, api_key="sk-bench", max_concurrency=concurrency)

    async def ours_call() -> object:
        return await ours.complete(MODEL, MESSAGES, max_tokens=64, temperature=0.7, seed=1)

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"})
    url = base_url + "/chat/completions"
    payload = {"model": MODEL, "messages": MESSAGES, "temperature": 0.7, "max_tokens": 64,
               "seed": 1}

    async def raw_call() -> object:
        async with session.post(url, data=orjson.dumps(payload)) as resp:
            return orjson.loads(await resp.read())

    theirs = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)

    async def theirs_call() -> object:
        return await theirs.chat.completions.create(model=MODEL, messages=MESSAGES,  # type: ignore[arg-type]
                                                    max_tokens=64, temperature=0.7, seed=1)

    return [Contender("raw aiohttp (floor)", raw_call, session.close),
            Contender("pytts OpenAIClient", ours_call, ours.aclose),
            Contender("openai.AsyncOpenAI", theirs_call, theirs.close)]


async def cpu_per_call(call: Call, calls: int) -> float:
    """Client CPU seconds per call, calls made one after another."""
    for _ in range(50):
        await call()
    c0 = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - c0) / calls


async def requests_per_second(call: Call, requests: int, concurrency: int) -> float:
    """Completed requests per wall second with ``concurrency`` workers sharing ``requests``."""
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - t0)


@dataclass
class Row:
    name: str
    cpu_us: float
    rps: float


async def run(base_url: str, *, sequential_calls: int, requests: int, concurrency: int,
              repeats: int) -> list[Row]:
    contenders = await make_contenders(base_url, concurrency)
    try:
        cpu: dict[str, list[float]] = {c.name: [] for c in contenders}
        rps: dict[str, list[float]] = {c.name: [] for c in contenders}
        for _ in range(repeats):  # interleaved, so drifting machine load hits all alike
            for c in contenders:
                cpu[c.name].append(await cpu_per_call(c.call, sequential_calls))
                rps[c.name].append(await requests_per_second(c.call, requests, concurrency))
        return [Row(c.name, statistics.median(cpu[c.name]) * 1e6,
                    statistics.median(rps[c.name])) for c in contenders]
    finally:
        for c in contenders:
            await c.close()


def report(rows: list[Row], *, requests: int, concurrency: int) -> str:
    by = {r.name: r for r in rows}
    floor, ours, theirs = (by["raw aiohttp (floor)"], by["pytts OpenAIClient"],
                           by["openai.AsyncOpenAI"])
    lines = [f"{'client':<22} {'CPU us/call':>12} {'req/s @' + str(concurrency):>12}",
             "-" * 48]
    lines += [f"{r.name:<22} {r.cpu_us:>12.1f} {r.rps:>12.0f}" for r in rows]
    lines += ["-" * 48,
              f"OpenAIClient layer over raw aiohttp: {ours.cpu_us - floor.cpu_us:.1f} us/call",
              f"OpenAIClient vs AsyncOpenAI: {theirs.cpu_us / ours.cpu_us:.2f}x less CPU/call, "
              f"{ours.rps / theirs.rps:.2f}x req/s ({requests} requests)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequential-calls", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    base_url, proc = start_instant_server()
    try:
        rows = asyncio.run(run(base_url, sequential_calls=args.sequential_calls,
                               requests=args.requests, concurrency=args.concurrency,
                               repeats=args.repeats))
    finally:
        proc.terminate()
        proc.join()
    print(report(rows, requests=args.requests, concurrency=args.concurrency))


if __name__ == "__main__":
    main()
