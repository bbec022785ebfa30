"""What a task is: questions, how to prompt for them, how to read and check an answer; plus the
chat-prompt and dataset-file helpers every task shares."""

from __future__ import annotations

import copy
import gzip
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..llm.base import Message


@dataclass(frozen=True)
class Question:
    """One dataset item: its id, the text shown to the model, and the reference answer."""

    qid: str
    text: str
    answer: Any
    meta: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """Questions plus prompt, answer extraction and checking for one benchmark.

    ``family`` names the kind of skill the task needs ("math", "mmlu", "code", "arith"); the
    simulated pool keys its per-model skills on it.
    """

    name: str
    family: str
    slow_check: bool = False
    """True when `check` may take long (sympy, a sandboxed run): evaluators call it off the
    event loop. Cheap checks run inline (a thread hop costs more than they do)."""
    questions: Sequence[Question]

    @abstractmethod
    def prompt(self, question: Question, style: str = "zero-shot") -> list[Message]:
        """Messages that ask a model to answer ``question`` (``style``: "zero-shot"|"few-shot")."""

    @abstractmethod
    def extract(self, question: Question, text: str) -> str | None:
        """The canonical answer string found in ``text`` (what gets voted), or None."""

    @abstractmethod
    def check(self, question: Question, answer: str | None) -> bool:
        """Whether an extracted answer is correct. May block (code runs in a sandbox)."""

    def with_questions(self, questions: Sequence[Question]) -> Task:
        """A copy of this task (same prompts, extraction and checking) over ``questions``."""
        clone = copy.copy(self)
        clone.questions = list(questions)
        return clone

    @property
    def prompt_tokens(self) -> int:
        """Mean prompt length in tokens, for the cost model (about 4 characters a token)."""
        if not self.questions:
            return 0
        chars = sum(sum(len(m["content"]) for m in self.prompt(q)) for q in self.questions)
        return max(1, round(chars / len(self.questions) / 4))


def chat_prompt(instruction: str, question_text: str,
                examples: Sequence[tuple[str, str]] = ()) -> list[Message]:
    """Chat messages: a system ``instruction``, worked ``examples`` as user/assistant turns, then
    the question.

    Few-shot examples go in as earlier turns (not pasted into one user message) so chat
    templates mark where a worked answer ends, which small models imitate more reliably.
    """
    messages: list[Message] = [{"role": "system", "content": instruction}]
    for shown, worked in examples:
        messages.append({"role": "user", "content": shown})
        messages.append({"role": "assistant", "content": worked})
    messages.append({"role": "user", "content": question_text})
    return messages


PROMPT_STYLES = ("zero-shot", "few-shot")


def examples_for(style: str, examples: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
    """The worked examples a prompt ``style`` shows: all of them for "few-shot", none for
    "zero-shot"; any other style is a ConfigError."""
    if style not in PROMPT_STYLES:
        raise ConfigError(f"prompt style {style!r} is unknown; use one of {PROMPT_STYLES}")
    return examples if style == "few-shot" else ()


def existing_file(path: str | Path) -> Path:
    """``path`` as a Path, or a ConfigError naming it when it is not a readable file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: no such dataset file; pass the path of an existing file")
    return file


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file
    (gzip-compressed when its name ends in ``.gz``).

    A line that is not a JSON object raises a ConfigError naming the file and line, so a user
    can fix the data instead of hunting for which of ten thousand rows broke.
    """
    file = existing_file(path)
    opener = gzip.open if file.name.endswith(".gz") else open
    with opener(file, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{file}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{file}:{number}: expected a JSON object, "
                                  f"got {type(row).__name__}")
            yield number, row
