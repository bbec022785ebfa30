"""A fast evaluator for simulated runs: scores a graph on simulated questions through the
latent-code kernel, as one real evaluation would (one run per question), without text.

It has the `evaluate(graph) -> EvalResult` protocol of `pytts.evaluate.Evaluator`, so searches
and benchmarks can use it in place of the text path. Runs are keyed like the kernel's (seed,
question, node key, sample), so sample s of a node is the same draw in every graph that shares
the node (common random numbers), and any subset of questions or samples can be scored
(racing: a few questions first, more later) with the draws a full evaluation would make.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from ..cost import CostModel
from ..defaults import DEFAULT_MAX_TOKENS
from ..evaluate import EvalResult
from ..graph import MAX_WIDTH, CollaborationGraph, Node
from ..tasks.base import Question
from .client import SimulatedPool, fresh_answer
from .draws import run_bits
from .kernel import SimGraphs, run_codes
from .latent import CORRECT, MISSING, NOISE_BASE, Thresholds
from .task import question_keys
from .usage import latency_factor, reply_tokens

__all__ = ["LatentEvaluator"]


class LatentEvaluator:
    """Scores graphs of ``sim``'s pool on ``questions`` (default: its dev task) by the kernel.

    Each question runs once per sample number in ``samples`` (default: sample 0 only, like one
    real evaluation); ``seed`` keys the draws as a `GraphExecutor` seed keys a text run. The
    result reads as the text path's: per-run correctness and voted answers, mean FLOPs and
    latency from the cost model with the text path's reply-length and latency noise (replies cut
    at ``max_tokens``), and one call per node and run. With ``bank`` (the default, as every
    product run has its response bank) a call this evaluator made before (same node key,
    question and sample: the text path's identity of a call) is counted as served, not made:
    graphs that share nodes with earlier ones, such as a wider vote of the same model or a
    graph grown from the incumbent, pay only for their new calls.
    """

    def __init__(self, sim: SimulatedPool, questions: Sequence[Question] | None = None, *,
                 seed: int = 0, samples: Sequence[int] = (0,),
                 max_tokens: int = DEFAULT_MAX_TOKENS, bank: bool = True) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.sim = sim
        self.questions = list(questions if questions is not None else sim.task().questions)
        if not self.questions:
            raise ValueError("the evaluator has no questions")
        self.seed = int(seed)
        self.samples = tuple(int(s) for s in samples)
        self.max_tokens = int(max_tokens)
        self.banked: set[int] | None = set() if bank else None
        """Identities (the 64 draw bits) of the calls made so far, when banking."""
        self.cost: CostModel = sim.cost_model()
        self._keys = question_keys(self.questions)
        # fusers of the preset's template are covered from the start
        self._thresholds = Thresholds.of(sim.preset, self.questions, sim.template[1])
        costs = self.cost.table.model_costs  # columns: pytts.constants.COST_COLUMNS
        self._per_token, self._out, self._prefill, self._decode_tps, self._overhead = costs.T

    async def evaluate(self, graph: CollaborationGraph, questions: Sequence[int] | None = None,
                       *, sample: int = 0) -> EvalResult:
        """Score ``graph`` on every question (or those at indices ``questions``, recorded as
        the result's ``question_ids``) with the evaluator's samples; ``sample`` > 0 runs them
        afresh, as the ``sample``-th repetition of the evaluator's sample numbers (recorded as
        the result's ``samples``)."""
        if sample < 0:
            raise ValueError(f"sample must be >= 0, got {sample}")
        await asyncio.sleep(0)  # a coroutine like the text path's, though it never waits
        # repetition k of samples (s0, s1, ...) is (s + k * span) for each s: never a number
        # an earlier repetition used
        span = max(self.samples) + 1
        numbers = [s + sample * span for s in self.samples]
        result = self.evaluate_on(graph, questions, numbers)
        if questions is not None or sample:
            ids = range(len(self.questions)) if questions is None else questions
            result.question_ids = [int(q) for q in ids for _ in numbers]
        if sample:
            result.samples = [sample] * result.n_questions
        return result

    def evaluate_sync(self, graph: CollaborationGraph) -> EvalResult:
        """`evaluate` from synchronous code."""
        return self.evaluate_on(graph)

    def evaluate_on(self, graph: CollaborationGraph, questions: Sequence[int] | None = None,
                    samples: Sequence[int] | None = None) -> EvalResult:
        """Score ``graph`` on the questions at indices ``questions`` (default: all) with sample
        numbers ``samples`` (default: the evaluator's). Runs are listed question by question,
        each with its samples in order; a run draws the same here as in any other subset."""
        start = time.perf_counter()
        index = (np.arange(len(self.questions)) if questions is None
                 else np.asarray(questions, np.int64))
        if index.ndim != 1 or not index.size or index.min() < 0 \
                or index.max() >= len(self.questions):
            raise ValueError(f"questions must be indices in [0, {len(self.questions)}), "
                             f"got {questions!r}")
        sample_numbers = np.asarray(self.samples if samples is None else samples, np.int64)
        if sample_numbers.ndim != 1 or not sample_numbers.size or sample_numbers.min() < 0:
            raise ValueError(f"samples must be a non-empty sequence of integers >= 0, "
                             f"got {samples!r}")
        graphs = SimGraphs.of([graph], self.sim.pool.names)
        th = self._thresholds_for(graphs.max_fuser_inputs).take(index)
        keys = self._keys[index]
        codes, winner = run_codes(graphs, th, keys, sample_numbers, self.seed)
        w = graph.template[1]
        bits = run_bits(self.seed, keys, graphs.keys[0].reshape(-1), sample_numbers)
        nodes = graph.nodes()
        node_bits = bits[:, [n.layer * w + n.slot for n in nodes], :]   # [Q, nodes, S]
        usage = self._usage(graph, nodes, graphs.batch.model[0], node_bits)
        made, served = self._count_calls(node_bits)
        winner = winner[0].reshape(-1)
        asked = [self.questions[i] for i in index for _ in sample_numbers]
        answers = [self._decode(q, int(c), bits[run // len(sample_numbers), :,
                                                   run % len(sample_numbers)], w)
                   for run, (q, c) in enumerate(zip(asked, winner))]
        return EvalResult.from_scores(
            (winner == CORRECT).tolist(), answers=answers, wall_s=time.perf_counter() - start,
            calls_made=made, calls_served=served, **usage)

    def _count_calls(self, node_bits: np.ndarray) -> tuple[int, int]:
        """(made, served) calls of a run set whose nodes drew ``node_bits``: a call's draw bits
        hash (seed, question, node key, sample), so they identify it as the bank's key
        identifies a text call."""
        calls = node_bits.ravel().tolist()
        if self.banked is None:
            return len(calls), 0
        before = len(self.banked)
        self.banked.update(calls)
        made = len(self.banked) - before
        return made, len(calls) - made

    def _thresholds_for(self, max_inputs: int) -> Thresholds:
        if self._thresholds.max_inputs < max_inputs:
            self._thresholds = Thresholds.of(self.sim.preset, self.questions, max_inputs)
        return self._thresholds

    def _usage(self, graph: CollaborationGraph, nodes: list[Node], model: np.ndarray,
               node_bits: np.ndarray) -> dict:
        """Mean FLOPs and latency per run, and total tokens, by the cost model's formulas with
        each call's drawn reply length and latency noise. ``node_bits`` are the draws of
        ``nodes`` (``graph.nodes()``), ``[Q, len(nodes), S]``."""
        w = graph.template[1]
        k = model.reshape(-1)[[n.layer * w + n.slot for n in nodes]]
        out = np.minimum(reply_tokens(self._out[k][None, :, None], node_bits), self.max_tokens)
        noise = latency_factor(node_bits)
        position = {(n.layer, n.slot): j for j, n in enumerate(nodes)}
        prompt = np.empty(out.shape)
        finish = np.empty(out.shape)
        for j, n in enumerate(nodes):
            preds = [position[(n.layer - 1, p)] for p in graph.predecessors(n.layer, n.slot)]
            prompt[:, j] = self.cost.base_prompt_tokens + out[:, preds].sum(axis=1)
            latency = (self._overhead[k[j]] + prompt[:, j] / self._prefill[k[j]]
                       + out[:, j] / self._decode_tps[k[j]]) * noise[:, j]
            finish[:, j] = latency + (finish[:, preds].max(axis=1) if preds else 0.0)
        flops = self._per_token[k][None, :, None] * (prompt + out)
        runs = node_bits.shape[0] * node_bits.shape[2]
        return {"mean_flops": float(flops.sum()) / runs,
                "mean_latency_s": float(finish.max(axis=1).sum()) / runs,
                "prompt_tokens": int(round(float(prompt.sum()))),
                "completion_tokens": int(out.sum())}

    @staticmethod
    def _decode(question: Question, code: int, bits: np.ndarray, width: int) -> str | None:
        """The answer string of a run's voted code, given the run's draws per node ``bits``
        (flat ``l * width + i``): a free-form answer is the one the node that wrote it drew."""
        if code == MISSING:
            return None
        if code == CORRECT:
            return question.answer
        if code < NOISE_BASE:
            return question.meta["distractors"][code - 1]
        layer, slot = divmod(code - NOISE_BASE, MAX_WIDTH)
        return fresh_answer(question, bits[layer * width + slot:layer * width + slot + 1])
