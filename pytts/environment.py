"""Run modes: where a run's pool, task, costs and defaults come from, and how its LLM client opens.

There is one `Environment` per mode: a simulated preset (``pool = "sim:PRESET"``), the embedded
local model (``pool = "local"``) and a pool file of OpenAI-compatible endpoints. The run
(`pytts.runner`), the CLI and the Ray workers ask the environment and never branch on the mode
themselves.
"""

from __future__ import annotations

import contextlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from .cost import Budget, CostModel
from .errors import ConfigError
from .llm.base import LLMClient
from .pool import ModelPool

if TYPE_CHECKING:
    from .config import SearchConfig
    from .sim import SimulatedPool
    from .tasks.base import Task

__all__ = ["Environment", "LocalEnvironment", "PoolFileEnvironment", "SimEnvironment",
           "environment_for"]


class Environment(ABC):
    """A run mode: it makes the pool, the task and the cost model of a configuration, knows the
    mode's default template and budget, checks what the mode needs installed, and opens the
    run's LLM client (starting a server first where the mode has one).

    ``template`` is the default ``(depth, width)``; ``default_budget`` the budget when the config
    names none (None: the config must name one); ``presets`` are config values that a CLI flag
    for this mode (``--demo``, ``--local``) sets.
    """

    template: tuple[int, int]
    default_budget: Budget | str | None = None
    presets: ClassVar[dict[str, Any]] = {}

    @property
    def simulator(self) -> SimulatedPool | None:
        """The simulated pool behind a simulated run (its ground truth), else None."""
        return None

    @abstractmethod
    def pool(self) -> ModelPool:
        """The models of the run (a server started later may still change their endpoints)."""

    @abstractmethod
    def task(self, config: SearchConfig) -> Task:
        """The dev task of the run."""

    def cost(self, pool: ModelPool, task: Task) -> CostModel:
        """The cost model of ``pool`` on ``task``'s prompts."""
        return CostModel(pool, task.prompt_tokens)

    def budget(self, name: str | None) -> Budget:
        """The budget the config names (FLOPs or "N x MODEL"), or the mode's default."""
        chosen = name if name is not None else self.default_budget
        if chosen is None:
            raise ConfigError("budget is required for a pool file: FLOPs (2e12) or 'N x MODEL'")
        return chosen if isinstance(chosen, Budget) else Budget.parse(chosen)

    def check(self, config: SearchConfig) -> None:  # noqa: B027 - most modes need nothing
        """ConfigError for what the mode needs and lacks (nothing, unless a mode says so)."""

    def endpoints(self, pool: ModelPool) -> list[str]:
        """The URLs that must answer before the run starts (none unless the user runs them)."""
        return []

    def connect(self, config: SearchConfig, pool: ModelPool) -> LLMClient:
        """A client of ``pool`` whose servers are up (what a Ray worker uses)."""
        from .llm.router import RoutedClient
        return RoutedClient(pool, max_concurrency=config.concurrency,
                            timeout_s=config.timeout_s)

    @contextlib.asynccontextmanager
    async def open_client(self, config: SearchConfig,
                          pool: ModelPool) -> AsyncIterator[tuple[LLMClient, ModelPool]]:
        """The run's client and the pool with its real endpoints, closed afterwards."""
        client = self.connect(config, pool)
        try:
            yield client, pool
        finally:
            await client.aclose()


class SimEnvironment(Environment):
    """A simulated preset (``pool = "sim:PRESET"``): pool, task, costs, template and named
    budgets come from the preset, and the client is the simulation itself (no server)."""

    presets: ClassVar[dict[str, Any]] = {"pool": "sim:math-like", "task": "sim",
                                         "budget": "high", "n_questions": 250}
    """``--demo``: the preset's high budget, where the best graph is a multi-node strategy that
    beats every single-model graph, so the search has something to find."""

    def __init__(self, preset: str, seed: int) -> None:
        from .sim import SimulatedPool
        self._sim = SimulatedPool(preset, seed=seed)
        self.template = self._sim.template
        self.default_budget = self._sim.budgets["low"]

    @property
    def simulator(self) -> SimulatedPool:
        return self._sim

    def pool(self) -> ModelPool:
        return self._sim.pool

    def task(self, config: SearchConfig) -> Task:
        return self._sim.task(config.n_questions, split="dev", seed=config.seed)

    def cost(self, pool: ModelPool, task: Task) -> CostModel:
        return self._sim.cost_model()

    def budget(self, name: str | None) -> Budget:
        named = self._sim.budgets.get(name) if name else None
        return named if named is not None else super().budget(name)

    def connect(self, config: SearchConfig, pool: ModelPool) -> LLMClient:
        return self._sim  # type: ignore[return-value]

    @contextlib.asynccontextmanager
    async def open_client(self, config: SearchConfig,
                          pool: ModelPool) -> AsyncIterator[tuple[LLMClient, ModelPool]]:
        # nothing to close: the simulation holds no connection
        yield self.connect(config, pool), pool


class _LoadedTask(Environment):
    """A mode whose task is loaded by name (`pytts.tasks.load_task`)."""

    def task(self, config: SearchConfig) -> Task:
        from .tasks.registry import load_task
        return load_task(config.task, path=config.dataset, n=config.n_questions, seed=config.seed)


class LocalEnvironment(_LoadedTask):
    """The embedded SmolLM2-135M model (``pool = "local"``), served by a llama.cpp server that
    `open_client` starts and stops."""

    template = (2, 3)
    default_budget = "4x smollm2-135m-fewshot"
    presets: ClassVar[dict[str, Any]] = {"pool": "local", "task": "arith", "n_questions": 10,
                                         "n_evals": 6, "batch_size": 2, "concurrency": 2,
                                         "max_tokens": 96}
    """``--local``: a run short enough for a 2-core CPU (arith answers fit in 96 tokens)."""

    server_concurrency = 2
    """Requests in flight to the embedded server: it decodes one sequence per thread (two)."""

    _PLACEHOLDER_URL = "http://127.0.0.1:1/v1"
    """The endpoint of the pool before the server runs (its port is chosen when it starts)."""

    def pool(self) -> ModelPool:
        from .llm.local import local_pool_specs
        return ModelPool.from_dicts(local_pool_specs(self._PLACEHOLDER_URL))

    def check(self, config: SearchConfig) -> None:
        from .llm.local import local_gguf_path
        local_gguf_path()
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError('pool = "local" needs llama-cpp-python[server]: pip install '
                              '"pytts[local]"')

    @contextlib.asynccontextmanager
    async def open_client(self, config: SearchConfig,
                          pool: ModelPool) -> AsyncIterator[tuple[LLMClient, ModelPool]]:
        from .llm.local import LocalServer, local_pool_specs
        from .llm.router import RoutedClient
        with LocalServer() as server:
            served = ModelPool.from_dicts(local_pool_specs(server.base_url))
            client = RoutedClient(served, max_concurrency=self.server_concurrency,
                                  timeout_s=config.timeout_s,
                                  liveness={server.base_url: server.exit_reason})
            try:
                yield client, served
            finally:
                await client.aclose()


class PoolFileEnvironment(_LoadedTask):
    """A pool file (TOML/JSON) of models served at OpenAI-compatible endpoints the user runs."""

    template = (4, 8)

    def __init__(self, path: str) -> None:
        self.path = path

    def pool(self) -> ModelPool:
        pool = ModelPool.from_file(self.path)
        missing = [m.name for m in pool if not m.endpoint]
        if missing:
            raise ConfigError(f"pool {self.path}: model(s) {missing} have no endpoint; set "
                              "endpoint = \"http://HOST:PORT/v1\" for each")
        return pool

    def endpoints(self, pool: ModelPool) -> list[str]:
        return sorted({m.endpoint for m in pool if m.endpoint})


def environment_for(config: SearchConfig) -> Environment:
    """The environment of ``config.pool``: "sim:PRESET", "local", or a pool file."""
    if config.pool.startswith("sim:"):
        return SimEnvironment(config.pool[4:], config.seed)
    if config.pool == "local":
        return LocalEnvironment()
    return PoolFileEnvironment(config.pool)
