"""MATH-style competition problems: boxed-answer extraction, a normalised form for voting, and
equivalence checking with math-verify (so 1/2, 0.5 and \\frac{1}{2} agree)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..llm.base import Message
from .base import Question, Task, chat_prompt, examples_for, existing_file, read_jsonl

_INSTRUCTION = ("Solve the math problem step by step. "
                "Write the final answer in \\boxed{}, e.g. \\boxed{42}.")

_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is $\\sqrt{36} + 2^3$?",
     "$\\sqrt{36} = 6$ and $2^3 = 8$, so the sum is $6 + 8 = 14$. The answer is $\\boxed{14}$."),
    ("Simplify $\\frac{18}{24}$.",
     "Both numbers are divisible by 6: $\\frac{18}{24} = \\frac{3}{4}$. "
     "The answer is $\\boxed{\\frac{3}{4}}$."),
    ("Solve for $x$: $3x - 5 = 16$.",
     "Adding 5 gives $3x = 21$, so $x = 7$. The answer is $\\boxed{7}$."),
)

# Longer answers are not worth a symbolic comparison: sympy can take unbounded time on them, and
# math-verify's own timeout (signal.alarm) only works on the main thread.
_MAX_VERIFY_CHARS = 200

_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*", re.IGNORECASE)
# "The answer is 5. Let me check" ends at ". "; LaTeX answers hardly ever contain one.
_SENTENCE_END = re.compile(r"\.\s|\n")
_BOX_COMMANDS = ("\\boxed", "\\fbox")


class MathTask(Task):
    """MATH-style problems whose reference answer is a LaTeX expression.

    ``questions`` carry the problem text and the reference answer string; ``meta`` keeps the
    full solution and any level/type fields of the source.
    """

    family = "math"
    slow_check = True

    def __init__(self, questions: Sequence[Question], name: str = "math") -> None:
        self.name = name
        self.questions = list(questions)

    @classmethod
    def from_file(cls, path: str | Path, name: str = "math") -> MathTask:
        """Load a JSONL or Parquet file with fields problem|question and answer|solution.

        A row with only a solution takes the last ``\\boxed{}`` of it as the answer. Malformed
        rows raise a ConfigError naming the file and line (or row).
        """
        file = existing_file(path)
        if file.suffix.lower() in (".parquet", ".pq"):
            rows: Iterable[tuple[str, dict[str, Any]]] = _parquet_rows(file)
        else:
            rows = ((f"{file}:{line}", row) for line, row in read_jsonl(file))
        questions = [_question(where, row, f"{file.stem}-{index}")
                     for index, (where, row) in enumerate(rows)]
        if not questions:
            raise ConfigError(f"{file}: holds no problems")
        return cls(questions, name=name)

    def prompt(self, question: Question, style: str = "zero-shot") -> list[Message]:
        return chat_prompt(_INSTRUCTION, question.text, examples_for(style, _EXAMPLES))

    def extract(self, question: Question, text: str) -> str | None:
        raw = extract_math_answer(text)
        if raw is None:
            return None
        canonical = normalize_math_answer(raw)
        return canonical or None

    def check(self, question: Question, answer: str | None) -> bool:
        if answer is None:
            return False
        return math_equal(str(question.answer), answer)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, with nested
    braces balanced; also accepts the brace-less form ``\\boxed 5``. None when absent or
    unclosed."""
    start = max(text.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    rest = text[start:]
    rest = rest[next(len(c) for c in _BOX_COMMANDS if rest.startswith(c)):]
    if rest.startswith(" ") and not rest.lstrip().startswith("{"):
        token = rest.split(maxsplit=1)
        return token[0].rstrip(".$") if token else None
    rest = rest.lstrip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for index, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:index]
    return None


def extract_math_answer(text: str) -> str | None:
    """The raw final answer of a solution: the last ``\\boxed{}``, else what follows the last
    "the answer is" on its line. None when neither is present."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    answer = _SENTENCE_END.split(rest, maxsplit=1)[0].strip().rstrip(".").strip()
    if answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$")
    return answer or None


def normalize_math_answer(answer: str) -> str:
    """A canonical string for an answer, so answers written differently vote together.

    Removes dollars, spaces, ``\\left``/``\\right``, spacing commands, degree signs, percent
    signs, ``\\text{}`` wrappers, trailing units and periods; rewrites ``\\dfrac``/``\\tfrac``
    to ``\\frac``, ``\\frac12`` to ``\\frac{1}{2}``, ``a/b`` of integers to ``\\frac{a}{b}``,
    ``\\sqrt2`` to ``\\sqrt{2}``, ``.5`` to ``0.5``, ``1,000`` to ``1000``, ``x = 3`` to ``3``.
    Equal outputs mean equal answers; different outputs may still be equivalent (check() asks
    math-verify for those).
    """
    s = answer.strip().replace("\n", " ")
    for old, new in (("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", " "),
                     ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left.", ""),
                     ("\\right.", ""), ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""),
                     ("^\\circ", ""), ("\\$", ""),
                     ("$", ""), ("\\%", ""), ("%", ""), ("\\displaystyle", "")):
        s = s.replace(old, new)
    # "5 \text{ cm}": a unit introduced by a spaced \text on the right is not part of the value.
    s = re.sub(r"\s*\\(?:text|mbox)\{\s[^{}]*\}\s*$", "", s)
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}", r"\1", s)
    s = s.strip().rstrip(".").strip()
    lhs, eq, rhs = s.partition("=")
    if eq and "=" not in rhs and len(lhs.strip()) <= 2:
        s = rhs.strip()
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    if re.fullmatch(r"-?\d+/\d+", s):
        numerator, denominator = s.split("/")
        s = f"\\frac{{{numerator}}}{{{denominator}}}"
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"(^|[^\d])\.(\d)", r"\g<1>0.\2", s)
    return s


def math_equal(reference: str, answer: str) -> bool:
    """Whether ``answer`` equals ``reference`` as mathematics: normalised strings first (cheap),
    then math-verify's symbolic and numeric comparison."""
    gold, candidate = normalize_math_answer(reference), normalize_math_answer(answer)
    if gold == candidate:
        return True
    if not candidate or len(candidate) > _MAX_VERIFY_CHARS:
        return False
    try:
        from math_verify import parse, verify
    except ImportError as exc:
        raise ConfigError("checking MATH answers needs math-verify: "
                          "pip install 'math-verify>=0.7' (or pytts[math])") from exc
    # signal.alarm-based timeouts raise off the main thread, where evaluators run checks.
    on_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if on_main else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        candidate_parsed = parse(f"${candidate}$", parsing_timeout=timeout)
        if not gold_parsed or not candidate_parsed:
            return False
        return bool(verify(gold_parsed, candidate_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify surfaces sympy's many failure types; unparseable = wrong
        return False


def _question(where: str, row: dict[str, Any], default_id: str) -> Question:
    problem = row.get("problem", row.get("question"))
    if not isinstance(problem, str) or not problem.strip():
        raise ConfigError(f"{where}: needs a non-empty 'problem' (or 'question') string")
    solution = row.get("solution")
    answer = row.get("answer")
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        if not isinstance(solution, str):
            raise ConfigError(f"{where}: needs an 'answer', or a 'solution' with \\boxed{{}}")
        answer = last_boxed(solution)
        if answer is None:
            raise ConfigError(f"{where}: the solution has no \\boxed{{...}} answer; "
                              "add an 'answer' field")
    if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
        raise ConfigError(f"{where}: 'answer' must be a string or number, "
                          f"got {type(answer).__name__}")
    qid = row.get("unique_id", row.get("id", default_id))
    meta: dict[str, Any] = {key: row[key] for key in ("solution", "level", "type", "subject")
                            if key in row}
    return Question(qid=str(qid), text=problem, answer=str(answer), meta=meta)


def _parquet_rows(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as parquet
        records = parquet.read_table(file).to_pylist()
    except ImportError:
        try:
            import pandas
            records = pandas.read_parquet(file).to_dict("records")
        except ImportError:
            raise ConfigError(f"{file}: reading Parquet needs pyarrow: pip install pyarrow "
                              "(or convert the file to JSONL)") from None
        except Exception as exc:  # pandas re-raises its engine's errors untyped
            raise ConfigError(f"{file}: not a readable Parquet file ({exc})") from exc
    except Exception as exc:  # pyarrow's ArrowInvalid and friends
        raise ConfigError(f"{file}: not a readable Parquet file ({exc})") from exc
    for index, record in enumerate(records):
        yield f"{file} row {index}", record
