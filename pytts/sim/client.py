"""A simulated pool of LLMs: an `LLMClient` that answers synthetic questions through text, as a
server would, from a seeded latent model of skills, difficulties, refiners and fusers
(`pytts.sim.latent`).

Everything downstream of the client (executor, answer extraction, vote, ResponseBank) runs as it
does against real servers, instantly and reproducibly.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..cost import Budget, CostModel
from ..defaults import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from ..errors import LLMError
from ..graph import CollaborationGraph, GraphBatch
from ..llm.base import Completion, Message, sample_seed
from ..prompts import parse_node_messages, strip_role_template
from ..tasks.base import Question
from .draws import DRAW_FRESH, DRAW_TEXT, extra_bits, fold, run_bits
from .latent import (
    ANSWER,
    CORRECT,
    FUSE,
    KINDS,
    MISSING,
    NEW_NOISE,
    NOISE_BASE,
    REFINE,
    Thresholds,
    node_codes,
)
from .presets import CHARS_PER_TOKEN, SimPreset, get_preset, preset_pool
from .task import (
    SimTask,
    extract_final_answer,
    make_question,
    make_task,
    question_address,
    question_keys,
    stable_hash,
)
from .truth import GroundTruth
from .usage import latency_factor, reply_tokens

__all__ = ["SimulatedPool", "request_keys"]

# How the samples of a request differ, folded into their keys.
_GREEDY, _UNSEEDED, _SEEDED = 0, 1, 2


def request_keys(model: str, messages: Sequence[Message], *, n: int = 1,
                 temperature: float = 0.7, seed: int | None = None) -> np.ndarray:
    """``uint64[n]``: the node key of each sample of a request, as the kernel's node keys are
    to its runs (the draws are keyed by the pool's seed, the question, this key and sample 0).

    The key follows the request's identity (model and messages) and what varies between its
    samples: nothing at temperature 0, else the sample index, or with a seed the sample's own
    seed (`sample_seed`), so sample k of an n-request is the n=1 request of that seed.
    """
    content = stable_hash("call", model, [[m.get("role"), m.get("content")] for m in messages])
    if temperature == 0:
        mode, values = _GREEDY, [0] * n
    elif seed is None:
        mode, values = _UNSEEDED, list(range(n))
    else:
        mode, values = _SEEDED, [sample_seed(seed, k) for k in range(n)]
    return fold(fold(np.uint64(content), np.uint64(mode)), np.array(values, np.uint64))


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


def fresh_answer(question: Question, bits: np.ndarray) -> str:
    """The free-form wrong answer a run with draws ``bits`` writes: an integer that is neither
    the answer nor a distractor, from the run's extra draws."""
    taken = {question.answer, *question.meta["distractors"]}
    draw = DRAW_FRESH
    while True:
        fresh = str(1000 + int(extra_bits(bits, draw)[0] % np.uint64(999_000)))
        if fresh not in taken:
            return fresh
        draw += 1


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
        self._truth = GroundTruth(self.preset)
        self._questions: dict[str, Question] = {}
        self._thresholds: dict[tuple[str, int], Thresholds] = {}
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
                       temperature: float = DEFAULT_TEMPERATURE,
                       max_tokens: int = DEFAULT_MAX_TOKENS,
                       seed: int | None = None, stop: Sequence[str] | None = None,
                       json_schema: Mapping[str, Any] | None = None) -> list[Completion]:
        """``n`` simulated replies of ``model`` to ``messages`` (see the class docstring);
        ``json_schema`` is ignored: simulated replies are answer texts, never JSON."""
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
        keys = request_keys(model, messages, n=n, temperature=temperature, seed=seed)
        bits = run_bits(self.seed, question_keys([question]), keys, np.zeros(1, np.uint64))[0, :, 0]
        drawn = node_codes(self._thresholds_of(question, len(codes)), k_model, kind,
                           np.zeros(1, np.int64), [np.full(n, c, np.int16) for c in codes],
                           bits, NEW_NOISE)
        out = []
        for index in range(n):
            answer = self._decode(question, int(drawn[index]), noise_texts, bits[index:index + 1])
            out.append(self._completion(model, kind, len(input_texts), answer, prompt_tokens,
                                        max_tokens, stop, bits[index:index + 1]))
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

    def _thresholds_of(self, question: Question, n_inputs: int) -> Thresholds:
        key = (question.qid, max(1, n_inputs))
        th = self._thresholds.get(key)
        if th is None:
            th = self._thresholds[key] = Thresholds.of(self.preset, [question], key[1])
        return th

    def _decode(self, question: Question, code: int, noise: dict[int, str],
                bits: np.ndarray) -> str | None:
        if code == MISSING:
            return None
        if code == CORRECT:
            return question.answer
        if code == NEW_NOISE:
            return fresh_answer(question, bits)
        if code >= NOISE_BASE:
            return noise[code]
        return question.meta["distractors"][code - 1]

    def _completion(self, model: str, kind: int, n_inputs: int, answer: str | None,
                    prompt_tokens: int, max_tokens: int, stop: Sequence[str] | None,
                    bits: np.ndarray) -> Completion:
        spec = self.pool[model]
        tokens = int(reply_tokens(spec.out_tokens, bits)[0])
        finish = "stop" if answer is not None else "length"
        if tokens > max_tokens:
            tokens, finish = max_tokens, "length"
        rng = np.random.default_rng(int(extra_bits(bits, DRAW_TEXT)[0]))
        text = _render(kind, n_inputs, answer, tokens * CHARS_PER_TOKEN, rng)
        for s in stop or ():
            at = text.find(s) if s else -1
            if at >= 0:
                text, finish = text[:at], "stop"
        latency = ((spec.overhead_s + prompt_tokens / spec.prefill_tps
                    + tokens / spec.decode_tps) * float(latency_factor(bits)[0]))
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
