"""Procedurally generated arithmetic word problems with exact integer answers: a seeded,
offline task whose difficulty can be dialled to what a tiny model partly solves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..kernels import extract_number
from ..llm.base import Message
from .base import Question, Task, chat_prompt, examples_for

_INSTRUCTION = "Solve the word problem. End your reply with 'The answer is N.'"

_PEOPLE = (("Tom", "he"), ("Anna", "she"), ("Ravi", "he"), ("Mia", "she"), ("Leo", "he"),
           ("Sara", "she"), ("Omar", "he"), ("Lena", "she"))
_ITEMS = ("apples", "marbles", "stickers", "pencils", "cards", "coins", "shells", "books")
_MULTIPLY_WORDS = {2: "doubles them", 3: "triples them", 4: "quadruples them"}



@dataclass(frozen=True)
class _Level:
    """How hard a difficulty level is: the start, which operations, how many, how big."""

    boxes: bool           # start as "buys a boxes with b items in each box" (a product)
    start: tuple[int, int]
    steps: int
    ops: str
    operand: tuple[int, int]


_LEVELS = {
    1: _Level(False, (1, 9), 1, "+", (1, 9)),
    2: _Level(False, (10, 99), 1, "+-", (10, 99)),
    3: _Level(False, (10, 99), 2, "+-", (10, 99)),
    4: _Level(True, (10, 30), 2, "+-*", (10, 199)),
    5: _Level(True, (12, 60), 3, "+-*/", (10, 299)),
}


class ArithTask(Task):
    """``n`` arithmetic word problems at ``difficulty`` 1-5, generated from ``seed``.

    Difficulty 1 is single-digit addition ("Tom has 3 apples and buys 4 more."); 2 adds or
    subtracts two-digit numbers; 3 chains two such steps; 4 starts from a product (boxes of
    items) and may multiply; 5 takes three steps including exact division. The same
    ``(seed, difficulty)`` always gives the same questions, and a smaller ``n`` gives a prefix
    of a larger one. ``few_shot`` worked examples (from a separate random stream) are shown by
    the "few-shot" prompt style. ``meta`` records the start value and steps, so the answer can
    be recomputed.
    """

    family = "arith"

    def __init__(self, n: int = 100, seed: int = 0, difficulty: int = 1, few_shot: int = 3,
                 name: str = "arith") -> None:
        if difficulty not in _LEVELS:
            raise ConfigError(f"arith difficulty must be one of {sorted(_LEVELS)}, "
                              f"got {difficulty!r}")
        if n < 1 or seed < 0 or few_shot < 0:
            raise ConfigError(f"arith needs n >= 1, seed >= 0 and few_shot >= 0; "
                              f"got n={n}, seed={seed}, few_shot={few_shot}")
        self.name = name
        self.difficulty = difficulty
        self.seed = seed
        # independent streams per difficulty and for questions vs. examples
        questions_rng = np.random.default_rng([seed, difficulty, 0])
        examples_rng = np.random.default_rng([seed, difficulty, 1])
        self.questions = [_problem(questions_rng, difficulty, f"arith-d{difficulty}-s{seed}-{i}")
                          for i in range(n)]
        self.examples = [_problem(examples_rng, difficulty, f"example-{i}")
                         for i in range(few_shot)]

    def prompt(self, question: Question, style: str = "zero-shot") -> list[Message]:
        worked = [(example.text, worked_solution(example)) for example in self.examples]
        return chat_prompt(_INSTRUCTION, question.text, examples_for(style, worked))

    def extract(self, question: Question, text: str) -> str | None:
        return extract_number(text)

    def check(self, question: Question, answer: str | None) -> bool:
        if answer is None:
            return False
        try:
            return int(answer) == int(question.answer)
        except ValueError:  # a non-integer such as "7.5" is simply wrong
            return False


def apply_steps(start: int, steps: Sequence[tuple[str, int]]) -> int:
    """The value after applying ``steps`` (operator, operand) to ``start`` in order."""
    value = start
    for op, operand in steps:
        if op == "+":
            value += operand
        elif op == "-":
            value -= operand
        elif op == "*":
            value *= operand
        elif op == "/":
            if value % operand:
                raise ValueError(f"{value} is not divisible by {operand}")
            value //= operand
        else:
            raise ValueError(f"unknown operator {op!r}")
    return value


def worked_solution(question: Question) -> str:
    """A short step-by-step solution ending "The answer is N." (the few-shot answer format)."""
    value = question.meta["start"]
    lines = []
    for op, operand in question.meta["steps"]:
        new = apply_steps(value, [(op, operand)])
        lines.append(f"{value} {op} {operand} = {new}.")
        value = new
    lines.append(f"The answer is {value}.")
    return " ".join(lines)


def _problem(rng: np.random.Generator, difficulty: int, qid: str) -> Question:
    level = _LEVELS[difficulty]
    name, pronoun = _PEOPLE[int(rng.integers(len(_PEOPLE)))]
    item = _ITEMS[int(rng.integers(len(_ITEMS)))]
    steps: list[tuple[str, int]] = []
    if level.boxes:
        start = int(rng.integers(2, 10))
        per_box = int(rng.integers(level.start[0], level.start[1] + 1))
        steps.append(("*", per_box))
        opening = f"{name} buys {start} boxes with {per_box} {item} in each box"
    else:
        start = int(rng.integers(level.start[0], level.start[1] + 1))
        opening = f"{name} has {start} {item}"
    phrases = []
    value = apply_steps(start, steps)
    for _ in range(level.steps):
        op, operand = _step(rng, level, value)
        steps.append((op, operand))
        phrases.append(_phrase(op, operand))
        value = apply_steps(value, [(op, operand)])
    sentence = f"{opening} and {phrases[0]}."
    rest = " ".join(f"Then {pronoun} {phrase}." for phrase in phrases[1:])
    text = " ".join(part for part in (sentence, rest,
                                      f"How many {item} does {pronoun} have now?") if part)
    return Question(qid=qid, text=text, answer=value,
                    meta={"start": start, "steps": steps, "difficulty": difficulty})


def _step(rng: np.random.Generator, level: _Level, value: int) -> tuple[str, int]:
    low, high = level.operand
    # Every level allows "+", which always applies, so this loop ends.
    while True:
        op = level.ops[int(rng.integers(len(level.ops)))]
        if op == "+":
            return op, int(rng.integers(low, high + 1))
        if op == "-" and value > low:
            # answers stay positive: nobody gives away more than they have
            return op, int(rng.integers(low, min(high, value - 1) + 1))
        if op == "*" and value * 4 < 10_000:
            return op, int(rng.integers(2, 5))
        if op == "/":
            divisors = [k for k in range(2, 7) if value % k == 0]
            if divisors:
                return op, divisors[int(rng.integers(len(divisors)))]


def _phrase(op: str, operand: int) -> str:
    if op == "+":
        return f"buys {operand} more"
    if op == "-":
        return f"gives away {operand}"
    if op == "*":
        return _MULTIPLY_WORDS[operand]
    return f"splits them equally into {operand} bags and keeps one bag"
