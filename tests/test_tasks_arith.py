"""Arithmetic word problems: seeded generation, correct answers, prompts, extraction."""

from __future__ import annotations

import re

import pytest

from pytts.errors import ConfigError
from pytts.tasks import ArithTask
from pytts.tasks.arith import apply_steps, extract_number, worked_solution


def _solve_from_text(text: str) -> int:
    """Recompute an answer by reading the problem text itself (independent of meta)."""
    value = None
    boxes = re.match(r"\w+ buys (\d+) boxes with (\d+) \w+ in each box", text)
    if boxes:
        value = int(boxes.group(1)) * int(boxes.group(2))
    else:
        value = int(re.match(r"\w+ has (\d+) ", text).group(1))
    factors = {"doubles": 2, "triples": 3, "quadruples": 4}
    for match in re.finditer(r"buys (\d+) more|gives away (\d+)|(doubles|triples|quadruples) "
                             r"them|into (\d+) bags", text):
        more, less, times, bags = match.groups()
        if more:
            value += int(more)
        elif less:
            value -= int(less)
        elif times:
            value *= factors[times]
        else:
            assert value % int(bags) == 0
            value //= int(bags)
    return value


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_answers_match_the_problem_text(difficulty):
    task = ArithTask(n=200, seed=3, difficulty=difficulty)
    for question in task.questions:
        assert isinstance(question.answer, int) and question.answer >= 0
        assert _solve_from_text(question.text) == question.answer, question.text
        assert apply_steps(question.meta["start"], question.meta["steps"]) == question.answer


def test_difficulty_one_is_single_digit_addition():
    for question in ArithTask(n=100, seed=0, difficulty=1).questions:
        numbers = [int(x) for x in re.findall(r"\d+", question.text)]
        assert len(numbers) == 2 and all(1 <= x <= 9 for x in numbers)
        assert re.fullmatch(r"\w+ has \d \w+ and buys \d more\. How many \w+ does (he|she) have "
                            r"now\?", question.text)


def test_higher_difficulty_means_more_steps_and_bigger_numbers():
    def mean_steps(d):
        qs = ArithTask(n=100, seed=0, difficulty=d).questions
        return sum(len(q.meta["steps"]) for q in qs) / len(qs)
    assert mean_steps(1) < mean_steps(3) < mean_steps(5)
    assert max(q.answer for q in ArithTask(n=100, seed=0, difficulty=1).questions) <= 18
    assert any(q.answer > 100 for q in ArithTask(n=100, seed=0, difficulty=4).questions)
    assert any(op == "/" for q in ArithTask(n=100, seed=0, difficulty=5).questions
               for op, _ in q.meta["steps"])


def test_same_seed_same_questions_and_prefix_property():
    a = ArithTask(n=20, seed=7, difficulty=3)
    b = ArithTask(n=20, seed=7, difficulty=3)
    c = ArithTask(n=20, seed=8, difficulty=3)
    short = ArithTask(n=5, seed=7, difficulty=3)
    assert [q.text for q in a.questions] == [q.text for q in b.questions]
    assert [q.text for q in a.questions] != [q.text for q in c.questions]
    assert [q.text for q in short.questions] == [q.text for q in a.questions[:5]]
    assert [q.qid for q in a.questions] == [f"arith-d3-s7-{i}" for i in range(20)]


def test_few_shot_prompt_shows_correct_worked_examples():
    task = ArithTask(n=3, seed=0, difficulty=2, few_shot=3)
    question = task.questions[0]
    messages = task.prompt(question, "few-shot")
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    for shown, worked in zip(messages[1:-1:2], messages[2:-1:2]):
        stated = int(re.search(r"The answer is (\d+)\.$", worked["content"]).group(1))
        assert stated == _solve_from_text(shown["content"])
    assert messages[-1]["content"] == question.text
    # short enough for a 135M model's context to spare room for the reply
    assert sum(len(m["content"]) for m in messages) / 4 < 400


def test_zero_shot_prompt_asks_for_the_answer_format():
    task = ArithTask(n=1, seed=0)
    messages = task.prompt(task.questions[0])
    assert len(messages) == 2 and "The answer is N." in messages[0]["content"]
    assert ArithTask(n=1, seed=0, few_shot=0).prompt(task.questions[0], "few-shot") == messages


def test_worked_solution_ends_with_the_answer():
    question = ArithTask(n=1, seed=1, difficulty=5).questions[0]
    assert worked_solution(question).endswith(f"The answer is {question.answer}.")


@pytest.mark.parametrize("text, number", [
    ("The answer is 12.", "12"),
    ("the answer is: **12**", "12"),
    ("The answer is 1,234.", "1234"),
    ("answer is -3", "-3"),
    ("The answer is 7.0", "7"),
    ("The answer is 7.5", "7.5"),
    ("3 + 4 = 7", "7"),
    ("5-3 = 2. So he has 2 apples left", "2"),
    ("The answer is 9. Check: 4 + 5 = 9, and 10 is wrong", "9"),
    ("items 3, 4", "4"),
    ("no digits", None),
])
def test_extract_number_table(text, number):
    assert extract_number(text) == number


def test_check_is_exact_integer_equality():
    task = ArithTask(n=1, seed=0)
    question = task.questions[0]
    assert task.check(question, str(question.answer))
    assert task.check(question, task.extract(question, f"... The answer is {question.answer}."))
    assert not task.check(question, str(question.answer + 1))
    assert not task.check(question, f"{question.answer}.5")
    assert not task.check(question, None)


@pytest.mark.parametrize("kwargs", [{"difficulty": 0}, {"difficulty": 6}, {"n": 0},
                                    {"seed": -1}, {"few_shot": -1}])
def test_invalid_parameters_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        ArithTask(**kwargs)
