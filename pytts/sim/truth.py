"""Ground truth of the simulator: the expected accuracy of a graph under the latent model, by
Monte-Carlo over answer codes (no text) in the latent-code kernel, with the semantics of the
text path."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..graph import CollaborationGraph, GraphBatch
from ..tasks.base import Question
from .kernel import SimGraphs, score_sums
from .latent import Thresholds
from .presets import SimPreset
from .task import make_task, question_keys

__all__ = ["GroundTruth"]

_CACHE_SIZE = 8


class GroundTruth:
    """The expected accuracy of graphs on the questions of one preset (models named by the
    preset's pool, in any order)."""

    def __init__(self, preset: SimPreset) -> None:
        self.preset = preset
        self._test_questions: list[Question] | None = None
        # Thresholds and question keys of recent question lists (most calls reuse one list).
        self._rows: dict[tuple[str, ...], tuple[Thresholds, np.ndarray]] = {}

    def expected_accuracy(self, graph: CollaborationGraph,
                          questions: Sequence[Question] | None = None, *,
                          n_samples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """``(mean, stderr)`` of the accuracy of ``graph`` on ``questions`` (default: the test
        split), by Monte-Carlo over the latent model with ``n_samples`` runs per question.

        The semantics are those of the text path (GraphExecutor over a SimulatedPool): the same
        node behaviour, sinks voted by `pytts.kernels.vote` in `graph.vote_order()` (ties to the
        first sink answer in that order). Sample s of node (layer, slot) draws from ``seed``,
        the question, s and the node's key (its position, model, role and inputs' keys), so
        graphs that share nodes share their draws (common random numbers). A lone sink scores
        its probability of being right given its inputs rather than a draw (same mean, less
        noise; exact for one-node graphs). ``stderr`` is the Monte-Carlo error of the mean over
        these questions.
        """
        means, errs = self._estimate([graph], questions, n_samples, seed)
        return float(means[0]), float(errs[0])

    def expected_accuracy_batch(self, batch: GraphBatch,
                                questions: Sequence[Question] | None = None, *,
                                n_samples: int = 2000,
                                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`expected_accuracy` of every graph of ``batch`` (model indices into this pool).
        Returns ``(means[B], stderrs[B])``, equal to calling `expected_accuracy` on each graph.

        Repeated graphs are computed once. Graphs are deduplicated by their arrays, not by
        `canonical_key`: slots of a permuted graph sit elsewhere, so they draw other numbers.
        """
        unique: dict[bytes, int] = {}
        graphs: list[CollaborationGraph] = []
        index = np.empty(len(batch), np.int64)
        for b in range(len(batch)):
            key = batch.model[b].tobytes() + batch.role[b].tobytes() + batch.edges[b].tobytes()
            if key not in unique:
                unique[key] = len(graphs)
                graphs.append(batch.graph(b, self.preset.model_names))
            index[b] = unique[key]
        if not graphs:
            return np.empty(0), np.empty(0)
        means, errs = self._estimate(graphs, questions, n_samples, seed)
        return means[index], errs[index]

    def _estimate(self, graphs: Sequence[CollaborationGraph],
                  questions: Sequence[Question] | None, n_samples: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
        questions = self._check_questions(questions)
        sim_graphs = SimGraphs.of(graphs, self.preset.model_names)
        th, keys = self._rows_of(questions, sim_graphs.max_fuser_inputs)
        total, total_sq = score_sums(sim_graphs, th, keys, np.arange(n_samples), seed)
        per_question = total / n_samples
        variance = np.maximum(total_sq - total * per_question, 0.0) / (n_samples - 1)
        n_questions = len(questions)
        return (per_question.mean(axis=1),
                np.sqrt(variance.sum(axis=1) / n_samples) / n_questions)

    def _rows_of(self, questions: list[Question],
                 max_inputs: int) -> tuple[Thresholds, np.ndarray]:
        ids = tuple(q.qid for q in questions)
        cached = self._rows.get(ids)
        if cached is None or cached[0].max_inputs < max_inputs:
            if len(self._rows) >= _CACHE_SIZE:
                self._rows.clear()
            # Cover the template's widest fuser at once: later graphs rarely need more.
            cached = (Thresholds.of(self.preset, questions, max(max_inputs, 8)),
                      question_keys(questions))
            self._rows[ids] = cached
        return cached

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
