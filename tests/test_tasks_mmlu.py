"""MMLU task: lettered prompts, letter extraction from free-form replies, loaders."""

from __future__ import annotations

import json

import pytest

from pytts.errors import ConfigError
from pytts.tasks import MMLUTask
from pytts.tasks.base import Question
from pytts.tasks.mmlu import extract_choice

CHOICES = ["Paris", "London", "Berlin", "Madrid"]
QUESTION = Question(qid="q", text="Capital of Germany?", answer="C", meta={"choices": CHOICES})


@pytest.mark.parametrize("reply, letter", [
    ("(B)", "B"),
    ("B.", "B"),
    ("B", "B"),
    ("b", "B"),
    ("  d. ", "D"),
    ("**D**", "D"),
    ("answer: b", "B"),
    ("Answer: **D**", "D"),
    ("The answer is (C).", "C"),
    ("The Answer Is: C", "C"),
    ("answer is (a)", "A"),
    ("The correct answer is option B because it is.", "B"),
    ("Let me think. (A) is wrong and (B) is wrong. The answer is (C).", "C"),
    ("The answer is a bit subtle. (A) is wrong; (B) is right.", "B"),
    ("Option A is wrong. Option B too. So (C)", "C"),
    ("A) Paris\nB) London\nB.", "B"),
    ("Berlin", "C"),
    ("The answer is Berlin", "C"),
    ("Not Paris or London: it is berlin.", "C"),
    ("E", None),
    ("The answer is (E).", None),
    ("I am not sure.", None),
    ("", None),
])
def test_extract_choice_table(reply, letter):
    assert extract_choice(reply, CHOICES) == letter


def test_choice_text_prefers_the_longer_choice_at_the_same_place():
    assert extract_choice("It is not true.", ["true", "not true"]) == "B"


def test_ten_choices_allow_letters_up_to_j():
    choices = [str(i) for i in range(10)]
    assert extract_choice("The answer is (J).", choices) == "J"
    assert extract_choice("The answer is (J).", choices[:4]) is None


def test_prompt_lists_lettered_choices_and_few_shot_examples():
    task = MMLUTask([QUESTION])
    zero = task.prompt(QUESTION)
    assert zero[-1]["content"].splitlines() == ["Capital of Germany?", "A. Paris", "B. London",
                                                "C. Berlin", "D. Madrid"]
    few = task.prompt(QUESTION, "few-shot")
    answers = [m["content"] for m in few if m["role"] == "assistant"]
    assert answers and all(a.endswith(").") and "The answer is (" in a for a in answers)


def test_check_compares_letters():
    task = MMLUTask([QUESTION])
    assert task.check(QUESTION, task.extract(QUESTION, "The answer is (C)."))
    assert not task.check(QUESTION, "B")
    assert not task.check(QUESTION, None)


def test_jsonl_loader_accepts_letters_indices_and_options(tmp_path):
    file = tmp_path / "mmlu.jsonl"
    rows = [{"question": "q1", "choices": ["a", "b", "c", "d"], "answer": "b"},
            {"question": "q2", "choices": ["a", "b", "c", "d"], "answer": 3, "subject": "law"},
            {"question": "q3", "options": [str(i) for i in range(10)], "answer": "J",
             "question_id": 7}]
    file.write_text("\n".join(json.dumps(r) for r in rows))
    task = MMLUTask.from_file(file)
    assert [q.answer for q in task.questions] == ["B", "D", "J"]
    assert task.questions[1].meta == {"subject": "law", "choices": ["a", "b", "c", "d"]}
    assert task.questions[2].qid == "7"


def test_csv_loader_reads_mmlu_layout_with_or_without_header(tmp_path):
    plain = tmp_path / "astronomy_test.csv"
    plain.write_text('"What orbits, the Earth?",Moon,Sun,Mars,Venus,A\nBiggest?,a,b,c,d,D\n')
    task = MMLUTask.from_file(plain)
    assert [q.text for q in task.questions] == ["What orbits, the Earth?", "Biggest?"]
    assert task.questions[0].meta["choices"] == ["Moon", "Sun", "Mars", "Venus"]
    assert task.questions[0].meta["subject"] == "astronomy_test"
    headed = tmp_path / "headed.csv"
    headed.write_text("question,A,B,C,D,answer\nq,a,b,c,d,C\n")
    assert [q.answer for q in MMLUTask.from_file(headed).questions] == ["C"]


@pytest.mark.parametrize("line, message", [
    ("q,a,b", "columns"),
    ("q,a,b,c,d,Z", "neither a letter"),
    ("q,a,b,c,d,7", "neither a letter"),
    (",a,b,c,d,A", "question"),
])
def test_malformed_csv_rows_name_the_file_and_line(tmp_path, line, message):
    file = tmp_path / "bad.csv"
    file.write_text(f"q,a,b,c,d,A\n{line}\n")
    with pytest.raises(ConfigError) as error:
        MMLUTask.from_file(file)
    assert f"{file}:2" in str(error.value) and message in str(error.value)


@pytest.mark.parametrize("row, message", [
    ({"question": "q", "choices": ["a"], "answer": "A"}, "choices"),
    ({"question": "q", "choices": "abcd", "answer": "A"}, "choices"),
    ({"question": "q", "choices": ["a", "b"]}, "answer"),
    ({"question": "q", "choices": ["a", "b"], "answer": True}, "neither a letter"),
    ({"choices": ["a", "b"], "answer": "A"}, "question"),
])
def test_malformed_jsonl_rows_name_the_file_and_line(tmp_path, row, message):
    file = tmp_path / "bad.jsonl"
    good = {"question": "q", "choices": ["a", "b"], "answer": "A"}
    file.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ConfigError) as error:
        MMLUTask.from_file(file)
    assert f"{file}:2" in str(error.value) and message in str(error.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="missing.csv"):
        MMLUTask.from_file(tmp_path / "missing.csv")
