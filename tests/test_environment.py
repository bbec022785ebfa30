"""One environment per run mode: each yields its pool, task, costs and defaults, and opens the
run's client; `resolve` and the run wiring ask it instead of branching on the mode."""

from __future__ import annotations

import pytest

from pytts import runner
from pytts.config import SearchConfig
from pytts.environment import LocalEnvironment, PoolFileEnvironment, SimEnvironment, environment_for
from pytts.errors import ConfigError
from pytts.llm.router import RoutedClient
from pytts.sim import SimulatedPool


def _pool_file(tmp_path, endpoint='endpoint = "http://127.0.0.1:9/v1"'):
    path = tmp_path / "pool.toml"
    path.write_text('[[models]]\nname = "m1"\nfamily = "f"\nparams_b = 1.0\n' + endpoint + "\n")
    return str(path)


def test_each_pool_value_picks_its_environment(tmp_path):
    assert isinstance(environment_for(SearchConfig()), SimEnvironment)
    local = SearchConfig(pool="local", task="arith")
    assert isinstance(environment_for(local), LocalEnvironment)
    path = _pool_file(tmp_path)
    env = environment_for(SearchConfig(pool=path, task="arith"))
    assert isinstance(env, PoolFileEnvironment) and env.path == path


def test_the_simulated_environment_yields_the_presets_parts():
    config = SearchConfig(n_questions=12, seed=3)
    env = environment_for(config)
    sim = SimulatedPool("math-like", seed=3)
    assert env.template == sim.template and env.pool().names == sim.pool.names
    task = env.task(config)
    assert [q.answer for q in task.questions] == \
        [q.answer for q in sim.task(12, split="dev", seed=3).questions]
    assert env.cost(env.pool(), task).budget_flops("4e12") == 4e12
    assert env.budget(None) == sim.budgets["low"] and env.budget("high") == sim.budgets["high"]
    assert env.endpoints(env.pool()) == [] and env.simulator is not None


async def test_the_simulated_environment_serves_the_simulation_itself():
    config = SearchConfig()
    env = environment_for(config)
    question = env.task(config).questions[0]
    async with env.open_client(config, env.pool()) as (client, pool):
        assert client is env.simulator and pool.names == env.pool().names
        out = await client.complete(pool.names[0], env.task(config).prompt(question))
    assert len(out) == 1 and out[0].completion_tokens > 0


async def test_a_pool_file_needs_a_budget_and_its_endpoints_and_opens_a_router(tmp_path):
    config = SearchConfig(pool=_pool_file(tmp_path), task="arith", concurrency=3, timeout_s=7.0)
    env = environment_for(config)
    assert env.endpoints(env.pool()) == ["http://127.0.0.1:9/v1"] and env.simulator is None
    assert env.template == (4, 8)
    with pytest.raises(ConfigError, match="budget is required for a pool file"):
        env.budget(None)
    async with env.open_client(config, env.pool()) as (client, _):
        assert isinstance(client, RoutedClient)
        (endpoint_client,) = client.clients
        assert (endpoint_client.max_concurrency, endpoint_client.timeout_s) == (3, 7.0)


def test_a_pool_file_model_without_endpoint_is_refused_by_name(tmp_path):
    env = PoolFileEnvironment(_pool_file(tmp_path, endpoint=""))
    with pytest.raises(ConfigError, match=r"model\(s\) \['m1'\] have no endpoint"):
        env.pool()


def test_the_local_environment_has_its_own_defaults():
    env = LocalEnvironment()
    assert env.template == (2, 3) and env.budget(None).model == "smollm2-135m-fewshot"
    assert {m.endpoint for m in env.pool()} == {LocalEnvironment._PLACEHOLDER_URL}
    assert env.endpoints(env.pool()) == []        # its server is started by the run itself


def test_resolve_takes_template_and_budget_defaults_from_the_environment(tmp_path):
    setup = runner.resolve(SearchConfig(pool=_pool_file(tmp_path), task="arith", budget="2e12",
                                        n_questions=3))
    assert setup.template == PoolFileEnvironment.template and setup.budget_flops == 2e12
    assert setup.sim is None and not setup.local
    demo = runner.resolve(SearchConfig().merged(SimEnvironment.presets))
    assert demo.budget_flops == demo.sim.budgets["high"].resolve(demo.cost)
    assert demo.template == demo.sim.template
