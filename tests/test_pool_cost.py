"""ModelPool loading, the cost formulas, and Budget parsing."""

from __future__ import annotations

import json

import pytest

from pytts import Budget, BudgetError, CollaborationGraph, ConfigError, CostModel, ModelPool

POOL_TOML = """
[[models]]
name = "qwen-1.5b"
family = "qwen"
params_b = 1.5
out_tokens = 300
prefill_tps = 4000
decode_tps = 80
overhead_s = 0.1

[[models]]
name = "llama-8b"
family = "llama"
params_b = 8.0
out_tokens = 200
prefill_tps = 1000
decode_tps = 20
overhead_s = 0.2
"""


@pytest.fixture
def pool(tmp_path) -> ModelPool:
    path = tmp_path / "pool.toml"
    path.write_text(POOL_TOML)
    return ModelPool.from_file(path)


def test_pool_loads_from_toml_and_json(pool, tmp_path):
    assert pool.names == ("qwen-1.5b", "llama-8b") and pool.families == ("qwen", "llama")
    path = tmp_path / "pool.json"
    path.write_text(json.dumps({"models": pool.to_dicts()}))
    assert ModelPool.from_file(path).to_dicts() == pool.to_dicts()
    assert pool.cost_table().shape == (2, 5)


@pytest.mark.parametrize("old, new, message", [
    ('params_b = 1.5', 'params_b = -1', "params_b must be > 0"),
    ('decode_tps = 80', 'decode_tps = 0', "decode_tps must be > 0"),
    ('out_tokens = 300', 'out_tokens = "many"', "out_tokens must be a number"),
    ('overhead_s = 0.1', 'overhead_s = 0.1\nflavour = "x"',
     r"unknown model field\(s\) \['flavour'\]"),
    ('name = "llama-8b"', 'name = "qwen-1.5b"', "duplicate model name"),
])
def test_bad_pool_files_name_the_problem(tmp_path, old, new, message):
    path = tmp_path / "pool.toml"
    path.write_text(POOL_TOML.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        ModelPool.from_file(path)


def test_missing_or_unparsable_pool_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ModelPool.from_file(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[models]\n")
    with pytest.raises(ConfigError, match="does not parse"):
        ModelPool.from_file(bad)


def test_unknown_model_lists_the_pool(pool):
    with pytest.raises(ConfigError, match="unknown model 'gpt'.*qwen-1.5b, llama-8b"):
        pool.index("gpt")


def test_cost_of_a_graph_follows_the_formulas(pool):
    cost = CostModel(pool, prompt_tokens=100, template_tokens=20)
    # two qwen answers fused by llama
    g = CollaborationGraph.layered([[0, 0], [1]], pool.names)
    flops, latency = cost.graph_cost(g)
    base = 120.0
    qwen = 2e9 * 1.5 * (base + 300)
    llama = 2e9 * 8.0 * (base + 600 + 200)
    assert flops == pytest.approx(2 * qwen + llama, rel=1e-12)
    qwen_lat = 0.1 + base / 4000 + 300 / 80
    llama_lat = 0.2 + (base + 600) / 1000 + 200 / 20
    assert latency == pytest.approx(qwen_lat + llama_lat, rel=1e-12)
    assert cost.call_flops("qwen-1.5b") == pytest.approx(qwen)
    assert cost.min_graph_flops() == pytest.approx(qwen)


def test_latency_is_the_critical_path_not_the_sum(pool):
    cost = CostModel(pool, prompt_tokens=100, template_tokens=20)
    wide = CollaborationGraph.layered([[0] * 6], pool.names)
    one = CollaborationGraph.layered([[0]], pool.names)
    assert cost.graph_cost(wide)[1] == pytest.approx(cost.graph_cost(one)[1])
    assert cost.graph_cost(wide)[0] == pytest.approx(6 * cost.graph_cost(one)[0])


def test_budget_parses_numbers_and_multiples_of_a_call(pool):
    cost = CostModel(pool, prompt_tokens=100, template_tokens=20)
    assert Budget.parse("2e12").resolve(cost) == 2e12
    assert Budget.parse(3e12).resolve(cost) == 3e12
    four = Budget.parse("4x llama-8b")
    assert four.resolve(cost) == pytest.approx(4 * cost.call_flops("llama-8b"))
    assert Budget.parse("2.5 * qwen-1.5b").resolve(cost) == pytest.approx(
        2.5 * cost.call_flops("qwen-1.5b"))


@pytest.mark.parametrize("spec", ["-1", "0", "lots", "nan", "4x"])
def test_malformed_budgets_are_config_errors(spec):
    with pytest.raises(ConfigError):
        Budget.parse(spec)


def test_budget_below_the_cheapest_graph_is_a_budget_error(pool):
    cost = CostModel(pool, prompt_tokens=100, template_tokens=20)
    with pytest.raises(BudgetError, match="below the cheapest graph"):
        Budget.parse(1e9).resolve(cost)
    with pytest.raises(ConfigError, match="unknown model"):
        Budget.parse("3x gpt").resolve(cost)
