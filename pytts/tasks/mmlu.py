"""Multiple-choice questions (MMLU, MMLU-Pro): lettered prompts and letter extraction that
survives the many ways models phrase a choice."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..llm.base import Message
from .base import Question, Task, chat_prompt, examples_for, existing_file, read_jsonl

LETTERS = "ABCDEFGHIJ"

_INSTRUCTION = ("Answer the multiple-choice question. Think briefly, then end with "
                "'The answer is (X).' where X is the letter of the correct choice.")

_EXAMPLES_RAW: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("Which planet is closest to the Sun?", ("Venus", "Mercury", "Earth", "Mars"), "B",
     "Mercury orbits nearest to the Sun."),
    ("What is the chemical symbol for sodium?", ("S", "So", "Na", "Sd"), "C",
     "Sodium's symbol comes from its Latin name natrium."),
)

# "answer ... X": a capital letter may be followed by more text ("The answer is (C) because");
# a lower-case one only by punctuation or the end of the line, since "the answer is a bit
# subtle" must not read as choice A.
_EXPLICIT = (
    re.compile(r"(?i:answer)\s*(?:(?i:is)|:)?\s*(?:(?i:option|choice)\s*)?[:\-]?\s*"
               r"[\(\[\*]*\s*([A-J])(?![\w'])"),
    re.compile(r"(?im:answer\s*(?:is|:)\s*[\(\[\*]*\s*([a-j])\s*[\)\]\*]*\s*(?:[.!,;]|$))"),
)
_BOLD = re.compile(r"\*\*\s*\(?([A-J])\)?[.:)]?\s*\*\*")
_PARENTHESISED = re.compile(r"\(([A-J])\)")
_LINE_START = re.compile(r"(?m)^\s*([A-J])[.):](?:\s|$)")
_LONE = re.compile(r"\s*[\(\[\*]*\s*([A-Ja-j])\s*[\)\]\*]*\s*[.!]?\s*")


class MMLUTask(Task):
    """Multiple-choice questions; ``meta["choices"]`` holds the options, ``answer`` a letter."""

    family = "mmlu"

    def __init__(self, questions: Sequence[Question], name: str = "mmlu") -> None:
        self.name = name
        self.questions = list(questions)

    @classmethod
    def from_file(cls, path: str | Path, name: str = "mmlu") -> MMLUTask:
        """Load JSONL (question, choices|options list, answer letter or index) or MMLU's CSV
        layout (question, A, B, C, D, answer; no header, or a header naming those columns).
        Malformed rows raise a ConfigError naming the file and line."""
        file = existing_file(path)
        if file.suffix.lower() == ".csv":
            questions = _csv_questions(file)
        else:
            questions = [_question(f"{file}:{line}", row, f"{file.stem}-{line}")
                         for line, row in read_jsonl(file)]
        if not questions:
            raise ConfigError(f"{file}: holds no questions")
        return cls(questions, name=name)

    def prompt(self, question: Question, style: str = "zero-shot") -> list[Message]:
        examples = [(format_question(text, choices), f"{why} The answer is ({letter}).")
                    for text, choices, letter, why in _EXAMPLES_RAW]
        return chat_prompt(_INSTRUCTION, format_question(question.text, question.meta["choices"]),
                           examples_for(style, examples))

    def extract(self, question: Question, text: str) -> str | None:
        return extract_choice(text, question.meta["choices"])

    def check(self, question: Question, answer: str | None) -> bool:
        return answer is not None and answer == question.answer


def format_question(text: str, choices: Sequence[str]) -> str:
    """The question followed by one "A. choice" line per option."""
    lines = [text.strip()] + [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices)]
    return "\n".join(lines)


def extract_choice(text: str, choices: Sequence[str]) -> str | None:
    """The chosen letter ("A".."J") in a reply, or None.

    Tries, in order: an explicit statement ("The answer is (C)", "answer: b", "Answer: **D**"), a
    bold letter ("**D**"), a parenthesised letter ("(B)"), a letter opening a line ("B."), a
    reply that is a lone letter, and finally a choice's text quoted in the reply (the one
    mentioned last). Later occurrences win within a rule, because replies reason first and
    conclude last. Letters beyond the number of choices are ignored.
    """
    valid = LETTERS[:len(choices)]
    lone = _LONE.fullmatch(text)
    if lone and lone.group(1).upper() in valid:
        return lone.group(1).upper()
    for patterns in (_EXPLICIT, (_BOLD,), (_PARENTHESISED,), (_LINE_START,)):
        found = sorted((m.start(), m.group(1).upper())
                       for pattern in patterns for m in pattern.finditer(text))
        letters = [letter for _, letter in found if letter in valid]
        if letters:
            return letters[-1]
    return _quoted_choice(text, choices)


def _quoted_choice(text: str, choices: Sequence[str]) -> str | None:
    folded = text.casefold()
    best: tuple[int, int] | None = None  # (end of last mention, length) of the best choice
    best_index = -1
    for index, choice in enumerate(choices):
        needle = str(choice).strip().casefold()
        if not needle:
            continue
        pattern = re.compile(r"(?<!\w)" + re.escape(needle) + r"(?!\w)")
        ends = [m.end() for m in pattern.finditer(folded)]
        if not ends:
            continue
        # the last-mentioned choice wins; at the same end the longer one ("not true" > "true")
        key = (ends[-1], len(needle))
        if best is None or key > best:
            best, best_index = key, index
    return LETTERS[best_index] if best is not None else None


def _answer_letter(where: str, answer: Any, n_choices: int) -> str:
    if isinstance(answer, bool):
        answer = None
    if isinstance(answer, int) or (isinstance(answer, str) and answer.strip().isdigit()):
        index = int(answer)
        if 0 <= index < n_choices:
            return LETTERS[index]
    elif isinstance(answer, str) and answer.strip().upper() in LETTERS[:n_choices] \
            and answer.strip():
        return answer.strip().upper()
    raise ConfigError(f"{where}: answer {answer!r} is neither a letter A-{LETTERS[n_choices - 1]} "
                      f"nor an index 0-{n_choices - 1}")


def _make_question(where: str, qid: str, text: Any, choices: Any, answer: Any,
                   meta: dict[str, Any]) -> Question:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: needs a non-empty 'question' string")
    if not isinstance(choices, (list, tuple)) or not 2 <= len(choices) <= len(LETTERS):
        raise ConfigError(f"{where}: needs a list of 2-{len(LETTERS)} choices")
    choices = [str(choice) for choice in choices]
    letter = _answer_letter(where, answer, len(choices))
    return Question(qid=qid, text=text, answer=letter, meta={**meta, "choices": choices})


def _question(where: str, row: dict[str, Any], default_id: str) -> Question:
    choices = row.get("choices", row.get("options"))
    if "answer" not in row:
        raise ConfigError(f"{where}: needs an 'answer' (letter or index)")
    meta: dict[str, Any] = {key: row[key] for key in ("subject", "category") if key in row}
    qid = str(row.get("id", row.get("question_id", default_id)))
    return _make_question(where, qid, row.get("question"), choices, row["answer"], meta)


def _csv_questions(file: Path) -> list[Question]:
    questions = []
    with file.open(encoding="utf-8", newline="") as handle:
        for line, cells in enumerate(csv.reader(handle), start=1):
            if not cells or not any(cell.strip() for cell in cells):
                continue
            if line == 1 and cells[0].strip().lower() == "question" \
                    and cells[-1].strip().lower() == "answer":
                continue
            where = f"{file}:{line}"
            if len(cells) < 4:
                raise ConfigError(f"{where}: expected columns question, A, B, ..., answer; "
                                  f"got {len(cells)} column(s)")
            questions.append(_make_question(where, f"{file.stem}-{line}", cells[0], cells[1:-1],
                                            cells[-1], {"subject": file.stem}))
    return questions
