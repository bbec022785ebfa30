"""The simulated pool: a deterministic text-in/text-out LLMClient over a seeded latent model, and
the Monte-Carlo ground truth (`expected_accuracy`) that must agree with the text path."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time

import numpy as np
import pytest

from pytts import kernels
from pytts.cost import Budget
from pytts.demo_pool import DEMO_MODELS
from pytts.errors import ConfigError, LLMError
from pytts.evaluate import Evaluator
from pytts.execute import GraphExecutor
from pytts.graph import CollaborationGraph, GraphBatch
from pytts.llm.bank import BankedClient, ResponseBank
from pytts.llm.base import LLMClient, sample_seed
from pytts.prompts import node_messages
from pytts.sim import (
    PRESETS,
    SimTask,
    SimulatedPool,
    extract_final_answer,
    make_question,
    vote_codes,
)
from pytts.space import count_graphs


@pytest.fixture(scope="module")
def sim() -> SimulatedPool:
    return SimulatedPool("math-like", seed=3)


@pytest.fixture(scope="module")
def task(sim) -> SimTask:
    return sim.task(split="test")


def ask(sim, model, messages, **kw):
    return asyncio.run(sim.complete(model, messages, **kw))


def ask_many(sim, model, prompts, **kw):
    """Replies to each of ``prompts``, requested concurrently on one event loop."""
    async def run():
        return await asyncio.gather(*(sim.complete(model, m, **kw) for m in prompts))
    return asyncio.run(run())


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------ presets, pool and task
def test_presets_cover_three_families_and_a_tiny_enumerable_one():
    families = {name: p.family for name, p in PRESETS.items()}
    assert families["math-like"] == "math" and families["mmlu-like"] == "mmlu"
    assert families["code-like"] == "code"
    tiny = PRESETS["tiny"]
    depth, width = tiny.template
    assert count_graphs(depth, width, len(tiny.models), 2) <= 5000
    for preset in PRESETS.values():
        assert {"low", "high"} <= set(preset.budgets)


def test_unknown_preset_is_a_config_error_listing_the_names():
    with pytest.raises(ConfigError, match="math-like"):
        SimulatedPool("nope")


def test_pool_reuses_the_demo_costs_without_endpoints():
    sim = SimulatedPool("mmlu-like")
    demo = {m.name: m for m in DEMO_MODELS}
    assert isinstance(sim, LLMClient)
    for spec in sim.pool:
        assert spec == demo[spec.name] and spec.endpoint is None
    cost = sim.cost_model()
    assert cost.prompt_tokens == PRESETS["mmlu-like"].prompt_tokens
    for budget in sim.budgets.values():
        assert budget.resolve(cost) > cost.min_graph_flops()


@pytest.mark.parametrize("preset", ["math-like", "mmlu-like", "code-like", "tiny"])
def test_task_prompts_match_the_cost_model_prompt_length(preset):
    sim = SimulatedPool(preset)
    task = sim.task(20)
    assert task.family == PRESETS[preset].family and task.name == preset
    assert abs(task.prompt_tokens - PRESETS[preset].prompt_tokens) <= 15


def test_task_questions_are_seeded_prefixes_and_splits_differ(sim):
    small, large = sim.task(5, seed=1), sim.task(12, seed=1)
    assert [q.text for q in small.questions] == [q.text for q in large.questions[:5]]
    dev, test = sim.task(30), sim.task(30, split="test")
    assert not {q.text for q in dev.questions} & {q.text for q in test.questions}
    assert {q.text for q in sim.task(30, seed=2).questions} != {q.text for q in dev.questions}
    assert len(sim.task(split="test").questions) == PRESETS["math-like"].n_test
    with pytest.raises(ConfigError):
        sim.task(split="train")


def test_task_prompt_asks_for_the_answer_format_and_few_shot_adds_an_example(task):
    q = task.questions[7]
    zero = task.prompt(q)
    assert "The answer is X." in zero[0]["content"] and zero[-1]["content"] == q.text
    assert q.text.startswith("Problem 7 (math-like, test set 0):")
    few = task.prompt(q, "few-shot")
    assert len(few) == len(zero) + 2 and few[-1] == zero[-1]


def test_extract_reads_the_last_final_answer_and_check_is_exact(task):
    q = task.questions[0]
    assert extract_final_answer("x. The answer is 12. Wait, the answer is 14.") == "14"
    assert extract_final_answer("so THE ANSWER IS (b).") == "B"
    assert extract_final_answer("I ran out of room before") is None
    assert task.check(q, q.answer) and not task.check(q, q.answer + "0")
    assert not task.check(q, None)
    assert task.extract(q, f"blah. The answer is {q.answer}.") == q.answer


def test_mmlu_like_answers_are_letters_with_the_other_letters_as_distractors():
    q = make_question(PRESETS["mmlu-like"], "dev", 0, 3)
    assert q.answer in "ABCD" and sorted([q.answer, *q.meta["distractors"]]) == list("ABCD")
    assert math.isclose(sum(q.meta["weights"]), 1.0)


# ------------------------------------------------------------------ the client
def test_same_request_gives_the_same_reply_in_a_fresh_pool(task):
    msgs = task.prompt(task.questions[3])
    a = ask(SimulatedPool("math-like", seed=3), "qwen2.5-3b", msgs, seed=11)
    b = ask(SimulatedPool("math-like", seed=3), "qwen2.5-3b", msgs, seed=11)
    assert a == b
    other_pool = ask(SimulatedPool("math-like", seed=4), "qwen2.5-3b", msgs, seed=11)
    assert other_pool[0].text != a[0].text


def test_distinct_seeds_and_sample_indices_give_distinct_samples(sim, task):
    # A question every model gets right only some of the time.
    q = min(task.questions, key=lambda q: abs(q.meta["difficulty"] - 0.5))
    msgs = task.prompt(q)
    batch = ask(sim, "qwen2.5-3b", msgs, n=12, seed=5)
    assert len({c.text for c in batch}) == 12
    assert len({extract_final_answer(c.text) for c in batch}) >= 2
    # sample k of an n-request is the n=1 request seeded sample_seed(seed, k) (bank contract)
    for k in (0, 4):
        assert ask(sim, "qwen2.5-3b", msgs, seed=sample_seed(5, k))[0] == batch[k]
    assert ask(sim, "qwen2.5-3b", msgs, seed=6)[0].text != batch[0].text


def test_temperature_zero_is_greedy(sim, task):
    msgs = task.prompt(task.questions[2])
    replies = [ask(sim, "qwen2.5-7b", msgs, seed=s, temperature=0.0)[0] for s in (1, 2)]
    replies += ask(sim, "qwen2.5-7b", msgs, seed=3, n=2, temperature=0.0)
    assert len({c.text for c in replies}) == 1


def test_seed_none_is_deterministic_and_samples_still_differ(sim, task):
    msgs = task.prompt(task.questions[2])
    first = ask(sim, "qwen2.5-1.5b", msgs, n=3)
    assert first == ask(sim, "qwen2.5-1.5b", msgs, n=3)
    assert len({c.text for c in first}) == 3


def test_prompts_that_are_not_questions_of_the_preset_raise_llm_errors(sim, task):
    msgs = task.prompt(task.questions[0])
    with pytest.raises(LLMError, match="only answers questions"):
        ask(sim, "qwen2.5-3b", [{"role": "user", "content": "What is 2 + 2?"}])
    with pytest.raises(LLMError, match="text content"):
        ask(sim, "qwen2.5-3b", [])
    with pytest.raises(LLMError, match="unknown model"):
        ask(sim, "gpt-9", msgs)
    mmlu_msgs = SimulatedPool("mmlu-like").task(1).prompt(make_question(PRESETS["mmlu-like"],
                                                                         "dev", 0, 0))
    with pytest.raises(LLMError, match="belongs to sim preset 'mmlu-like'"):
        ask(sim, "qwen2.5-3b", mmlu_msgs)
    altered = [dict(m) for m in msgs]
    altered[-1]["content"] = altered[-1]["content"].replace("What", "Which")
    with pytest.raises(LLMError, match="altered"):
        ask(SimulatedPool("math-like"), "qwen2.5-3b", altered)


def test_a_fresh_pool_rebuilds_questions_from_their_header(task):
    # No task() call on this pool: the prompt alone identifies the question.
    fresh = SimulatedPool("math-like", seed=3)
    msgs = task.prompt(task.questions[9])
    assert ask(fresh, "llama3.2-3b", msgs, seed=1) == ask(SimulatedPool("math-like", seed=3),
                                                          "llama3.2-3b", msgs, seed=1)


def test_closed_pool_refuses_requests(task):
    pool = SimulatedPool("math-like")
    asyncio.run(pool.aclose())
    with pytest.raises(LLMError, match="closed"):
        ask(pool, "qwen2.5-3b", task.prompt(task.questions[0]))


def test_usage_and_latency_follow_the_speed_profile_without_sleeping(sim, task):
    spec = sim.pool["qwen2.5-7b"]
    start = time.perf_counter()
    replies = [c for cs in ask_many(sim, spec.name, [task.prompt(q) for q in task.questions[:100]],
                                    n=4, seed=1, max_tokens=4096) for c in cs]
    assert time.perf_counter() - start < 5.0  # no simulated waiting
    tokens = np.array([c.completion_tokens for c in replies])
    assert abs(tokens.mean() / spec.out_tokens - 1) < 0.05 and tokens.std() > 30
    for c in replies[:40]:
        chars = sum(len(m["content"]) for m in task.prompt(task.questions[0]))
        assert abs(c.prompt_tokens - chars / 4) < 40
        assert abs(len(c.text) / 4 - c.completion_tokens) < 15
        ideal = (spec.overhead_s + c.prompt_tokens / spec.prefill_tps
                 + c.completion_tokens / spec.decode_tps)
        assert 0.75 < c.latency_s / ideal < 1.3
        assert c.model == spec.name and not c.cached


def test_max_tokens_clips_usage_but_keeps_the_answer_and_stop_cuts_text(sim, task):
    msgs = task.prompt(task.questions[1])
    full = ask(sim, "qwen2.5-3b", msgs, seed=2, max_tokens=4096)[0]
    short = ask(sim, "qwen2.5-3b", msgs, seed=2, max_tokens=50)[0]
    assert short.completion_tokens == 50 and short.finish_reason == "length"
    assert extract_final_answer(short.text) == extract_final_answer(full.text)
    cut = ask(sim, "qwen2.5-3b", msgs, seed=2, max_tokens=4096, stop=["Step 2:"])[0]
    assert "Step 2:" not in cut.text and full.text.startswith(cut.text)


def test_replies_sometimes_end_without_an_answer(sim, task):
    # llama3.2-1b fails to finish 4% of the time in math-like
    replies = [c for cs in ask_many(sim, "llama3.2-1b",
                                    [task.prompt(q) for q in task.questions[:100]], n=4, seed=9)
               for c in cs]
    missing = [c for c in replies if extract_final_answer(c.text) is None]
    assert 4 <= len(missing) <= 35
    assert all(c.finish_reason == "length" for c in missing)


# ------------------------------------------------------------------ roles, through text
def _share(sim, task, model, inputs_for, role, n=4):
    """Fraction of replies by ``model`` in ``role`` whose answer is right, over the questions,
    where ``inputs_for(q)`` gives the input answers shown to it."""
    questions = task.questions[:120]
    prompts = [node_messages(task.prompt(q), role,
                             [f"Working. The answer is {a}." for a in inputs_for(q)])
               for q in questions]
    replies = ask_many(sim, model, prompts, n=n, seed=17)
    hits = [extract_final_answer(c.text) == q.answer for q, cs in zip(questions, replies)
            for c in cs]
    return float(np.mean(hits))


def test_refiners_keep_right_answers_and_fix_wrong_ones_as_designed(sim, task):
    preset = sim.preset
    def right(q):
        return [q.answer]

    def wrong(q):
        return [q.meta["distractors"][0]]

    for name in ("qwen2.5-7b", "llama3.2-1b"):
        m = next(m for m in preset.models if m.name == name)
        diff = np.array([q.meta["difficulty"] for q in task.questions[:120]])
        z = preset.slope * (m.skill + m.refine - diff)
        keep = np.mean(sigmoid(z + preset.keep_offset)) * (1 - m.fail)
        fix = np.mean(sigmoid(z - preset.fix_offset)) * (1 - m.fail)
        # 480 draws each: a binomial standard error of at most 0.023
        assert abs(_share(sim, task, name, right, "assistant") - keep) < 0.07
        assert abs(_share(sim, task, name, wrong, "assistant") - fix) < 0.07
    # a weak refiner breaks right answers a strong one keeps
    assert (_share(sim, task, "llama3.2-1b", right, "assistant")
            < _share(sim, task, "qwen2.5-7b", right, "assistant") - 0.15)


def test_fusers_pick_a_minority_right_answer_more_often_when_stronger(sim, task):
    # one right candidate against two copies of the same distractor: the vote is wrong
    def minority(q):
        return [q.meta["distractors"][0], q.answer, q.meta["distractors"][0]]

    strong = _share(sim, task, "qwen2.5-7b", minority, "fuser")
    weak = _share(sim, task, "llama3.2-1b", minority, "fuser")
    assert strong > weak + 0.2 and strong > 0.4
    # ... and a strong fuser keeps a unanimous right answer nearly always
    def unanimous(q):
        return [q.answer] * 3

    assert _share(sim, task, "qwen2.5-7b", unanimous, "fuser") > 0.85


def test_a_good_fuser_beats_the_vote_and_a_weak_one_loses_to_it(sim, task):
    names = sim.pool.names
    three = [names.index("qwen2.5-3b")] * 3
    vote, _ = sim.expected_accuracy(CollaborationGraph.layered([three], names), n_samples=500)
    good, _ = sim.expected_accuracy(
        CollaborationGraph.layered([three, [names.index("qwen2.5-7b")]], names), n_samples=500)
    weak, _ = sim.expected_accuracy(
        CollaborationGraph.layered([three, [names.index("llama3.2-1b")]], names), n_samples=500)
    assert good > vote + 0.05 and weak < vote - 0.1


# ------------------------------------------------------------------ executor, end to end
def test_executor_runs_a_three_node_graph_through_the_text_path(sim, task):
    names = sim.pool.names
    graph = CollaborationGraph.layered(
        [[names.index("qwen2.5-1.5b"), names.index("llama3.2-3b")], [names.index("qwen2.5-7b")]],
        names)
    executor = GraphExecutor(sim, sim.pool, task, seed=0)
    q = task.questions[4]
    run = asyncio.run(executor.run(graph, q))
    again = asyncio.run(executor.run(graph, q))
    assert not run.failed and run.nodes == again.nodes
    first, second, fuser = run.nodes
    assert fuser.role == "fuser" and fuser.text.startswith(("I compared", "Looking at"))
    assert fuser.prompt_tokens > first.prompt_tokens + first.completion_tokens
    assert fuser.answer == extract_final_answer(fuser.text) and run.answer == fuser.answer
    assert run.latency_s == pytest.approx(max(first.latency_s, second.latency_s)
                                          + fuser.latency_s)
    flops, latency = sim.cost_model().graph_cost(graph)
    assert run.flops == pytest.approx(flops, rel=0.35)
    assert run.calls_made == 3


def test_parallel_copies_of_a_call_differ_by_occurrence(sim, task):
    names = sim.pool.names
    graph = CollaborationGraph.layered([[names.index("qwen2.5-3b")] * 3], names)
    run = asyncio.run(GraphExecutor(sim, sim.pool, task, seed=0).run(graph, task.questions[5]))
    assert len({n.text for n in run.nodes}) == 3


def test_executor_records_a_failed_node_for_a_foreign_question(sim):
    names = sim.pool.names
    foreign = SimulatedPool("code-like").task(2)
    run = asyncio.run(GraphExecutor(sim, sim.pool, foreign).run(
        CollaborationGraph.layered([[0]], names), foreign.questions[0]))
    assert run.failed and "code-like" in run.nodes[0].error


# ------------------------------------------------------------------ ground truth
def test_vote_codes_equals_the_kernel_vote():
    rng = np.random.default_rng(0)
    for width in (1, 2, 3, 5, 8):
        codes = rng.integers(-1, 4, size=(400, width)).astype(np.int16)
        codes[rng.random(codes.shape) < 0.1] = 20 + rng.integers(0, 3)
        winner, _ = kernels.vote(codes.astype(np.int64), None)
        ours = vote_codes([codes[:, j] for j in range(width)])
        assert np.array_equal(ours, winner)


def test_single_call_accuracy_is_exact(sim, task):
    m = sim.preset.models[2]
    graph = CollaborationGraph.layered([[2]], sim.pool.names)
    mean, stderr = sim.expected_accuracy(graph, task.questions)
    diff = np.array([q.meta["difficulty"] for q in task.questions])
    exact = np.mean(sigmoid(sim.preset.slope * (m.skill - diff))) * (1 - m.fail)
    assert mean == pytest.approx(exact, abs=1e-6) and stderr < 1e-6


def test_expected_accuracy_is_seeded_and_the_batch_agrees(sim, task):
    names = sim.pool.names
    graphs = [CollaborationGraph.layered([[0, 1, 3]], names, template=(2, 3)),
              CollaborationGraph.layered([[0, 1], [2]], names, template=(2, 3)),
              CollaborationGraph.chain([1, 0], names, template=(2, 3))]
    qs = task.questions[:50]
    single = [sim.expected_accuracy(g, qs, n_samples=300, seed=4) for g in graphs]
    assert single[0] == sim.expected_accuracy(graphs[0], qs, n_samples=300, seed=4)
    assert single[0] != sim.expected_accuracy(graphs[0], qs, n_samples=300, seed=5)
    means, errs = sim.expected_accuracy_batch(GraphBatch.from_graphs(graphs + graphs[:1]), qs,
                                              n_samples=300, seed=4)
    assert means.tolist() == [m for m, _ in single] + [single[0][0]]
    assert errs[0] > 0


def test_expected_accuracy_rejects_foreign_questions_and_models(sim):
    other = SimulatedPool("code-like")
    graph = CollaborationGraph.layered([[0]], sim.pool.names)
    with pytest.raises(ValueError, match="not a question of sim preset"):
        sim.expected_accuracy(graph, other.task(3).questions)
    tiny = SimulatedPool("tiny")
    with pytest.raises(ValueError, match="outside the simulated pool"):
        tiny.expected_accuracy(CollaborationGraph.layered([[5]], sim.pool.names))


def _text_accuracy(sim, task, graph, seeds):
    async def run():
        accs = []
        for seed in seeds:
            evaluator = Evaluator(GraphExecutor(sim, sim.pool, task, seed=seed), concurrency=64)
            accs.append((await evaluator.evaluate(graph)).accuracy)
        return np.array(accs)
    return asyncio.run(run())


# Graphs whose accuracy hinges on the semantics both paths must share: the vote's tie-break
# by sink order (the weak model's answer wins every disagreement: 0.30, reversed 0.68) and
# fusing versus refining (fused 0.62, refined 0.54).
@pytest.mark.parametrize("layers", [
    [["llama3.2-1b", "qwen2.5-7b"]],
    [["llama3.2-1b", "llama3.2-1b", "qwen2.5-3b"], ["qwen2.5-3b"]],
])
def test_text_path_agrees_with_expected_accuracy(sim, layers):
    names = sim.pool.names
    graph = CollaborationGraph.layered([[names.index(m) for m in layer] for layer in layers],
                                       names)
    questions = sim.task(100, split="test")
    accs = _text_accuracy(sim, questions, graph, seeds=range(12))
    mean, stderr = sim.expected_accuracy(graph, questions.questions)
    # 1200 runs: the text mean's standard error is about 0.014
    text_se = math.sqrt(mean * (1 - mean) / (accs.size * len(questions.questions)))
    assert abs(accs.mean() - mean) < 3.5 * math.hypot(text_se, stderr)


def test_budget_specs_in_presets_are_budgets():
    for preset in PRESETS.values():
        for budget in preset.budgets.values():
            assert isinstance(budget, Budget)


def test_preset_validation_names_the_problem():
    with pytest.raises(ConfigError, match="noise"):
        dataclasses.replace(PRESETS["math-like"], noise=1.0)
    with pytest.raises(ConfigError, match="letter"):
        dataclasses.replace(PRESETS["mmlu-like"], noise=0.2)


def test_a_response_bank_replays_the_simulated_pool_exactly(sim, tmp_path):
    names = sim.pool.names
    graph = CollaborationGraph.layered([[0, 3], [names.index("qwen2.5-7b")]], names)
    task = sim.task(30, split="test")
    direct = Evaluator(GraphExecutor(sim, sim.pool, task, seed=2)).evaluate_sync(graph)
    bank = ResponseBank(tmp_path / "bank.sqlite")
    try:
        runs = []
        for _ in range(2):
            client = BankedClient(sim, bank)
            runs.append(Evaluator(GraphExecutor(client, sim.pool, task, seed=2))
                        .evaluate_sync(graph))
    finally:
        bank.close()
    assert runs[0].answers == runs[1].answers == direct.answers
    assert runs[0].calls_made == 90 and runs[1].calls_made == 0 and runs[1].calls_served == 90
    assert runs[1].mean_latency_s == pytest.approx(direct.mean_latency_s)
