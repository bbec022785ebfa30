"""A simulated pool of LLMs: an `LLMClient` that answers synthetic questions through text, as a
server would, from a seeded latent model of skills, difficulties, refiners and fusers.

Everything downstream of the client (executor, answer extraction, vote, ResponseBank) runs as it
does against real servers, instantly and reproducibly. `SimulatedPool.expected_accuracy` gives
the exact-semantics ground truth of a graph by Monte-Carlo over the latent model, without text.

The latent model (parameters in `pytts.llm.sim_presets`): each question has a difficulty and a
few plausible distractors with question-specific weights; a node's output answer is a draw that
depends on its model, its role and its inputs' answers (see `SimPreset`). Answers are handled as
codes: -1 no answer, 0 the right answer, 1..K the distractors, larger codes free-form wrong
answers (each one distinct).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..cost import Budget, CostModel
from ..demo_pool import DEMO_MODELS
from ..errors import ConfigError, LLMError
from ..graph import FUSER, MAX_WIDTH, CollaborationGraph, GraphBatch
from ..pool import ModelPool
from ..prompts import parse_node_messages, strip_role_template
from ..tasks.base import Question, Task, chat_prompt, examples_for
from .base import Completion, Message, sample_seed
from .sim_presets import MAX_DISTRACTORS, PRESETS, SimModel, SimPreset, get_preset

__all__ = ["PRESETS", "SPLITS", "SimModel", "SimPreset", "SimTask", "SimulatedPool",
           "extract_final_answer", "get_preset", "make_question", "vote_codes"]

SPLITS = ("dev", "test")

# Answer codes of the latent model.
MISSING = -1
CORRECT = 0
NEW_NOISE = -2          # "write a fresh free-form wrong answer"; resolved by the caller
NOISE_BASE = MAX_DISTRACTORS + 1

# Node kinds (the role a call plays, as `parse_node_messages` tells it).
ANSWER, REFINE, FUSE = 0, 1, 2
_KINDS = {"answer": ANSWER, "refine": REFINE, "fuse": FUSE}

_TOKEN_SIGMA = 0.25     # lognormal spread of completion lengths
_LATENCY_SIGMA = 0.06   # lognormal spread of latencies (load, scheduling)
_CHARS_PER_TOKEN = 4

_LETTERS = "ABCD"
_FINAL = re.compile(r"the answer is\s*:?\s*\(?\s*([A-Za-z0-9+\-]+)", re.IGNORECASE)
_HEADER = re.compile(r"Problem (\d+) \(([\w.\-]+), (dev|test) set (\d+)\):")


def extract_final_answer(text: str) -> str | None:
    """The X of the last "The answer is X" in ``text`` (letters upper-cased), else None."""
    found = _FINAL.findall(text)
    if not found:
        return None
    answer = found[-1]
    return answer.upper() if answer.isalpha() else answer


def _stable_int(*parts: object) -> int:
    """A 64-bit integer hash of ``parts`` that is the same in every process (unlike hash())."""
    digest = hashlib.blake2b(json.dumps(parts, separators=(",", ":")).encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little")


# --------------------------------------------------------------------------- questions
_INSTRUCTIONS = {
    "integer": "Solve the problem. Show brief reasoning, then end your reply with "
               "'The answer is X.' where X is the final integer.",
    "letter": "Answer the multiple-choice question. Think briefly, then end your reply with "
              "'The answer is X.' where X is the letter of the correct choice.",
}
_EXAMPLES = {
    "integer": (("Example: a box holds 4 rows of 6 eggs and 5 eggs are broken. "
                 "How many whole eggs are there?",
                 "4 rows of 6 is 24 eggs; 24 - 5 = 19. The answer is 19."),),
    "letter": (("Example: which gas do plants take in for photosynthesis?\n"
                "A) oxygen\nB) carbon dioxide\nC) nitrogen\nD) helium",
                "Plants fix carbon from carbon dioxide. The answer is B."),),
}
_FILLER = ("Quantity {a} is {v} and changes by {w} at each step.",
           "The constraint links {a} to {b} through a factor of {w}.",
           "Only values of {a} between {w} and {v} satisfy the condition.",
           "Take {b} as the smallest value consistent with {a}.")
_SYMBOLS = "pqrstuvxyz"


def _question_text(preset: SimPreset, split: str, seed: int, index: int,
                   rng: np.random.Generator) -> str:
    """A synthetic question whose task prompt is about ``preset.prompt_tokens`` tokens long."""
    header = f"Problem {index} ({preset.name}, {split} set {seed}): "
    if preset.answer_kind == "letter":
        tail = "\nWhich option is correct?\n" + "\n".join(
            f"{letter}) Statement {index}-{letter} about topic {int(rng.integers(1, 60))}."
            for letter in _LETTERS)
    else:
        tail = " What is the final value?"
    target = int(preset.prompt_tokens * _CHARS_PER_TOKEN) - len(_INSTRUCTIONS[preset.answer_kind])
    body = []
    length = len(header) + len(tail)
    while length < target:
        sentence = _FILLER[int(rng.integers(len(_FILLER)))].format(
            a=_SYMBOLS[int(rng.integers(10))], b=_SYMBOLS[int(rng.integers(10))],
            v=int(rng.integers(2, 500)), w=int(rng.integers(2, 20)))
        body.append(sentence)
        length += len(sentence) + 1
    return header + " ".join(body) + tail


def _integer_distractors(answer: int, k: int, rng: np.random.Generator) -> list[str]:
    """``k`` plausible wrong integers near ``answer`` (slips, doubled terms, off-by-ones)."""
    candidates = [answer + 1, answer - 1, answer * 2, answer // 2, answer + 10, answer - 10,
                  answer + 2, answer - 2, answer * 3, answer + 100]
    candidates = list(dict.fromkeys(c for c in candidates if c > 0 and c != answer))
    picked = rng.choice(len(candidates), size=k, replace=False)
    return [str(candidates[int(i)]) for i in picked]


def make_question(preset: SimPreset, split: str, seed: int, index: int) -> Question:
    """Question ``index`` of ``split`` set ``seed`` of ``preset``: the same in every process.

    ``meta`` carries the latent parameters the simulation reads: difficulty, distractors and
    their weights.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([_stable_int(preset.name), SPLITS.index(split), seed, index])
    hard = rng.random() < preset.hard_fraction
    difficulty = (rng.normal(preset.difficulty_mean, preset.difficulty_std)
                  + (preset.hard_shift if hard else 0.0))
    weights = rng.dirichlet([preset.concentration] * preset.n_distractors)
    if preset.answer_kind == "letter":
        answer = _LETTERS[int(rng.integers(4))]
        distractors = [c for c in _LETTERS if c != answer]
    else:
        value = int(rng.integers(12, 1000))
        answer = str(value)
        distractors = _integer_distractors(value, preset.n_distractors, rng)
    text = _question_text(preset, split, seed, index, rng)
    return Question(qid=f"{preset.name}-{split}{seed}-{index}", text=text, answer=answer,
                    meta={"preset": preset.name, "difficulty": float(difficulty),
                          "distractors": distractors,
                          "weights": [float(w) for w in weights]})


class SimTask(Task):
    """Synthetic questions of a preset: prompt asks for "The answer is X."; exact-match check."""

    def __init__(self, preset: SimPreset, questions: Sequence[Question], split: str = "dev",
                 seed: int = 0) -> None:
        self.preset = preset
        self.name = preset.name
        self.family = preset.family
        self.split = split
        self.seed = seed
        self.questions = list(questions)

    def prompt(self, question: Question, style: str = "zero-shot") -> list[Message]:
        kind = self.preset.answer_kind
        return chat_prompt(_INSTRUCTIONS[kind], question.text, examples_for(style, _EXAMPLES[kind]))

    def extract(self, question: Question, text: str) -> str | None:
        return extract_final_answer(text)

    def check(self, question: Question, answer: str | None) -> bool:
        return answer is not None and answer == question.answer


# --------------------------------------------------------------------------- latent model
Uniforms = Callable[[], np.ndarray]
"""Returns a fresh array of uniforms in [0, 1) of the sample shape on each call."""


@dataclass(frozen=True)
class _Rows:
    """Latent parameters of Q questions, shaped to broadcast against ``[Q, S]`` sample arrays."""

    difficulty: np.ndarray      # float64 [Q, 1]
    wrong_cuts: np.ndarray      # float32 [Q, K]: where the wrong answers' ranges start in [0, 1)

    @classmethod
    def of(cls, questions: Sequence[Question], noise: float) -> "_Rows":
        """Rows of ``questions``, whose wrong answers are free-form with probability ``noise``.

        A uniform u picks a wrong answer: u < noise is free-form; above, the distractors share
        [noise, 1) by their weights, distractor k starting at ``wrong_cuts[:, k - 1]``.
        """
        diff = np.array([q.meta["difficulty"] for q in questions], np.float64)[:, None]
        weights = np.array([q.meta["weights"] for q in questions], np.float64)
        starts = np.cumsum(weights, axis=1) - weights  # each distractor's lower end in [0, 1)
        cuts = noise + (1.0 - noise) * starts
        cuts[:, 0] = noise  # exactly: rounding must not move the free-form range
        return cls(diff, cuts.astype(np.float32))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # float32 is plenty for a probability and halves the memory traffic of the Monte-Carlo.
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _plurality(codes: Sequence[np.ndarray], counted: Callable[[np.ndarray], np.ndarray]
               ) -> np.ndarray:
    """Elementwise over equally shaped code arrays: the most common code among those where
    ``counted(code)`` holds (ties: the earliest array), else MISSING.

    ``counted`` must depend on the code only (so equal codes are counted alike).
    """
    masks = [counted(c) for c in codes]
    if len(codes) == 1:
        return np.where(masks[0], codes[0], MISSING).astype(np.int16)
    counts = [m.astype(np.int8) for m in masks]
    for i in range(len(codes)):
        for j in range(i + 1, len(codes)):
            same = (codes[i] == codes[j]) & masks[i]
            counts[i] += same
            counts[j] += same
    best, best_count = np.where(masks[0], codes[0], MISSING).astype(np.int16), counts[0]
    for code, count in zip(codes[1:], counts[1:]):
        # strictly more: an equal count keeps the earlier code (ties go to the first seen)
        better = count > best_count
        best = np.where(better, code, best)
        best_count = np.maximum(best_count, count)
    return best


def vote_codes(codes: Sequence[np.ndarray]) -> np.ndarray:
    """The vote of `pytts.kernels.vote` (unweighted, ties to the first seen, MISSING ignored)
    over answer-code arrays, one per sink in sink order; a faster equivalent for the
    Monte-Carlo's small integer codes (tests check the two agree)."""
    return _plurality(codes, lambda c: c != MISSING)


class _Behaviour:
    """The latent model of one preset: how a node's output answer code is drawn."""

    def __init__(self, preset: SimPreset) -> None:
        self.preset = preset
        self.skill = np.array([m.skill for m in preset.models])
        self.refine = np.array([m.refine for m in preset.models])
        self.fuse = np.array([m.fuse for m in preset.models])
        self.fail = np.array([m.fail for m in preset.models])

    def _wrong(self, rows: _Rows, u: np.ndarray) -> np.ndarray:
        """A wrong answer: fresh free-form with probability ``noise``, else a distractor."""
        # the number of range starts at or below u is the distractor's code (0: free-form)
        count = (u >= rows.wrong_cuts[:, :1]).view(np.int8)
        for k in range(1, rows.wrong_cuts.shape[1]):
            count = count + (u >= rows.wrong_cuts[:, k:k + 1]).view(np.int8)
        code = count.astype(np.int16)
        if self.preset.noise:
            code[count == 0] = NEW_NOISE
        return code

    def p_right(self, model: int, kind: int, rows: _Rows, inputs: Sequence[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probability that the node's answer is the right one (before a failed reply), and the
        wrong answer it falls back to when there is one to stick to or follow (else None).

        ``inputs`` are the predecessors' answer codes in slot order (empty for a first
        answer), each broadcastable to the sample shape ``[Q, S]``.
        """
        p = self.preset
        gap = self.skill[model] - rows.difficulty
        p_answer = _sigmoid(p.slope * gap)
        if kind == ANSWER or not inputs:
            return p_answer, None
        if kind == REFINE:
            # Several attempts: the refiner checks the one most of them agree on.
            x = _plurality(inputs, lambda c: c != MISSING)
            z = p.slope * (gap + self.refine[model])
            p_right = np.where(x == MISSING, p_answer,
                               np.where(x == CORRECT, _sigmoid(z + p.keep_offset),
                                        _sigmoid(z - p.fix_offset)))
            return p_right, np.where(x > CORRECT, x, MISSING).astype(np.int16)
        n_answered = sum((c != MISSING).astype(np.int8) for c in inputs)
        n_right = sum((c == CORRECT).astype(np.int8) for c in inputs)
        share = n_right / np.maximum(n_answered, 1).astype(np.float32)
        z = (p.slope * (gap + self.fuse[model])).astype(np.float32)
        p_pick = _sigmoid(z + np.float32(p.fuse_share) * (share - np.float32(0.5))
                          + np.float32(p.fuse_offset))
        p_right = np.where(n_answered == 0, p_answer,
                           np.where(n_right > 0, p_pick, _sigmoid(z - p.fix_offset)))
        return p_right, _plurality(inputs, lambda c: c > CORRECT)

    def p_correct(self, model: int, kind: int, rows: _Rows,
                  inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Probability that the node replies with the right answer (failures included)."""
        return self.p_right(model, kind, rows, inputs)[0] * np.float32(1.0 - self.fail[model])

    def step(self, model: int, kind: int, rows: _Rows, inputs: Sequence[np.ndarray],
             uniform: Uniforms) -> np.ndarray:
        """Output answer codes (int16, the sample shape) of a node of ``model`` playing
        ``kind`` on ``inputs``; NEW_NOISE asks the caller for a fresh wrong answer.

        ``uniform()`` is called for: the outcome (no answer below ``fail``, else right with
        probability ``p_right``); which wrong answer; and, for refiners and fusers, whether to
        keep or follow their inputs' wrong answer.
        """
        p_right, fallback = self.p_right(model, kind, rows, inputs)
        fail = np.float32(self.fail[model])
        outcome = uniform()
        out = self._wrong(rows, uniform())
        if fallback is not None:
            keep = self.preset.stick if kind == REFINE else self.preset.follow
            out = np.where((fallback != MISSING) & (uniform() < keep), fallback, out)
        # [0, fail): no answer; [fail, fail + (1 - fail) p_right): right; above: wrong
        out = np.where(outcome < fail + (1 - fail) * p_right, np.int16(CORRECT), out)
        if fail > 0:
            out = np.where(outcome < fail, np.int16(MISSING), out)
        return out.astype(np.int16, copy=False)


# --------------------------------------------------------------------------- text rendering
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


# --------------------------------------------------------------------------- the client
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
        by_name = {m.name: m for m in DEMO_MODELS}
        missing = [m.name for m in self.preset.models if m.name not in by_name]
        if missing:
            raise ConfigError(f"sim preset {self.preset.name!r} names model(s) {missing} that are "
                              f"not demo models ({', '.join(by_name)})")
        self.pool = ModelPool([by_name[m.name] for m in self.preset.models])
        self._behaviour = _Behaviour(self.preset)
        self._questions: dict[str, Question] = {}
        self._test_questions: list[Question] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SimulatedPool(preset={self.preset.name!r}, seed={self.seed})"

    # ------------------------------------------------------------------ task and costs
    def task(self, n_questions: int | None = None, *, split: str = "dev",
             seed: int = 0) -> SimTask:
        """The preset's questions of ``split`` set ``seed``; a smaller ``n_questions`` gives a
        prefix of a larger one (default: the preset's split size)."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        n = self.preset.n_dev if split == "dev" else self.preset.n_test
        n = n if n_questions is None else int(n_questions)
        if n < 1:
            raise ConfigError(f"n_questions must be at least 1, got {n_questions}")
        questions = [make_question(self.preset, split, seed, i) for i in range(n)]
        for q in questions:
            self._questions[q.text] = q
        return SimTask(self.preset, questions, split, seed)

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
        kind = _KINDS[kind_name]
        answers = [extract_final_answer(t) for t in input_texts]
        codes, noise_texts = self._encode(question, answers)
        k_model = self.pool.index(model)
        prompt_chars = sum(len(m.get("content") or "") for m in messages)
        prompt_tokens = max(1, math.ceil(prompt_chars / _CHARS_PER_TOKEN))
        rows = _Rows.of([question], self.preset.noise)
        inputs = [np.full((1, 1), c, np.int16) for c in codes]
        prompt_key = _stable_int(self.seed, model,
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
        header = _HEADER.match(text)
        if header is None:
            raise LLMError(f"the simulated pool only answers questions of its task "
                           f"(pool.task()); this prompt is not one: {text[:60]!r}", model=model)
        index, preset, split, seed = (int(header[1]), header[2], header[3], int(header[4]))
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
        text = _render(kind, n_inputs, answer, tokens * _CHARS_PER_TOKEN, rng)
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
        """``(mean, stderr)`` of the accuracy of ``graph`` on ``questions`` (default: the test
        split), by Monte-Carlo over the latent model with ``n_samples`` runs per question.

        The semantics are those of the text path (GraphExecutor over this pool): the same node
        behaviour, sinks voted by `pytts.kernels.vote` in `graph.vote_order()` (ties to the first
        sink answer in that order). Draws of node (layer, slot) come from ``seed`` and the node's
        position, so graphs that share nodes share their draws (common random numbers).
        ``stderr`` is the Monte-Carlo error of the mean over these questions.
        """
        questions = self._check_questions(questions)
        return self._monte_carlo(graph, _Rows.of(questions, self.preset.noise), n_samples, seed,
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
        rows = _Rows.of(questions, self.preset.noise)
        memo = _Memo()
        means = np.empty(batch.model.shape[0])
        errs = np.empty_like(means)
        done: dict[bytes, tuple[float, float]] = {}
        for b in range(batch.model.shape[0]):
            key = batch.model[b].tobytes() + batch.role[b].tobytes() + batch.edges[b].tobytes()
            if key not in done:
                graph = CollaborationGraph(batch.model[b], batch.role[b], batch.edges[b],
                                           self.pool.names)
                done[key] = self._monte_carlo(graph, rows, n_samples, seed, memo)
            means[b], errs[b] = done[key]
        return means, errs

    def _monte_carlo(self, graph: CollaborationGraph, rows: _Rows, n_samples: int, seed: int,
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
                self._test_questions = list(self.task(split="test").questions)
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
        unknown = [n for n in graph.model_names if n not in self.pool]
        if unknown:
            raise ValueError(f"graph uses model(s) {unknown} outside the simulated pool "
                             f"({', '.join(self.pool.names)})")
        return [self.pool.index(n) for n in graph.model_names]
