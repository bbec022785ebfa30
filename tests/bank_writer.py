"""Writes completions through a BankedClient forever, printing ``DONE <k>`` after each call.

Run as ``python tests/bank_writer.py BANK_PATH``; test_bank SIGKILLs it mid-run and checks that
every call reported done is in the bank. The server is a loopback FakeOpenAI in this process.
"""

from __future__ import annotations

import asyncio
import sys

from fake_openai import FakeOpenAI

from pytts.llm.bank import BankedClient, ResponseBank
from pytts.llm.openai import OpenAIClient


async def main(path: str) -> None:
    async with FakeOpenAI() as server:
        bank = ResponseBank(path)
        client = BankedClient(OpenAIClient(server.base_url), bank)
        for k in range(1_000_000):
            await client.complete("ok", [{"role": "user", "content": f"q{k}"}], n=2, seed=k)
            sys.stdout.write(f"DONE {k}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
