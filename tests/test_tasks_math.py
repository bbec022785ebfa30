"""MATH task: answer extraction, normalisation for voting, math-verify equivalence, loading."""

from __future__ import annotations

import json
import threading

import pytest

from pytts.errors import ConfigError
from pytts.tasks import MathTask, math_equal, normalize_math_answer
from pytts.tasks.base import Question
from pytts.tasks.math import extract_math_answer, last_boxed

QUESTION = Question(qid="q", text="What is 1/2?", answer="\\frac{1}{2}")


@pytest.mark.parametrize("text, expected", [
    ("so the result is \\boxed{5}.", "5"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("nested \\boxed{\\sqrt{\\frac{a}{b}}} done", "\\sqrt{\\frac{a}{b}}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\fbox{12}", "12"),
    ("brace-less \\boxed 7.", "7"),
    ("\\boxed{ {1, 2} }", " {1, 2} "),
    ("The answer is $\\dfrac{3}{4}$.", "\\dfrac{3}{4}"),
    ("Therefore, the final answer is: 42.", "42"),
    ("I think the answer is 3. No wait, the answer is 4.", "4"),
    ("\\boxed{unclosed but the answer is 9", "9"),
    ("no final answer here", None),
    ("", None),
])
def test_extract_math_answer_finds_the_last_boxed_or_stated_answer(text, expected):
    assert extract_math_answer(text) == expected


def test_last_boxed_returns_none_when_the_box_never_closes():
    assert last_boxed("\\boxed{\\frac{1}{2}") is None


@pytest.mark.parametrize("raw, canonical", [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\tfrac{1}{2}", "\\frac{1}{2}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"),
    ("$5$.", "5"),
    (" 5 ", "5"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("90^\\circ", "90"),
    ("10\\%", "10"),
    ("5 \\text{ cm}", "5"),
    ("\\text{(B)}", "(B)"),
    (".5", "0.5"),
    ("1,000", "1000"),
    ("x = 3", "3"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("3\\,000", "3000"),
    ("\\$4.50", "4.50"),
])
def test_normalize_math_answer_table(raw, canonical):
    assert normalize_math_answer(raw) == canonical


def test_equivalent_spellings_normalise_to_one_vote():
    spellings = ["\\boxed{\\dfrac{1}{2}}", "\\boxed{\\frac12}", "The answer is $1/2$.",
                 "\\boxed{\\left.\\frac{1}{2}\\right.}"]
    task = MathTask([QUESTION])
    assert {task.extract(QUESTION, s) for s in spellings} == {"\\frac{1}{2}"}


@pytest.mark.parametrize("reference, answer", [
    ("\\frac{1}{2}", "0.5"),
    ("0.5", "1/2"),
    ("\\frac{1}{2}", "1/2"),
    ("1/2", "\\dfrac{1}{2}"),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("3", "3.0"),
    ("\\{1,2\\}", "\\{2,1\\}"),
])
def test_math_equal_accepts_equivalent_answers(reference, answer):
    assert math_equal(reference, answer)


@pytest.mark.parametrize("reference, answer", [
    ("0.5", "0.51"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("3", "-3"),
    ("\\sqrt{2}", "2"),
    ("5", ""),
])
def test_math_equal_rejects_different_answers(reference, answer):
    assert not math_equal(reference, answer)


def test_check_works_off_the_main_thread():
    # math-verify's default timeout uses signal.alarm, which raises off the main thread; the
    # evaluator runs checks in worker threads.
    task = MathTask([QUESTION])
    outcome: list[bool] = []
    worker = threading.Thread(target=lambda: outcome.append(task.check(QUESTION, "0.5")))
    worker.start()
    worker.join()
    assert outcome == [True]


def test_check_of_a_missing_answer_is_false():
    assert not MathTask([QUESTION]).check(QUESTION, None)


def test_prompt_styles():
    task = MathTask([QUESTION])
    zero = task.prompt(QUESTION)
    few = task.prompt(QUESTION, "few-shot")
    assert [m["role"] for m in zero] == ["system", "user"]
    assert zero[-1]["content"] == QUESTION.text and "\\boxed" in zero[0]["content"]
    assert len(few) > len(zero) and few[-1] == zero[-1]
    assert all("\\boxed" in m["content"] for m in few if m["role"] == "assistant")
    with pytest.raises(ConfigError):
        task.prompt(QUESTION, "three-shot")


def _write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_from_file_reads_answers_and_boxed_solutions(tmp_path):
    file = _write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "1+1?", "answer": "2", "level": "Level 1"},
        {"question": "Half of 1?", "solution": "It is \\boxed{\\frac{1}{2}}.",
         "unique_id": "test/1.json"},
        "",
        {"problem": "3*3?", "answer": 9},
    ])
    task = MathTask.from_file(file)
    assert [q.answer for q in task.questions] == ["2", "\\frac{1}{2}", "9"]
    assert task.questions[1].qid == "test/1.json"
    assert task.questions[0].meta["level"] == "Level 1"
    assert task.check(task.questions[1], "0.5")


@pytest.mark.parametrize("bad_row, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"answer": "2"}), "problem"),
    (json.dumps({"problem": "x", "solution": "no box here"}), "boxed"),
    (json.dumps({"problem": "x"}), "answer"),
    (json.dumps({"problem": "x", "answer": ["2"]}), "string or number"),
])
def test_malformed_rows_name_the_file_and_line(tmp_path, bad_row, message):
    file = _write_jsonl(tmp_path / "bad.jsonl", [{"problem": "1+1?", "answer": "2"}, bad_row])
    with pytest.raises(ConfigError) as error:
        MathTask.from_file(file)
    assert f"{file}:2" in str(error.value) and message in str(error.value)


def test_missing_and_empty_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.jsonl"):
        MathTask.from_file(tmp_path / "nowhere.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="no problems"):
        MathTask.from_file(tmp_path / "empty.jsonl")


def _parquet_engine() -> bool:
    try:
        import pyarrow  # noqa: F401
        return True
    except ImportError:
        try:
            import pandas  # noqa: F401
            return True
        except ImportError:
            return False


@pytest.mark.skipif(_parquet_engine(), reason="a Parquet engine is installed")
def test_parquet_without_an_engine_says_what_to_install(tmp_path):
    file = tmp_path / "math.parquet"
    file.write_bytes(b"PAR1")
    with pytest.raises(ConfigError, match="pip install pyarrow"):
        MathTask.from_file(file)


@pytest.mark.skipif(not _parquet_engine(), reason="needs pyarrow or pandas")
def test_parquet_rows_load_like_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    file = tmp_path / "math.parquet"
    pq.write_table(pa.table({"problem": ["1+1?"], "solution": ["\\boxed{2}"]}), file)
    assert MathTask.from_file(file).questions[0].answer == "2"
