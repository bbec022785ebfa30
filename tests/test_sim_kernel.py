"""The latent-code kernel agrees with the text path (GraphExecutor over a SimulatedPool): the same
codes under equal keys, the same per-question accuracy within Monte-Carlo error on graphs of
every shape and every preset; and the fast evaluator reads like a text-path evaluation."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from scipy.stats import norm

from pytts.evaluate import EvalResult, Evaluator
from pytts.execute import GraphExecutor
from pytts.graph import ASSISTANT, FUSER, MAX_WIDTH, CollaborationGraph
from pytts.llm.bank import BankedClient, ResponseBank
from pytts.search.random_search import RandomSearch
from pytts.search.run import run_search_sync
from pytts.sim import PRESETS, SimulatedPool, kernel
from pytts.sim.client import fresh_answer, request_keys
from pytts.sim.draws import run_bits
from pytts.sim.evaluator import LatentEvaluator
from pytts.sim.latent import CORRECT, MISSING, NOISE_BASE, Thresholds
from pytts.sim.task import question_keys

SHAPES = ("vote", "refine-chain", "fusers", "mixed")
N_GRAPHS = 20          # per preset and shape
N_QUESTIONS = 8
TEXT_SEEDS = range(3)  # text-path evaluations per graph
KERNEL_SAMPLES = 4000


def random_graph(shape: str, n_models: int, names, rng: np.random.Generator
                 ) -> CollaborationGraph:
    """A random graph of one of the four shapes, on a 3 x 4 template."""
    pick = lambda n: [int(m) for m in rng.integers(n_models, size=n)]  # noqa: E731
    if shape == "vote":
        return CollaborationGraph.layered([pick(int(rng.integers(2, 5)))], names, template=(3, 4))
    if shape == "refine-chain":
        return CollaborationGraph.chain(pick(int(rng.integers(2, 4))), names, template=(3, 4))
    if shape == "fusers":
        layers = [pick(int(rng.integers(2, 5))), pick(int(rng.integers(1, 3)))]
        return CollaborationGraph.layered(layers, names, template=(3, 4))
    depth = 3
    widths = [int(rng.integers(1, 5)) for _ in range(depth)]
    model = np.full((3, 4), -1, np.int16)
    role = np.zeros((3, 4), np.int8)
    edges = np.zeros((2, 4, 4), np.uint8)
    for layer, w in enumerate(widths):
        model[layer, :w] = pick(w)
        if layer:
            role[layer, :w] = rng.choice([ASSISTANT, FUSER], size=w)
            for slot in range(w):
                preds = rng.random(widths[layer - 1]) < 0.5
                preds[rng.integers(widths[layer - 1])] = True
                edges[layer - 1, np.flatnonzero(preds), slot] = 1
    return CollaborationGraph(model, role, edges, names)


class RecordingClient:
    """The simulated pool, recording which request wrote each completion text."""

    def __init__(self, sim: SimulatedPool) -> None:
        self.sim = sim
        self.requests: dict[str, tuple] = {}

    async def complete(self, model, messages, **kw):
        out = await self.sim.complete(model, messages, **kw)
        for c in out:
            self.requests[c.text] = (model, messages, kw)
        return out


def text_code(question, answer: str | None) -> int | str:
    """The latent code of a text-path answer (a free-form answer stays a string)."""
    if answer is None:
        return MISSING
    if answer == question.answer:
        return CORRECT
    if answer in question.meta["distractors"]:
        return 1 + question.meta["distractors"].index(answer)
    return answer


def check_codes_under_the_text_keys(sim, graph, question, run, client) -> None:
    """Every node of a text-path run has the code the kernel draws with that run's keys."""
    keys = np.zeros(graph.model.shape, np.uint64)
    for node in run.nodes:
        model, messages, kw = client.requests[node.text]
        keys[node.layer, node.slot] = request_keys(model, messages, n=kw["n"],
                                                   temperature=kw["temperature"],
                                                   seed=kw["seed"])[0]
    sim_graphs = kernel.SimGraphs.of([graph], sim.pool.names, keys=keys[None])
    th = Thresholds.of(sim.preset, [question], max(1, sim_graphs.max_fuser_inputs))
    qkeys = question_keys([question])
    codes, winner = kernel.run_codes(sim_graphs, th, qkeys, [0], sim.seed)
    w = graph.template[1]
    bits = run_bits(sim.seed, qkeys, keys.reshape(-1), [0])[0, :, 0]
    for node in run.nodes:
        code = int(codes[0, 0, 0, node.layer, node.slot])
        expected = text_code(question, node.answer)
        if code >= NOISE_BASE:  # a free-form answer: the one its writer drew
            layer, slot = divmod(code - NOISE_BASE, MAX_WIDTH)
            code = fresh_answer(question, bits[layer * w + slot:layer * w + slot + 1])
        assert code == expected, (graph.describe(), node)
    assert (winner[0, 0, 0] == CORRECT) == (run.answer == question.answer)


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_and_text_path_agree_per_question_and_code_for_code(preset, shape):
    """Paired z-test over 20 graphs x 8 questions: the text path's accuracy (3 runs each)
    minus the kernel's (4000 samples each), summed, over its standard error under the kernel's
    probabilities (independent runs: every graph has its own seeds); p > 1e-3. And every
    text-path node has the kernel's code under its keys."""
    sim = SimulatedPool(preset, seed=11)
    task = sim.task(N_QUESTIONS, split="test")
    names = sim.pool.names
    rng = np.random.default_rng([SHAPES.index(shape), sorted(PRESETS).index(preset)])
    graphs = [random_graph(shape, len(names), names, rng) for _ in range(N_GRAPHS)]
    client = RecordingClient(sim)

    # Each graph runs on its own seeds in both paths: graphs that share nodes would otherwise
    # share draws (common random numbers), and the sum over graphs would not be a sum of
    # independent errors.
    async def text_runs(index, graph):
        correct = []
        for seed in TEXT_SEEDS:
            executor = GraphExecutor(client, sim.pool, task, seed=len(TEXT_SEEDS) * index + seed)
            runs = await asyncio.gather(*(executor.run(graph, q) for q in task.questions))
            for q, run in zip(task.questions, runs):
                check_codes_under_the_text_keys(sim, graph, q, run, client)
            correct.append([run.answer == q.answer for q, run in zip(task.questions, runs)])
        return np.mean(correct, axis=0)

    th = Thresholds.of(sim.preset, task.questions, 4)
    qkeys = question_keys(task.questions)
    diff = variance = 0.0
    for index, graph in enumerate(graphs):
        text = asyncio.run(text_runs(index, graph))
        total, total_sq = kernel.score_sums(kernel.SimGraphs.of([graph], names), th, qkeys,
                                            np.arange(KERNEL_SAMPLES), index)
        p = total[0] / KERNEL_SAMPLES
        p_var = np.maximum(total_sq[0] / KERNEL_SAMPLES - p * p, 0) / KERNEL_SAMPLES
        diff += float(np.sum(text - p))
        variance += float(np.sum(np.clip(p * (1 - p), 0, None) / len(TEXT_SEEDS) + p_var))
    z = diff / math.sqrt(variance)
    print(f"{preset}/{shape}: z = {z:.2f}, p = {2 * norm.sf(abs(z)):.3f}")
    assert 2 * norm.sf(abs(z)) > 1e-3, f"z = {z:.2f}"


def test_expected_accuracy_agrees_with_the_text_path_on_a_mixed_graph():
    sim = SimulatedPool("mmlu-like", seed=2)
    names = sim.pool.names
    graph = random_graph("mixed", len(names), names, np.random.default_rng(4))
    task = sim.task(40, split="test")
    accs = [Evaluator(GraphExecutor(sim, sim.pool, task, seed=s)).evaluate_sync(graph).accuracy
            for s in range(8)]
    mean, stderr = sim.expected_accuracy(graph, task.questions)
    text_se = math.sqrt(mean * (1 - mean) / (len(accs) * len(task.questions)))
    assert abs(np.mean(accs) - mean) < 3.5 * math.hypot(text_se, stderr)


# ------------------------------------------------------------------ the fast evaluator
@pytest.fixture(scope="module")
def sim():
    return SimulatedPool("math-like", seed=1)


def test_latent_evaluator_reads_like_a_text_path_evaluation(sim):
    names = sim.pool.names
    graph = CollaborationGraph.layered([[0, 1, 4, 5], [2, 1], [2]], names)
    task = sim.task(50)
    fast = [LatentEvaluator(sim, task.questions, seed=s).evaluate_sync(graph) for s in range(6)]
    text = [Evaluator(GraphExecutor(sim, sim.pool, task, seed=s)).evaluate_sync(graph)
            for s in range(6)]
    for f in fast:
        assert isinstance(f, EvalResult) and f.n_questions == 50 and f.n_failed == 0
        assert f.calls_made == 7 * 50 == text[0].calls_made and f.calls_served == 0
        assert f.ci_low <= f.accuracy <= f.ci_high
        for q, ok, answer in zip(task.questions, f.correct, f.answers):
            assert ok == (answer == q.answer)
    mean = lambda rs, attr: np.mean([getattr(r, attr) for r in rs])  # noqa: E731
    for attr in ("mean_flops", "mean_latency_s", "prompt_tokens", "completion_tokens"):
        assert mean(fast, attr) == pytest.approx(mean(text, attr), rel=0.06), attr
    expected, _ = sim.expected_accuracy(graph, task.questions)
    se = math.sqrt(expected * (1 - expected) / 300)
    assert abs(mean(fast, "accuracy") - expected) < 4 * se
    assert abs(mean(text, "accuracy") - expected) < 4 * se


def test_latent_evaluator_banks_calls_as_the_text_path_bank_does(sim, tmp_path):
    # A wider vote reuses the narrower vote's samples, a graph grown from another pays only for
    # its new nodes, and a repeat is free: the same counts as the text path through a bank.
    names = sim.pool.names
    a, b = names.index("qwen2.5-1.5b"), names.index("qwen2.5-7b")
    sequence = [CollaborationGraph.layered(layers, names) for layers in
                ([[a] * 3], [[a] * 5], [[a] * 3, [b]], [[a] * 3, [b], [b]], [[a] * 5],
                 [[a, a, b]], [[b] * 2, [a]])]
    task = sim.task(20)
    latent = LatentEvaluator(sim, task.questions, seed=4)
    fast = [latent.evaluate_sync(g) for g in sequence]
    bank = ResponseBank(tmp_path / "bank.sqlite")
    try:
        evaluator = Evaluator(GraphExecutor(BankedClient(sim, bank), sim.pool, task, seed=4))
        text = [evaluator.evaluate_sync(g) for g in sequence]
    finally:
        bank.close()
    assert [(f.calls_made, f.calls_served) for f in fast] == \
        [(t.calls_made, t.calls_served) for t in text] == \
        [(60, 0), (40, 60), (20, 60), (20, 80), (0, 100), (20, 40), (40, 20)]
    unbanked = LatentEvaluator(sim, task.questions, seed=4, bank=False)
    assert [unbanked.evaluate_sync(g).calls_made for g in sequence[:2]] == [60, 100]
    # a narrower vote after a wider one: no new call, and the very runs a fresh evaluation makes
    wide, narrow = sequence[1], sequence[0]
    banks: list[ResponseBank] = []

    def text_evaluator() -> Evaluator:
        banks.append(ResponseBank(tmp_path / f"bank{len(banks)}.sqlite"))
        return Evaluator(GraphExecutor(BankedClient(sim, banks[-1]), sim.pool, task, seed=4))

    for make in (lambda: LatentEvaluator(sim, task.questions, seed=4), text_evaluator):
        banked = make()
        banked.evaluate_sync(wide)
        reused = banked.evaluate_sync(narrow)
        fresh = make().evaluate_sync(narrow)
        assert reused.calls_made == 0 and reused.calls_served == 60
        assert reused.correct == fresh.correct and reused.answers == fresh.answers
    for b in banks:
        b.close()


def test_latent_evaluator_subsets_draw_as_the_full_evaluation_does(sim):
    names = sim.pool.names
    graph = CollaborationGraph.layered([[0, 3, 4], [2]], names)
    evaluator = LatentEvaluator(sim, sim.task(30).questions, seed=3)
    full = evaluator.evaluate_on(graph, samples=[0, 1])
    part = evaluator.evaluate_on(graph, questions=[7, 2], samples=[1])
    assert part.correct == [full.correct[2 * 7 + 1], full.correct[2 * 2 + 1]]
    assert part.answers == [full.answers[2 * 7 + 1], full.answers[2 * 2 + 1]]
    assert full.n_questions == 60 and full.correct[::2] == evaluator.evaluate_sync(graph).correct
    assert evaluator.evaluate_on(graph, samples=[5]).correct != full.correct[::2]
    with pytest.raises(ValueError, match="questions must be indices"):
        evaluator.evaluate_on(graph, questions=[30])
    with pytest.raises(ValueError, match="samples must be"):
        evaluator.evaluate_on(graph, samples=[])


def test_a_fresh_sample_draws_again_on_both_paths(sim):
    # a selection's fresh samples: sample 1 of a question is a new, repeatable draw, marked in
    # the result, on the kernel and on the text path alike
    names = sim.pool.names
    graph = CollaborationGraph.layered([[0, 3, 4], [2]], names)
    task = sim.task(60)
    for make in (lambda: LatentEvaluator(sim, task.questions, seed=3),
                 lambda: Evaluator(GraphExecutor(sim, sim.pool, task, seed=3))):
        evaluator = make()
        first = asyncio.run(evaluator.evaluate(graph))
        fresh = asyncio.run(evaluator.evaluate(graph, sample=1))
        assert first.samples is None and fresh.samples == [1] * 60
        assert fresh.question_ids == list(range(60))
        assert fresh.answers != first.answers
        again = asyncio.run(make().evaluate(graph, [4, 7], sample=1))
        assert again.correct == [fresh.correct[4], fresh.correct[7]]
        assert again.answers == [fresh.answers[4], fresh.answers[7]]
        assert again.question_ids == [4, 7] and again.samples == [1, 1]
    with pytest.raises(ValueError, match="sample must be"):
        asyncio.run(LatentEvaluator(sim, task.questions).evaluate(graph, sample=-1))


def test_sample_zero_keeps_the_call_seeds_banks_were_filled_with():
    import hashlib

    from pytts.execute import node_seed
    digest = hashlib.blake2b(b"7|0|key", digest_size=4).digest()
    assert node_seed(7, "key", 0) == node_seed(7, "key", 0, 0) == \
        int.from_bytes(digest, "little") & 0x7FFFFFFF
    assert len({node_seed(7, "key", 0, s) for s in range(4)}) == 4


def test_latent_evaluator_answers_are_those_of_the_runs(sim):
    names = sim.pool.names
    task = sim.task(40)
    graph = CollaborationGraph.layered([[3, 3, 3]], names)  # weak votes: many wrong answers
    result = LatentEvaluator(sim, task.questions).evaluate_sync(graph)
    free_form = [a for q, a in zip(task.questions, result.answers)
                 if a is not None and a != q.answer and a not in q.meta["distractors"]]
    assert free_form and all(a.isdigit() and int(a) >= 1000 for a in free_form)
    assert any(not ok for ok in result.correct) and any(result.correct)


def test_a_search_runs_on_the_latent_evaluator(sim):
    cost = sim.cost_model()
    searcher = RandomSearch(sim.pool, (2, 3), cost, sim.budgets["high"].resolve(cost), seed=0)
    report = run_search_sync(searcher, LatentEvaluator(sim, sim.task(20).questions), 12)
    assert len(report.history) == 12
