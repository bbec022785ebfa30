"""An OpenAI-compatible server that misbehaves on purpose, one way per requested model name.

Run as a script it serves on a free loopback port and prints the port on its first line, so a
test can measure the client's memory without the server's in the same process. ``GET /hits``
returns how many requests reached each mode.

Modes (the ``model`` of the request): ``ok``; ``endless`` (a JSON body that never ends);
``endless-sse`` (an event stream that never ends); ``huge-declared`` (a Content-Length of 1 GiB);
``slow-drip`` (one byte every 0.2 s, forever); ``invalid-utf8``; ``wrong-schema`` (``choices``
is an object); ``negative-usage``; ``non-string-content``; ``retry-after-nan`` / ``-inf`` /
``-negative`` / ``-date`` (a 429 with that ``Retry-After`` first, then a completion);
``reset-then-ok`` and ``reset`` (the connection is dropped mid-response); ``redirect-loop``;
``reply:TEXT`` (a completion whose content is TEXT); ``slow:TEXT`` (the same after 0.05 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

from aiohttp import web

CHUNK = b" " * 65536
RETRY_AFTER = {"retry-after-nan": "nan", "retry-after-inf": "inf", "retry-after-negative": "-1"}


def completion(content: object, usage: dict | None = None) -> dict:
    return {"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": usage or {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


class HostileServer:
    """The aiohttp application and its per-mode request counts."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.complete)
        self.app.router.add_get("/v1/models", self.models)
        self.app.router.add_get("/hits", self.report_hits)
        self.app.router.add_route("*", "/loop", self.loop)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async def report_hits(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.hits))

    async def loop(self, request: web.Request) -> web.Response:
        self.hits["redirect-loop"] += 1
        raise web.HTTPFound("/loop")

    async def stream(self, request: web.Request, content_type: str, chunk: bytes,
                     pause_s: float = 0.0) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):     # the client hung up: that is the point
            while request.transport is not None and not request.transport.is_closing():
                await response.write(chunk)
                await asyncio.sleep(pause_s)
        return response

    async def complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        mode = body["model"]
        self.hits[mode] += 1
        first = self.hits[mode] == 1
        if mode.startswith("reply:"):
            return web.json_response(completion(mode[len("reply:"):]))
        if mode.startswith("slow:"):
            await asyncio.sleep(0.05)
            return web.json_response(completion(mode[len("slow:"):]))
        if mode == "endless":
            return await self.stream(request, "application/json", CHUNK)
        if mode == "endless-sse":
            return await self.stream(request, "text/event-stream",
                                     b"data: " + CHUNK[:65000] + b"\n\n")
        if mode == "slow-drip":
            return await self.stream(request, "application/json", b" ", pause_s=0.2)
        if mode == "huge-declared":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = 1 << 30
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):
                while request.transport is not None and not request.transport.is_closing():
                    await response.write(CHUNK)
            return response
        if mode == "invalid-utf8":
            return web.Response(body=b'{"choices": "\xff\xfe\xfd"}',
                                content_type="application/json")
        if mode == "wrong-schema":
            return web.json_response({"choices": {"0": completion("4")["choices"][0]}})
        if mode == "negative-usage":
            return web.json_response(completion("4", {"prompt_tokens": -105000000000,
                                                      "completion_tokens": 3}))
        if mode == "non-string-content":
            return web.json_response(completion(12345))
        if mode in RETRY_AFTER or mode == "retry-after-date":
            if not first:
                return web.json_response(completion("4"))
            value = RETRY_AFTER.get(mode) or email.utils.formatdate(time.time() + 2.0,
                                                                     usegmt=True)
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": value})
        if mode == "reset" or (mode == "reset-then-ok" and first):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = 1000
            await response.prepare(request)
            await response.write(b'{"choices": [')
            assert request.transport is not None
            request.transport.abort()
            return response
        if mode == "redirect-loop":
            raise web.HTTPFound("/loop")
        return web.json_response(completion("4"))


@contextlib.contextmanager
def serving() -> Iterator[str]:
    """Run this server in a child process for the block; yields its base URL (``.../v1``)."""
    proc = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()     # type: ignore[union-attr]


async def serve() -> None:
    runner = web.AppRunner(HostileServer().app, handle_signals=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)
