"""ResponseBank stores and serves completions; BankedClient calls the server only for misses."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI

from pytts.errors import BankError, BankMissError, LLMError
from pytts.llm.bank import BankedClient, ResponseBank, params_hash, prompt_hash
from pytts.llm.base import Completion, SamplingParams, sample_seed
from pytts.llm.openai import OpenAIClient, RetryPolicy

pytestmark = pytest.mark.server

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(slow_s=0.2) as srv:
        yield srv


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[ResponseBank]:
    with ResponseBank(tmp_path / "bank.sqlite") as b:
        yield b


def banked(server: FakeOpenAI, bank: ResponseBank) -> BankedClient:
    client = OpenAIClient(server.base_url, retry=RetryPolicy(backoff_base_s=0.01))
    return BankedClient(client, bank)


def test_hashes_ignore_key_order_but_not_content() -> None:
    reordered = [{"content": m["content"], "role": m["role"]} for m in MESSAGES]
    assert prompt_hash(MESSAGES) == prompt_hash(reordered)
    assert prompt_hash(MESSAGES) != prompt_hash(MESSAGES[1:])
    base = SamplingParams(temperature=0.7, max_tokens=64, seed=1)
    assert params_hash(base) == params_hash(SamplingParams(0.7, 64, 1, ()))
    for other in (SamplingParams(0.8, 64, 1), SamplingParams(0.7, 65, 1),
                  SamplingParams(0.7, 64, 2), SamplingParams(0.7, 64, 1, ("\n",))):
        assert params_hash(other) != params_hash(base)
    assert params_hash(SamplingParams(1, 64)) == params_hash(SamplingParams(1.0, 64))


async def test_put_many_then_get_roundtrips_every_field(bank: ResponseBank) -> None:
    comp = Completion("four", prompt_tokens=12, completion_tokens=3, latency_s=0.42, model="m",
                      finish_reason="length")
    await bank.put_many("m", "p", "q", {0: comp, 2: comp})
    assert bank.writes == 2
    got = bank.get("m", "p", "q", 3)
    assert sorted(got) == [0, 2]
    assert got[0] == Completion("four", 12, 3, 0.42, "m", "length", cached=True)
    assert (bank.hits, bank.misses) == (2, 1)
    assert bank.get("m", "p", "other", 3) == {} and bank.get("other", "p", "q", 3) == {}


async def test_first_stored_answer_wins(bank: ResponseBank) -> None:
    first = Completion("first", 1, 1, 0.1, "m")
    await bank.put_many("m", "p", "q", {0: first})
    await bank.put_many("m", "p", "q", {0: Completion("second", 1, 1, 0.1, "m")})
    assert bank.get("m", "p", "q", 1)[0].text == "first"
    assert bank.writes == 1 and len(bank) == 1


async def test_repeated_request_is_served_from_bank_without_calls(
        server: FakeOpenAI, bank: ResponseBank) -> None:
    client = banked(server, bank)
    first = await client.complete("ok", MESSAGES, n=3, temperature=0.5, max_tokens=32)
    again = await client.complete("ok", MESSAGES, n=3, temperature=0.5, max_tokens=32)
    await client.aclose()
    assert server.hits["ok"] == 1 and client.calls_made == 1 and client.calls_served == 3
    assert [c.text for c in again] == [c.text for c in first]
    assert not any(c.cached for c in first) and all(c.cached for c in again)
    assert [c.latency_s for c in again] == [c.latency_s for c in first]
    assert (bank.hits, bank.misses, bank.writes) == (3, 3, 3)


async def test_seeded_sample_k_is_the_same_whatever_n(server: FakeOpenAI,
                                                      bank: ResponseBank) -> None:
    client = banked(server, bank)
    two = await client.complete("single", MESSAGES, n=2, seed=9)
    four = await client.complete("single", MESSAGES, n=4, seed=9)
    await client.aclose()
    assert [c.text for c in four[:2]] == [c.text for c in two]
    assert server.hits["single"] == 4 and client.calls_made == 4  # only indices 2, 3 fetched
    assert [r["seed"] for r in server.requests[2:]] == [sample_seed(9, 2), sample_seed(9, 3)]
    assert len({c.text for c in four}) == 4


async def test_concurrent_identical_requests_share_one_call(server: FakeOpenAI,
                                                            bank: ResponseBank) -> None:
    client = banked(server, bank)
    results = await asyncio.gather(*(client.complete("slow", MESSAGES, n=2) for _ in range(5)))
    await client.aclose()
    assert server.hits["slow"] == 1 and client.calls_made == 1
    assert all([c.text for c in r] == [c.text for c in results[0]] for r in results)
    assert client.calls_served == 8  # 4 followers x 2 samples, none from their own call


async def test_cancelled_fetcher_leaves_follower_to_fetch(server: FakeOpenAI,
                                                          bank: ResponseBank) -> None:
    client = banked(server, bank)
    owner = asyncio.ensure_future(client.complete("slow", MESSAGES))
    await asyncio.sleep(0.05)  # owner's request is in flight
    follower = asyncio.ensure_future(client.complete("slow", MESSAGES))
    await asyncio.sleep(0.05)
    owner.cancel()
    out = await follower
    await client.aclose()
    assert owner.cancelled() and out[0].text.startswith("2+2?")
    assert server.hits["slow"] == 2 and len(bank) == 1


async def test_failed_fetch_reaches_followers_and_is_not_remembered(
        server: FakeOpenAI, bank: ResponseBank) -> None:
    client = BankedClient(OpenAIClient(server.base_url, retry=RetryPolicy(max_retries=0)), bank)
    results = await asyncio.gather(*(client.complete("400", MESSAGES) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, LLMError) and r.status == 400 for r in results)
    with pytest.raises(LLMError):
        await client.complete("400", MESSAGES)
    await client.aclose()
    assert server.hits["400"] == 2 and len(bank) == 0


async def test_replay_only_serves_hits_and_raises_on_miss(server: FakeOpenAI,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "bank.sqlite"
    with ResponseBank(path) as bank:
        client = banked(server, bank)
        stored = await client.complete("ok", MESSAGES, n=2, seed=1)
        await client.aclose()
    with ResponseBank(path, replay_only=True) as bank:
        client = banked(server, bank)
        replayed = await client.complete("ok", MESSAGES, n=2, seed=1)
        with pytest.raises(BankMissError) as info:
            await client.complete("ok", MESSAGES, n=3, seed=1)
        await client.aclose()
    assert [c.text for c in replayed] == [c.text for c in stored]
    assert server.hits["ok"] == 2 and client.calls_made == 0
    err = info.value
    assert err.model == "ok" and prompt_hash(MESSAGES)[:16] in str(err) and "[2]" in str(err)


def test_killed_writer_loses_no_reported_completion(tmp_path: Path) -> None:
    path = tmp_path / "bank.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bank_writer.py")),
                             str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    done: list[int] = []
    deadline = time.monotonic() + 120  # generous: a loaded machine starves the writer
    assert proc.stdout is not None
    try:
        while len(done) < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            done.append(int(line.split()[1]))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=10)
    done += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("DONE ")]
    assert proc.returncode == -signal.SIGKILL
    assert len(done) >= 150, f"writer made too little progress; stderr:\n{err[-2000:]}"
    with ResponseBank(path, replay_only=True) as bank:  # recovers the WAL of the dead writer
        for k in done:
            got = bank.get("ok", prompt_hash([{"role": "user", "content": f"q{k}"}]),
                           params_hash(SamplingParams(seed=k)), 2)
            assert sorted(got) == [0, 1], f"call {k} was reported done but is not stored"
        assert len(bank) >= 2 * len(done)


def test_a_file_that_is_not_a_bank_is_a_bank_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("not a database\n" * 100)
    for open_or_check in (ResponseBank, ResponseBank.check):
        with pytest.raises(BankError, match="is not a usable ResponseBank") as info:
            open_or_check(path)
        assert str(path) in str(info.value)
    assert path.read_text().startswith("not a database")        # left as it was


def test_a_bank_of_another_schema_version_is_a_bank_error(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(BankError, match="schema version 99") as info:
        ResponseBank(path)
    assert str(path) in str(info.value)


def test_a_bank_that_cannot_be_created_is_a_bank_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = blocker / "bank.sqlite"              # its directory would have to be a file
    with pytest.raises(BankError, match="cannot be created") as info:
        ResponseBank(path)
    assert str(path) in str(info.value)


async def test_a_closed_bank_refuses_writes_with_a_bank_error(tmp_path: Path) -> None:
    bank = ResponseBank(tmp_path / "bank.sqlite")
    bank.close()
    comp = Completion("four", prompt_tokens=1, completion_tokens=1, latency_s=0.1, model="m")
    with pytest.raises(BankError, match="is closed"):
        await bank.put_many("m", "p", "q", {0: comp})


async def test_a_failed_write_is_a_bank_error_naming_the_bank(bank: ResponseBank) -> None:
    # a value SQLite cannot store fails the commit the way a full disk or a lost file would
    unstorable = Completion(["not", "text"], prompt_tokens=1, completion_tokens=1,  # type: ignore[arg-type]
                            latency_s=0.1, model="m")
    with pytest.raises(BankError, match="write failed") as info:
        await bank.put_many("m", "p", "q", {0: unstorable})
    assert bank.path in str(info.value)
    good = Completion("four", prompt_tokens=1, completion_tokens=1, latency_s=0.1, model="m")
    await bank.put_many("m", "p", "q", {0: good})              # the writer lives on
    assert bank.get("m", "p", "q", 1)[0].text == "four"
