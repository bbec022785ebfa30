"""A persistent store of every completion, and the client that serves repeated requests from it.

Keying completions by (model, prompt, sampling params, sample index) lets candidate graphs be
compared on common samples and makes a repeated search cost no new calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..defaults import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from ..errors import BankError, BankMissError, LLMError
from .base import Completion, LLMClient, Message, SamplingParams, sample_seed

log = logging.getLogger("pytts.llm")

_SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another's lock (a second process on the same bank) before
the statement fails."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    finish_reason TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (model, prompt_hash, params_hash, sample_index)
) WITHOUT ROWID
"""
# First writer wins: once a sample is stored every later reader sees that same answer.
_INSERT = ("INSERT OR IGNORE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_SELECT = ("SELECT sample_index, text, prompt_tokens, completion_tokens, latency_s, "
           "finish_reason FROM completions WHERE model = ? AND prompt_hash = ? "
           "AND params_hash = ? AND sample_index < ?")


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def prompt_hash(messages: Sequence[Message]) -> str:
    """sha256 of the messages' canonical JSON; independent of endpoint and sampling."""
    return hashlib.sha256(_canonical([dict(m) for m in messages])).hexdigest()


def params_hash(params: SamplingParams) -> str:
    """sha256 of the sampling params' canonical JSON (temperature, max_tokens, seed, stop, and
    the reply schema when there is one, so unconstrained requests keep their keys)."""
    fields: dict[str, object] = {
        "temperature": float(params.temperature), "max_tokens": int(params.max_tokens),
        "seed": params.seed, "stop": list(params.stop)}
    if params.json_schema is not None:
        fields["json_schema"] = params.json_schema
    return hashlib.sha256(_canonical(fields)).hexdigest()


def _check_version(path: str, conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, _SCHEMA_VERSION):
        raise BankError(f"{path} is a ResponseBank of schema version {version}, this pytts "
                        f"reads version {_SCHEMA_VERSION}; use a new path")


_Rows = list[tuple[object, ...]]
_Job = tuple[_Rows, "concurrent.futures.Future[None]"]


class ResponseBank:
    """A SQLite file (WAL mode) holding completions keyed by (model, prompt_hash, params_hash,
    sample_index).

    Reads run on the caller's thread through their own read-only connection: an indexed lookup
    that never waits for a writer. All writes go through one writer thread that commits queued
    batches together, so the event loop never blocks on a commit; :meth:`put_many` resolves once
    its rows are committed.

    Durability: WAL with ``synchronous=NORMAL`` by default. A committed transaction is already in
    the WAL file (written before the commit returns), so it survives the process being killed
    (SIGKILL, OOM killer, crash) and is recovered automatically by the next open; only an OS
    crash or power loss can drop the last transactions before a checkpoint. ``fsync=True``
    (``synchronous=FULL``) syncs the WAL on every commit and closes that gap too, at the price
    of one fsync per batch.

    With ``replay_only`` a :class:`BankedClient` raises :class:`BankMissError` instead of calling
    the server. Counters: ``hits`` and ``misses`` (samples looked up), ``writes`` (rows stored).
    """

    def __init__(self, path: str | os.PathLike[str], *, replay_only: bool = False,
                 fsync: bool = False) -> None:
        self.path = os.fspath(path)
        self.replay_only = replay_only
        self.hits = 0
        self.misses = 0
        self.writes = 0
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise BankError(f"ResponseBank {self.path} cannot be created ({exc}); point the run "
                            "at a writable place") from None
        self._synchronous = "FULL" if fsync else "NORMAL"
        # Schema setup (and WAL recovery of a killed writer) happens here so that a broken or
        # foreign file fails the constructor, not some later write.
        try:
            setup = self._connect()
            try:
                _check_version(self.path, setup)
                setup.execute("BEGIN IMMEDIATE")
                setup.execute(_SCHEMA)
                setup.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                setup.execute("COMMIT")
            finally:
                setup.close()
        except sqlite3.DatabaseError as exc:
            raise BankError(f"{self.path} is not a usable ResponseBank: {exc}") from None
        self._reader = self._connect(check_same_thread=False)
        self._reader.execute("PRAGMA query_only = 1")
        # The read connection may be used from several threads (event loop, executors).
        self._read_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="pytts-bank-writer",
                                        daemon=True)
        self._closed = False
        self._writer.start()

    @staticmethod
    def check(path: str | os.PathLike[str]) -> None:
        """BankError unless ``path`` is absent or a ResponseBank this version reads; nothing is
        written, so a run can check its bank before it creates anything."""
        if not os.path.exists(path):
            return
        try:
            conn = sqlite3.connect(os.fspath(path), timeout=_BUSY_TIMEOUT_S)
            try:
                conn.execute("PRAGMA query_only = 1")
                _check_version(os.fspath(path), conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise BankError(f"{os.fspath(path)} is not a usable ResponseBank: {exc}") from None

    def _connect(self, **kwargs: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, **kwargs)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def __repr__(self) -> str:
        return (f"ResponseBank({self.path!r}, replay_only={self.replay_only}, hits={self.hits}, "
                f"misses={self.misses}, writes={self.writes})")

    # Any: a column's Python type comes from the schema above, which mypy cannot see
    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._read_lock:
                return self._reader.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise BankError(f"ResponseBank {self.path} cannot be read ({exc}); restore it or "
                            "point the run at a new bank") from None

    def __len__(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM completions")[0][0])

    def count_since(self, created: float) -> int:
        """Completions stored at or after the Unix time ``created``: the calls paid for since."""
        return int(self._read("SELECT COUNT(*) FROM completions WHERE created >= ?",
                              (created,))[0][0])

    def __enter__(self) -> ResponseBank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, model: str, prompt_hash: str, params_hash: str, n: int) -> dict[int, Completion]:
        """The stored samples with index below ``n``, by index, as cached completions."""
        rows = self._read(_SELECT, (model, prompt_hash, params_hash, n))
        found = {row[0]: Completion(text=row[1], prompt_tokens=row[2], completion_tokens=row[3],
                                    latency_s=row[4], model=model, finish_reason=row[5],
                                    cached=True) for row in rows}
        self.hits += len(found)
        self.misses += n - len(found)
        return found

    async def aget(self, model: str, prompt_hash: str, params_hash: str,
                   n: int) -> dict[int, Completion]:
        """`get` for async callers (a local lookup; remote banks make it a real await)."""
        return self.get(model, prompt_hash, params_hash, n)

    def put_many_nowait(self, model: str, prompt_hash: str, params_hash: str,
                        items: Mapping[int, Completion]) -> concurrent.futures.Future[None]:
        """Queue ``items`` (sample index -> completion) for the writer; the future resolves
        when they are committed. Samples already stored are kept, not overwritten."""
        if self._closed:
            raise BankError(f"ResponseBank {self.path} is closed")
        now = time.time()
        rows: _Rows = [(model, prompt_hash, params_hash, k, c.text, c.prompt_tokens,
                        c.completion_tokens, c.latency_s, c.finish_reason, now)
                       for k, c in items.items()]
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put((rows, done))
        return done

    async def put_many(self, model: str, prompt_hash: str, params_hash: str,
                       items: Mapping[int, Completion]) -> None:
        """Store ``items`` (sample index -> completion); returns once they are committed."""
        await asyncio.wrap_future(self.put_many_nowait(model, prompt_hash, params_hash, items))

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                first = self._queue.get()
                jobs = [first]
                # Group commit: everything queued meanwhile shares one transaction.
                while True:
                    try:
                        jobs.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = None in jobs
                work = [job for job in jobs if job is not None]
                if work:
                    self._commit(conn, work)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        # A waiter that was cancelled meanwhile gets no answer, but its rows are still stored:
        # they are finished completions and the next request will want them.
        waiting = [done for _, done in jobs if done.set_running_or_notify_cancel()]
        before = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
            for rows, _ in jobs:
                conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any bad batch
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.error("ResponseBank %s: write failed: %s", self.path, exc)
            error = BankError(f"ResponseBank {self.path}: write failed ({exc}); restore it or "
                              "point the run at a new bank")
            for done in waiting:
                done.set_exception(error)
            return
        self.writes += conn.total_changes - before
        for done in waiting:
            done.set_result(None)

    def close(self) -> None:
        """Commit everything queued, stop the writer thread and close the connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        with self._read_lock:
            self._reader.close()


class _Abandoned(Exception):
    """The request fetching a sample was cancelled; whoever waited on it fetches it again."""


_Key = tuple[str, str, str, int]


class BankedClient:
    """An LLMClient that answers from a :class:`ResponseBank` and asks ``inner`` only for
    samples the bank lacks.

    Sample ``k`` of a request is the bank's entry for (model, prompt, params, k). Served samples
    are marked ``cached`` and keep their stored latency, so cost accounting stays realistic.
    Missing samples are fetched, committed, then returned in index order: with a ``seed``, each
    as its own ``n=1`` call seeded with :func:`~pytts.llm.base.sample_seed` (so sample ``k`` is
    the same whatever ``n`` the request had); without one, as a single call for all missing
    samples. Concurrent requests for the same sample share one fetch.

    ``calls_made`` counts requests sent to ``inner``; ``calls_served`` counts completions served
    without a request of their own (from the bank or a concurrent identical request).
    """

    def __init__(self, inner: LLMClient, bank: ResponseBank) -> None:
        self.inner = inner
        self.bank = bank
        self.calls_made = 0
        self.calls_served = 0
        self._inflight: dict[_Key, asyncio.Future[Completion]] = {}

    def __repr__(self) -> str:
        return (f"BankedClient({self.inner!r}, {self.bank!r}, calls_made={self.calls_made}, "
                f"calls_served={self.calls_served})")

    async def complete(self, model: str, messages: Sequence[Message], *, n: int = 1,
                       temperature: float = DEFAULT_TEMPERATURE,
                       max_tokens: int = DEFAULT_MAX_TOKENS,
                       seed: int | None = None, stop: Sequence[str] | None = None,
                       json_schema: Mapping[str, Any] | None = None) -> list[Completion]:
        """Return samples ``0..n-1`` of this request, from the bank where it has them."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        params = SamplingParams(temperature, max_tokens, seed, tuple(stop or ()),
                                None if json_schema is None else _canonical(json_schema).decode())
        ph, pa = prompt_hash(messages), params_hash(params)
        result = await self.bank.aget(model, ph, pa, n)
        self.calls_served += len(result)
        while len(result) < n:
            missing = [k for k in range(n) if k not in result]
            if self.bank.replay_only:
                raise BankMissError(
                    f"replay-only bank {self.bank.path} lacks sample(s) {missing} of prompt "
                    f"{ph[:16]} (params {pa[:16]}); rerun without replay-only to fetch them",
                    model=model)
            mine: dict[int, asyncio.Future[Completion]] = {}
            theirs: dict[int, asyncio.Future[Completion]] = {}
            loop = asyncio.get_running_loop()
            for k in missing:
                key = (model, ph, pa, k)
                fut = self._inflight.get(key)
                if fut is None:
                    fut = self._inflight[key] = loop.create_future()
                    mine[k] = fut
                else:
                    theirs[k] = fut
            if mine:
                result.update(await self._fetch(model, messages, params, ph, pa, mine))
            for k, fut in theirs.items():
                try:
                    # shield: our cancellation must not cancel the fetch others rely on.
                    shared = await asyncio.shield(fut)
                except _Abandoned:
                    continue
                result[k] = dataclasses.replace(shared, cached=True)
                self.calls_served += 1
            if len(result) < n:
                result.update(await self.bank.aget(model, ph, pa, n))
        return [result[k] for k in range(n)]

    async def _fetch(self, model: str, messages: Sequence[Message], params: SamplingParams,
                     ph: str, pa: str,
                     futures: dict[int, asyncio.Future[Completion]]) -> dict[int, Completion]:
        indices = list(futures)
        stop = list(params.stop) or None
        schema = None if params.json_schema is None else json.loads(params.json_schema)
        try:
            if params.seed is None:
                self.calls_made += 1
                comps = await self.inner.complete(
                    model, messages, n=len(indices), temperature=params.temperature,
                    max_tokens=params.max_tokens, seed=None, stop=stop, json_schema=schema)
                if len(comps) < len(indices):
                    raise LLMError(f"asked for {len(indices)} completions, got {len(comps)}",
                                   model=model)
            else:
                self.calls_made += len(indices)
                tasks = [asyncio.ensure_future(self.inner.complete(
                    model, messages, n=1, temperature=params.temperature,
                    max_tokens=params.max_tokens, seed=sample_seed(params.seed, k), stop=stop,
                    json_schema=schema))
                    for k in indices]
                try:
                    comps = [c[0] for c in await asyncio.gather(*tasks)]
                except BaseException:
                    for task in tasks:
                        task.cancel()
                    raise
            got = dict(zip(indices, comps))
            await self.bank.put_many(model, ph, pa, got)
        except BaseException as exc:
            error = _Abandoned() if isinstance(exc, asyncio.CancelledError) else exc
            for fut in futures.values():
                if not fut.done():
                    fut.set_exception(error)
                    fut.exception()  # marks it retrieved: nobody may be waiting
            raise
        else:
            for k, fut in futures.items():
                fut.set_result(got[k])
            return got
        finally:
            for k in indices:
                self._inflight.pop((model, ph, pa, k), None)

    async def aclose(self) -> None:
        """Close the inner client (the bank is left open: it may be shared)."""
        await self.inner.aclose()
