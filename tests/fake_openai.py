"""A scriptable OpenAI chat-completions server on loopback, for testing clients against faults.

The requested model name picks the behaviour (see :meth:`FakeOpenAI._handle`); every request is
counted per model so tests can assert how many attempts reached the server.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from aiohttp import web

BEHAVIOURS = ("ok", "single", "slow", "429-then-ok", "500-then-ok", "always-500", "hang",
              "malformed", "truncated", "drop", "400", "401-echo-auth", "wrong-shape")


def completion_body(request: dict[str, Any], hit: int, choices: int) -> dict[str, Any]:
    """A chat completion whose texts name the seed, choice index and server hit that made it."""
    seed = request.get("seed")
    last = request["messages"][-1]["content"]
    return {
        "id": f"cmpl-{hit}", "object": "chat.completion", "model": request["model"],
        "choices": [{"index": i, "finish_reason": "stop",
                     "message": {"role": "assistant",
                                 "content": f"{last} -> seed={seed} choice={i} hit={hit}"}}
                    for i in range(choices)],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5 * choices + 1,
                  "total_tokens": 11 + 5 * choices + 1},
    }


class FakeOpenAI:
    """An aiohttp.web server on 127.0.0.1 (random port) answering ``/v1/chat/completions``.

    ``hits[model]`` counts requests per model; ``requests`` keeps every decoded body and
    ``headers`` every request's headers.
    """

    def __init__(self, *, slow_s: float = 0.2, hang_s: float = 30.0) -> None:
        self.slow_s = slow_s
        self.hang_s = hang_s
        self.hits: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        """Start serving; return the base URL (ending in ``/v1``)."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    def _add_routes(self, app: web.Application) -> None:
        """Subclasses add the other routes of the server they play here."""

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        self.hits[model] += 1
        hit = self.hits[model]
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        n = int(body.get("n", 1))
        ok = web.json_response(completion_body(body, hit, n))
        if model == "ok":
            return ok
        if model == "single":  # like llama.cpp: ignores n
            return web.json_response(completion_body(body, hit, 1))
        if model == "slow":
            await asyncio.sleep(self.slow_s)
            return ok
        if model == "429-then-ok":
            if hit == 1:
                return web.json_response({"error": "slow down"}, status=429,
                                         headers={"Retry-After": "0.3"})
            return ok
        if model == "500-then-ok":
            return web.Response(status=500, text="boom") if hit == 1 else ok
        if model == "always-500":
            return web.Response(status=503, text="overloaded")
        if model == "hang":
            await asyncio.sleep(self.hang_s)
            return ok
        if model == "malformed":
            return web.Response(body=b'{"choices": [{"message": ', content_type="application/json")
        if model == "truncated":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = 4000
            await resp.prepare(request)
            await resp.write(json.dumps(completion_body(body, hit, n)).encode()[:40])
            assert request.transport is not None
            request.transport.close()
            return resp
        if model == "drop":  # the connection dies with no answer, as when the host goes down
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if model == "400":
            return web.json_response({"error": {"message": "max_tokens too large"}}, status=400)
        if model == "401-echo-auth":
            return web.Response(status=401,
                                text=f"bad key: {request.headers.get('Authorization')}")
        if model == "wrong-shape":
            return web.json_response({"result": "not a chat completion"})
        return web.json_response({"error": f"unknown model {model}"}, status=404)
