"""Scale-out on Ray: the candidates of one ``ask()`` batch are evaluated in parallel on a cluster.

Each Ray worker (an async actor) rebuilds the run's task and LLM client from the run's config
and runs the ordinary async executor against the LLM endpoints. All ResponseBank traffic goes
through one bank actor that owns the run's SQLite file, so there is still a single writer and
a call made by one worker is served to every other. On a multi-node cluster the bank actor is
placed on the driver's node (it needs the run directory's file); workers anywhere reach it over
Ray. Results are identical to local mode for the same seed: every call's seed depends only on
the graph and the question, never on which worker ran it.

Connect with ``--ray auto`` (a running cluster, e.g. after ``ray start --head``; if none is
running, a local instance is started) or ``--ray ray://HOST:10001`` / ``HOST:6379``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .evaluate import EvalResult, Evaluator
from .graph import CollaborationGraph
from .llm.base import Completion
from .pool import ModelPool


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError('--ray needs Ray: pip install "pytts[ray]"') from None
    return ray


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` ("auto": a running one, else start a local one)."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address == "auto":
        try:
            ray.init(address="auto", log_to_driver=False)
        except ConnectionError:
            ray.init(num_cpus=os.cpu_count(), log_to_driver=False, include_dashboard=False)
    else:
        ray.init(address=address, log_to_driver=False)


class _BankService:
    """The one owner of the run's ResponseBank (a Ray actor)."""

    def __init__(self, path: str, replay_only: bool) -> None:
        from .llm.bank import ResponseBank
        self.bank = ResponseBank(path, replay_only=replay_only)

    def get(self, model: str, ph: str, pa: str, n: int) -> dict[int, dict]:
        return {k: dataclasses.asdict(c) for k, c in self.bank.get(model, ph, pa, n).items()}

    async def put_many(self, model: str, ph: str, pa: str, items: dict[int, dict]) -> None:
        await self.bank.put_many(model, ph, pa, {k: Completion(**c) for k, c in items.items()})

    def close(self) -> None:
        self.bank.close()


class RemoteBank:
    """The ResponseBank interface `BankedClient` uses, forwarded to the bank actor."""

    def __init__(self, actor: Any, path: str, replay_only: bool) -> None:
        self.actor = actor
        self.path = path
        self.replay_only = replay_only

    async def aget(self, model: str, ph: str, pa: str, n: int) -> dict[int, Completion]:
        found = await self.actor.get.remote(model, ph, pa, n)
        return {k: Completion(**c) for k, c in found.items()}

    async def put_many(self, model: str, ph: str, pa: str, items: dict[int, Completion]) -> None:
        await self.actor.put_many.remote(model, ph, pa,
                                         {k: dataclasses.asdict(c) for k, c in items.items()})


class _EvalWorker:
    """One worker (a Ray async actor): the run's evaluator, built once, scoring graphs."""

    def __init__(self, config: dict, pool: list[dict], bank_actor: Any, bank_path: str) -> None:
        from .config import SearchConfig
        from .runner import resolve
        self.setup = resolve(SearchConfig.from_mapping(config))
        self.pool = ModelPool.from_dicts(pool)
        self.bank = RemoteBank(bank_actor, bank_path, replay_only=False)
        self.evaluator: Evaluator | None = None

    def _evaluator(self) -> Evaluator:
        # built inside the actor's event loop: aiohttp sessions belong to the loop that made them
        if self.evaluator is None:
            from .runner import wire_evaluator
            setup = self.setup
            client = setup.env.connect(setup.config, self.pool)
            self.evaluator = wire_evaluator(setup, client, self.pool,
                                            self.bank)  # type: ignore[arg-type]
        return self.evaluator

    async def evaluate(self, graph: dict) -> dict:
        g = CollaborationGraph.from_dict(graph, self.pool.names)
        return (await self._evaluator().evaluate(g)).to_dict()


class RayEvaluator:
    """Scores graphs on Ray workers; ``evaluate`` is awaitable like `Evaluator.evaluate`."""

    def __init__(self, config: dict, pool: ModelPool, bank_path: str, n_workers: int) -> None:
        ray = _ray()
        bank_cls = ray.remote(num_cpus=0)(_BankService)
        self.bank_actor = bank_cls.remote(bank_path, False)
        worker_cls = ray.remote(num_cpus=0)(_EvalWorker)
        self.workers = [worker_cls.remote(config, pool.to_dicts(), self.bank_actor, bank_path)
                        for _ in range(max(1, n_workers))]
        self._next = 0
        self._free: asyncio.Queue | None = None

    async def evaluate(self, graph: CollaborationGraph) -> EvalResult:
        if self._free is None:
            self._free = asyncio.Queue()
            for worker in self.workers:
                self._free.put_nowait(worker)
        worker = await self._free.get()
        try:
            data = await worker.evaluate.remote(graph.to_dict())
        finally:
            self._free.put_nowait(worker)
        return EvalResult.from_dict(data)

    def close(self) -> None:
        ray = _ray()
        ray.get(self.bank_actor.close.remote())
        for actor in [*self.workers, self.bank_actor]:
            ray.kill(actor)


def ray_evaluator_factory(address: str) -> Callable[..., RayEvaluator]:
    """What `runner.execute_run` calls to get the run's evaluator in Ray mode."""

    def factory(setup, pool: ModelPool, bank) -> RayEvaluator:
        connect(address)
        ray = _ray()
        n_workers = min(int(ray.cluster_resources().get("CPU", 1)), setup.config.batch_size)
        config = {f.name: getattr(setup.config, f.name)
                  for f in dataclasses.fields(setup.config)}
        return RayEvaluator(config, pool, bank.path, n_workers)

    return factory
