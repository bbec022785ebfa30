"""HumanEval task: packaged problems, code extraction and normalisation, sandboxed checking."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from pytts.errors import ConfigError
from pytts.tasks import HumanEvalTask


@pytest.fixture(scope="module")
def task() -> HumanEvalTask:
    return HumanEvalTask.from_file()


@pytest.fixture(scope="module")
def first(task):
    return task.questions[0]  # has_close_elements


FULL_REPLY = '''Here is my solution:

```python
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """Check pairs."""
    # compare every pair
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False


if __name__ == "__main__":
    print(has_close_elements([1.0, 2.0], 0.5))
```
It compares all pairs.'''

WRONG_REPLY = """```python
def has_close_elements(numbers, threshold):
    return False
```"""


def test_loads_the_164_packaged_problems(task):
    assert len(task.questions) == 164
    assert len({q.qid for q in task.questions}) == 164
    assert task.questions[0].qid == "HumanEval/0"
    assert all(q.meta["entry_point"] and "def check" in q.meta["test"] for q in task.questions)


def test_prompt_shows_the_stub_in_a_python_block(task, first):
    messages = task.prompt(first)
    assert messages[-1]["content"] == f"```python\n{first.meta['prompt']}```"
    assert "```python" in messages[0]["content"]
    assert len(task.prompt(first, "few-shot")) == len(messages) + 2


def test_full_function_and_body_continuation_vote_as_one_program(task, first):
    from_reply = task.extract(first, FULL_REPLY)
    from_body = task.extract(first, first.answer)
    assert from_reply == from_body
    assert from_reply.startswith("def has_close_elements(")
    assert "#" not in from_reply and '"""' not in from_reply and "__main__" not in from_reply
    assert "from typing import List" not in from_reply  # the prompt already has it


def test_formatting_differences_normalise_away_but_logic_does_not(task, first):
    spaced = ("```python\ndef has_close_elements(numbers,threshold) :\n\n"
              "    return   False  # x\n```")
    assert task.extract(first, spaced) == task.extract(first, WRONG_REPLY)
    assert task.extract(first, WRONG_REPLY) != task.extract(first, FULL_REPLY)


@pytest.mark.parametrize("reply", [
    "```py\ndef has_close_elements(numbers, threshold):\n    return True\n```",
    "```\ndef has_close_elements(numbers, threshold):\n    return True\n```",
    "Sure.\ndef has_close_elements(numbers, threshold):\n    return True\n",
    "```python\nimport math\n```\n```python\ndef has_close_elements(numbers, threshold):\n"
    "    return True\n```",
])
def test_code_is_found_in_fenced_or_bare_replies(task, first, reply):
    expected = "def has_close_elements(numbers, threshold):\n    return True"
    assert task.extract(first, reply) == expected


def test_unparseable_code_is_whitespace_normalised(task, first):
    reply = "```python\ndef has_close_elements(numbers:\n\n    return   \n```"
    assert task.extract(first, reply) == "def has_close_elements(numbers:\n    return"
    assert not task.check(first, task.extract(first, reply))


def test_empty_reply_extracts_nothing(task, first):
    assert task.extract(first, "") is None
    assert task.extract(first, "```python\n\n```") is None
    assert not task.check(first, None)


@pytest.mark.parametrize("index", [0, 10, 32, 38, 163])
def test_canonical_solution_passes_the_sandboxed_check(task, index):
    question = task.questions[index]
    assert task.check(question, task.extract(question, question.answer))


def test_incorrect_solutions_fail_the_check(task, first):
    assert not task.check(first, task.extract(first, WRONG_REPLY))
    cheat = "```python\nimport sys\nsys.exit(0)\n```"
    assert not task.check(first, task.extract(first, cheat))
    stub = f"```python\n{first.meta['prompt']}```"
    assert not task.check(first, task.extract(first, stub))


@pytest.mark.parametrize("line", ["sys.modules['__main__']._exit(0)",
                                  "__import__('__main__')._exit(0)"])
def test_a_reply_that_exits_before_the_hidden_tests_does_not_pass(task, first, line):
    # issue 10, item 1: the runner's __main__ held the real os._exit
    forged = f"```python\nimport sys\n{line}\n```"
    assert not task.check(first, task.extract(first, forged))
    inside = ("```python\nimport sys\ndef has_close_elements(numbers, threshold):\n"
              f"    return False\n{line}\n```")
    assert not task.check(first, task.extract(first, inside))


def test_a_hanging_solution_times_out_as_a_failure(first):
    quick = HumanEvalTask([first], timeout_s=1.0)
    hang = ("```python\ndef has_close_elements(numbers, threshold):\n"
            "    while True:\n        pass\n```")
    assert not quick.check(first, quick.extract(first, hang))


@pytest.mark.slow
def test_every_canonical_solution_passes(task):
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda q: task.check(q, task.extract(q, q.answer)),
                                 task.questions))
    assert [q.qid for q, ok in zip(task.questions, outcomes) if not ok] == []


def test_loader_reports_the_bad_line(tmp_path):
    good = {"task_id": "T/0", "prompt": "def f():\n", "entry_point": "f",
            "test": "def check(c):\n    pass\n", "canonical_solution": "    return 1\n"}
    file = tmp_path / "he.jsonl"
    file.write_text(json.dumps(good) + "\n" + json.dumps({**good, "entry_point": None}) + "\n")
    with pytest.raises(ConfigError) as error:
        HumanEvalTask.from_file(file)
    assert f"{file}:2" in str(error.value) and "entry_point" in str(error.value)
    file.write_text(json.dumps(good) + "\n")
    loaded = HumanEvalTask.from_file(file)
    assert loaded.check(loaded.questions[0], loaded.extract(loaded.questions[0], "    return 1\n"))
