"""The simulated task: synthetic questions of a preset (text, answer and latent parameters), the
prompts that ask them, and the extraction of "The answer is X." from replies."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ..llm.base import Message
from ..tasks.base import Question, Task, chat_prompt, examples_for
from .presets import CHARS_PER_TOKEN, SimPreset

__all__ = ["SPLITS", "SimTask", "extract_final_answer", "make_question", "make_task",
           "question_address", "question_keys", "stable_hash"]

SPLITS = ("dev", "test")

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


def stable_hash(*parts: object) -> int:
    """A 64-bit integer hash of ``parts`` that is the same in every process (unlike hash())."""
    digest = hashlib.blake2b(json.dumps(parts, separators=(",", ":")).encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little")


def question_keys(questions: Sequence[Question]) -> np.ndarray:
    """``uint64[Q]``: each question's key for the simulator's draws (from its id, so a question
    draws the same in any subset or order)."""
    return np.array([stable_hash("question", q.qid) for q in questions], np.uint64)


def question_address(text: str) -> tuple[int, str, str, int] | None:
    """``(index, preset name, split, seed)`` of the question whose text is ``text`` (read from
    its header), or None if ``text`` is not a simulated question."""
    header = _HEADER.match(text)
    if header is None:
        return None
    return int(header[1]), header[2], header[3], int(header[4])


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
    target = int(preset.prompt_tokens * CHARS_PER_TOKEN) - len(_INSTRUCTIONS[preset.answer_kind])
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
    rng = np.random.default_rng([stable_hash(preset.name), SPLITS.index(split), seed, index])
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


def make_task(preset: SimPreset, n_questions: int | None = None, *, split: str = "dev",
              seed: int = 0) -> SimTask:
    """The preset's questions of ``split`` set ``seed``; a smaller ``n_questions`` gives a
    prefix of a larger one (default: the preset's split size)."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    n = preset.n_dev if split == "dev" else preset.n_test
    n = n if n_questions is None else int(n_questions)
    if n < 1:
        raise ConfigError(f"n_questions must be at least 1, got {n_questions}")
    return SimTask(preset, [make_question(preset, split, seed, i) for i in range(n)], split, seed)
