"""Ground truth of the simulator: the expected accuracy of a graph under the latent model, by
Monte-Carlo over answer codes (no text), with the semantics of the text path."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..graph import FUSER, MAX_WIDTH, CollaborationGraph, GraphBatch
from ..tasks.base import Question
from .latent import (ANSWER, CORRECT, FUSE, NEW_NOISE, NOISE_BASE, REFINE, Behaviour, Rows,
                     vote_codes)
from .presets import SimPreset
from .task import make_task

__all__ = ["GroundTruth"]


class _Memo:
    """Node outputs of the Monte-Carlo by node key, dropped all at once past a memory cap."""

    LIMIT_BYTES = 128 * 2**20

    def __init__(self) -> None:
        self._items: dict[tuple, np.ndarray] = {}
        self._bytes = 0

    def get(self, key: tuple) -> np.ndarray | None:
        return self._items.get(key)

    def put(self, key: tuple, value: np.ndarray) -> None:
        if self._bytes + value.nbytes > self.LIMIT_BYTES:
            self._items.clear()
            self._bytes = 0
        self._items[key] = value
        self._bytes += value.nbytes


class GroundTruth:
    """The expected accuracy of graphs on the questions of one preset (models named by the
    preset's pool, in any order)."""

    def __init__(self, preset: SimPreset) -> None:
        self.preset = preset
        self._behaviour = Behaviour(preset)
        self._test_questions: list[Question] | None = None

    def expected_accuracy(self, graph: CollaborationGraph,
                          questions: Sequence[Question] | None = None, *,
                          n_samples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """``(mean, stderr)`` of the accuracy of ``graph`` on ``questions`` (default: the test
        split), by Monte-Carlo over the latent model with ``n_samples`` runs per question.

        The semantics are those of the text path (GraphExecutor over a SimulatedPool): the same node
        behaviour, sinks voted by `pytts.kernels.vote` in `graph.vote_order()` (ties to the first
        sink answer in that order). Draws of node (layer, slot) come from ``seed`` and the node's
        position, so graphs that share nodes share their draws (common random numbers).
        ``stderr`` is the Monte-Carlo error of the mean over these questions.
        """
        questions = self._check_questions(questions)
        return self._monte_carlo(graph, Rows.of(questions, self.preset.noise), n_samples, seed,
                                 _Memo())

    def expected_accuracy_batch(self, batch: GraphBatch,
                                questions: Sequence[Question] | None = None, *,
                                n_samples: int = 2000,
                                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`expected_accuracy` of every graph of ``batch`` (model indices into this pool).
        Returns ``(means[B], stderrs[B])``, equal to calling `expected_accuracy` on each graph.

        Faster than that: repeated graphs are computed once, and a node whose position, model,
        role and inputs match one computed before reuses its draws. Graphs are deduplicated by
        their arrays, not by `canonical_key`: the vote breaks ties by sink order, so permuting
        slots can change a graph's accuracy slightly.
        """
        questions = self._check_questions(questions)
        rows = Rows.of(questions, self.preset.noise)
        memo = _Memo()
        means = np.empty(batch.model.shape[0])
        errs = np.empty_like(means)
        done: dict[bytes, tuple[float, float]] = {}
        for b in range(batch.model.shape[0]):
            key = batch.model[b].tobytes() + batch.role[b].tobytes() + batch.edges[b].tobytes()
            if key not in done:
                graph = CollaborationGraph(batch.model[b], batch.role[b], batch.edges[b],
                                           self.preset.model_names)
                done[key] = self._monte_carlo(graph, rows, n_samples, seed, memo)
            means[b], errs[b] = done[key]
        return means, errs

    def _monte_carlo(self, graph: CollaborationGraph, rows: Rows, n_samples: int, seed: int,
                     memo: "_Memo") -> tuple[float, float]:
        if n_samples < 2:
            raise ValueError(f"n_samples must be at least 2, got {n_samples}")
        models = self._graph_models(graph)
        n_questions = rows.difficulty.shape[0]
        shape = (n_questions, n_samples)
        sinks = graph.vote_order()
        codes: dict[tuple[int, int], np.ndarray] = {}
        keys: dict[tuple[int, int], tuple] = {}
        value: np.ndarray | None = None
        for node in graph.nodes():
            here = (node.layer, node.slot)
            preds = [(node.layer - 1, p) for p in graph.predecessors(*here)]
            if not preds:
                kind = ANSWER
            else:
                kind = FUSE if graph.role[here] == FUSER else REFINE
            inputs = [codes[p] for p in preds]
            model = models[node.model]
            if len(sinks) == 1 and here == sinks[0]:
                # A lone sink is the answer: average its probability of being right instead of
                # drawing it (same mean, less Monte-Carlo noise; exact for one-node graphs).
                value = np.broadcast_to(self._behaviour.p_correct(model, kind, rows, inputs),
                                        shape)
                break
            # Draws depend only on (seed, position), so the node's output is a function of
            # this key: equal keys in other graphs give equal arrays.
            keys[here] = key = (here, model, kind, tuple(keys[p] for p in preds))
            out = memo.get(key)
            if out is None:
                rng = np.random.default_rng([seed, node.layer, node.slot])
                out = self._behaviour.step(model, kind, rows, inputs,
                                           lambda: rng.random(shape, dtype=np.float32))
                # a fresh wrong answer is distinct from every other node's
                out[out == NEW_NOISE] = NOISE_BASE + node.layer * MAX_WIDTH + node.slot
                memo.put(key, out)
            codes[here] = out
        if value is None:
            value = vote_codes([codes[s] for s in sinks]) == CORRECT
        per_question = value.mean(axis=1)
        variance = value.var(axis=1, ddof=1) / n_samples
        return float(per_question.mean()), float(math.sqrt(variance.sum()) / n_questions)

    def _check_questions(self, questions: Sequence[Question] | None) -> list[Question]:
        if questions is None:
            if self._test_questions is None:
                self._test_questions = list(make_task(self.preset, split="test").questions)
            return self._test_questions
        questions = list(questions)
        if not questions:
            raise ValueError("questions must not be empty")
        for q in questions:
            if q.meta.get("preset") != self.preset.name or "weights" not in q.meta:
                raise ValueError(f"question {q.qid!r} is not a question of sim preset "
                                 f"{self.preset.name!r} (use pool.task().questions)")
        return questions

    def _graph_models(self, graph: CollaborationGraph) -> list[int]:
        """Pool index of each of the graph's model indices (graphs may name models in any
        order, as long as each is in this pool)."""
        names = self.preset.model_names
        unknown = [n for n in graph.model_names if n not in names]
        if unknown:
            raise ValueError(f"graph uses model(s) {unknown} outside the simulated pool "
                             f"({', '.join(names)})")
        return [names.index(n) for n in graph.model_names]
