"""A simulated pool of LLMs: an `LLMClient` that answers synthetic questions through text, as a
server would, from a seeded latent model of skills, difficulties, refiners and fusers
(`pytts.sim.latent`).

Everything downstream of the client (executor, answer extraction, vote, ResponseBank) runs as it
does against real servers, instantly and reproducibly.
"""

from __future__ import annotations

import asyncio
import math
from typing import Sequence

import numpy as np

from ..cost import Budget, CostModel
from ..errors import LLMError
from ..graph import CollaborationGraph, GraphBatch
from ..llm.base import Completion, Message, sample_seed
from ..prompts import parse_node_messages, strip_role_template
from ..tasks.base import Question
from .latent import (ANSWER, CORRECT, FUSE, KINDS, MISSING, NEW_NOISE, NOISE_BASE, REFINE,
                     Behaviour, Rows)
from .presets import CHARS_PER_TOKEN, SimPreset, get_preset, preset_pool
from .task import (SimTask, extract_final_answer, make_question, make_task, question_address,
                   stable_hash)
from .truth import GroundTruth

__all__ = ["SimulatedPool"]

_TOKEN_SIGMA = 0.25     # lognormal spread of completion lengths
_LATENCY_SIGMA = 0.06   # lognormal spread of latencies (load, scheduling)

_OPENINGS = {
    ANSWER: ("Let me set up the problem.", "First, restate what is asked.",
             "I will work through this step by step."),
    REFINE: ("I checked the previous attempt step by step.",
             "Reviewing the earlier solution line by line."),
    FUSE: ("I compared the {n} candidate solutions.",
           "Looking at the {n} candidates side by side."),
}
_STEPS = ("Step {k}: combining the quantities from the previous step, the intermediate value "
          "is {v}.",
          "Step {k}: substituting this back into the condition given in the statement gives {v}.",
          "Step {k}: the expression simplifies to {v}, which still fits every stated condition.",
          "Step {k}: cross-checking against the statement once more, {v} is consistent with it.")


def _render(kind: int, n_inputs: int, answer: str | None, chars: int,
            rng: np.random.Generator) -> str:
    """A reply of about ``chars`` characters ending "The answer is X." (or cut off, if None)."""
    openings = _OPENINGS[kind]
    parts = [openings[int(rng.integers(len(openings)))].format(n=n_inputs)]
    ending = f"The answer is {answer}." if answer is not None else "So the result must be"
    length = len(parts[0]) + len(ending)
    # Steps are at least 70 characters long; draw their shapes and values in one go.
    n_steps = max(0, (chars - length) // 70 + 1)
    shapes = rng.integers(len(_STEPS), size=n_steps)
    values = rng.integers(2, 999, size=n_steps)
    for k in range(n_steps):
        step = _STEPS[shapes[k]].format(k=k + 1, v=values[k])
        if length + len(step) / 2 > chars:  # closest to ``chars``, over or under
            break
        parts.append(step)
        length += len(step) + 1
    # A reply without an answer ran out of room: it stops mid-sentence.
    parts.append(ending)
    return " ".join(parts)


class SimulatedPool:
    """A pool of simulated models that answers as an `LLMClient` (instantly, reproducibly).

    ``preset`` names a `SimPreset` ("math-like", "mmlu-like", "code-like", "tiny") or is one;
    ``seed`` seeds every draw (with the request's model, messages, seed and sample index), so
    the same request always gets the same reply and common random numbers work across graphs.

    Documented behaviour: ``temperature=0`` is greedy (the reply ignores ``seed`` and the sample
    index); other temperatures do not change the answer distribution. ``seed=None`` is as
    deterministic as any seed (samples of one request differ by index). A completion longer
    than ``max_tokens`` is reported with ``finish_reason="length"`` and its token count clipped,
    but keeps its answer, so ``expected_accuracy`` holds at any ``max_tokens``. ``stop`` cuts
    the text at the first stop string. A prompt that is not a question of this preset raises
    `LLMError` (the executor records it as a failed node).
    """

    def __init__(self, preset: str | SimPreset = "math-like", *, seed: int = 0) -> None:
        self.preset = get_preset(preset)
        self.seed = int(seed)
        self.pool = preset_pool(self.preset)
        self._behaviour = Behaviour(self.preset)
        self._truth = GroundTruth(self.preset)
        self._questions: dict[str, Question] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"SimulatedPool(preset={self.preset.name!r}, seed={self.seed})"

    # ------------------------------------------------------------------ task and costs
    def task(self, n_questions: int | None = None, *, split: str = "dev",
             seed: int = 0) -> SimTask:
        """The preset's questions of ``split`` set ``seed``; a smaller ``n_questions`` gives a
        prefix of a larger one (default: the preset's split size)."""
        task = make_task(self.preset, n_questions, split=split, seed=seed)
        for q in task.questions:
            self._questions[q.text] = q
        return task

    def cost_model(self) -> CostModel:
        """The CostModel of this pool at the preset's prompt length."""
        return CostModel(self.pool, self.preset.prompt_tokens)

    @property
    def budgets(self) -> dict[str, Budget]:
        """The preset's named budgets (e.g. "low", "high")."""
        return dict(self.preset.budgets)

    @property
    def template(self) -> tuple[int, int]:
        """The preset's recommended ``(D, W)`` search template."""
        return self.preset.template

    # ------------------------------------------------------------------ LLMClient
    async def complete(self, model: str, messages: Sequence[Message], *, n: int = 1,
                       temperature: float = 0.7, max_tokens: int = 256,
                       seed: int | None = None,
                       stop: Sequence[str] | None = None) -> list[Completion]:
        """``n`` simulated replies of ``model`` to ``messages`` (see the class docstring)."""
        if self._closed:
            raise LLMError("the simulated pool is closed", model=model)
        if model not in self.pool:
            raise LLMError(f"unknown model; the simulated pool has {', '.join(self.pool.names)}",
                           model=model)
        if n < 1 or max_tokens < 1:
            raise ValueError(f"n and max_tokens must be >= 1, got n={n}, max_tokens={max_tokens}")
        question = self._identify(model, messages)
        kind_name, input_texts = parse_node_messages(messages)
        kind = KINDS[kind_name]
        answers = [extract_final_answer(t) for t in input_texts]
        codes, noise_texts = self._encode(question, answers)
        k_model = self.pool.index(model)
        prompt_chars = sum(len(m.get("content") or "") for m in messages)
        prompt_tokens = max(1, math.ceil(prompt_chars / CHARS_PER_TOKEN))
        rows = Rows.of([question], self.preset.noise)
        inputs = [np.full((1, 1), c, np.int16) for c in codes]
        prompt_key = stable_hash(self.seed, model,
                                 [[m.get("role"), m.get("content")] for m in messages])
        out = []
        for index in range(n):
            rng = self._rng(prompt_key, seed, index, temperature)
            code = int(self._behaviour.step(k_model, kind, rows, inputs,
                                            lambda: rng.random((1, 1)))[0, 0])
            answer = self._decode(question, code, noise_texts, rng)
            out.append(self._completion(model, kind, len(input_texts), answer, prompt_tokens,
                                        max_tokens, stop, rng))
        await asyncio.sleep(0)  # let other requests interleave, as they would with a server
        return out

    async def aclose(self) -> None:
        """Mark the pool closed; later requests raise `LLMError`."""
        self._closed = True

    def _identify(self, model: str, messages: Sequence[Message]) -> Question:
        """The question a prompt asks, from the cache or rebuilt from its header."""
        if not messages or not isinstance(messages[-1].get("content"), str):
            raise LLMError("messages must end with a message that has text content", model=model)
        text = strip_role_template(messages)[-1]["content"]
        question = self._questions.get(text)
        if question is not None:
            return question
        address = question_address(text)
        if address is None:
            raise LLMError(f"the simulated pool only answers questions of its task "
                           f"(pool.task()); this prompt is not one: {text[:60]!r}", model=model)
        index, preset, split, seed = address
        if preset != self.preset.name:
            raise LLMError(f"the question belongs to sim preset {preset!r}, but this pool "
                           f"simulates {self.preset.name!r}", model=model)
        question = make_question(self.preset, split, seed, index)
        if question.text != text:
            raise LLMError(f"question {question.qid} was altered; the simulated pool answers "
                           "the task's questions verbatim", model=model)
        self._questions[text] = question
        return question

    def _encode(self, question: Question,
                answers: Sequence[str | None]) -> tuple[list[int], dict[int, str]]:
        """Input answers as latent codes; free-form ones get codes by first appearance."""
        distractors = question.meta["distractors"]
        codes, noise = [], {}
        seen: dict[str, int] = {}
        for answer in answers:
            if answer is None:
                codes.append(MISSING)
            elif answer == question.answer:
                codes.append(CORRECT)
            elif answer in distractors:
                codes.append(1 + distractors.index(answer))
            else:
                if answer not in seen:
                    seen[answer] = NOISE_BASE + len(seen)
                    noise[seen[answer]] = answer
                codes.append(seen[answer])
        return codes, noise

    def _decode(self, question: Question, code: int, noise: dict[int, str],
                rng: np.random.Generator) -> str | None:
        if code == MISSING:
            return None
        if code == CORRECT:
            return question.answer
        if code == NEW_NOISE:
            taken = {question.answer, *question.meta["distractors"]}
            while True:
                fresh = str(int(rng.integers(1000, 1_000_000)))
                if fresh not in taken:
                    return fresh
        if code >= NOISE_BASE:
            return noise[code]
        return question.meta["distractors"][code - 1]

    def _rng(self, prompt_key: int, seed: int | None, index: int,
             temperature: float) -> np.random.Generator:
        """The generator of sample ``index``: from the request's identity (``prompt_key``) and
        what varies between its samples (nothing at temperature 0)."""
        if temperature == 0:
            return np.random.default_rng([prompt_key, 0])
        if seed is None:
            return np.random.default_rng([prompt_key, 1, index])
        return np.random.default_rng([prompt_key, 2, sample_seed(seed, index)])

    def _completion(self, model: str, kind: int, n_inputs: int, answer: str | None,
                    prompt_tokens: int, max_tokens: int, stop: Sequence[str] | None,
                    rng: np.random.Generator) -> Completion:
        spec = self.pool[model]
        # Mean-preserving lognormal length, so CostModel's out_tokens stays the mean.
        drawn = spec.out_tokens * math.exp(rng.normal(0.0, _TOKEN_SIGMA) - _TOKEN_SIGMA ** 2 / 2)
        tokens = max(8, int(round(drawn)))
        finish = "stop" if answer is not None else "length"
        if tokens > max_tokens:
            tokens, finish = max_tokens, "length"
        text = _render(kind, n_inputs, answer, tokens * CHARS_PER_TOKEN, rng)
        for s in stop or ():
            at = text.find(s) if s else -1
            if at >= 0:
                text, finish = text[:at], "stop"
        latency = (spec.overhead_s + prompt_tokens / spec.prefill_tps
                   + tokens / spec.decode_tps) * math.exp(rng.normal(0.0, _LATENCY_SIGMA))
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=tokens,
                          latency_s=latency, model=model, finish_reason=finish)

    # ------------------------------------------------------------------ ground truth
    def expected_accuracy(self, graph: CollaborationGraph,
                          questions: Sequence[Question] | None = None, *,
                          n_samples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """`GroundTruth.expected_accuracy` of this pool's preset."""
        return self._truth.expected_accuracy(graph, questions, n_samples=n_samples, seed=seed)

    def expected_accuracy_batch(self, batch: GraphBatch,
                                questions: Sequence[Question] | None = None, *,
                                n_samples: int = 2000,
                                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`GroundTruth.expected_accuracy_batch` of this pool's preset."""
        return self._truth.expected_accuracy_batch(batch, questions, n_samples=n_samples,
                                                   seed=seed)
