"""load_task: names to tasks, options, deterministic subsampling."""

from __future__ import annotations

import json

import pytest

from pytts.errors import ConfigError
from pytts.tasks import ArithTask, HumanEvalTask, MathTask, MMLUTask, load_task
from pytts.tasks.registry import subsample


@pytest.fixture
def math_file(tmp_path):
    file = tmp_path / "math.jsonl"
    file.write_text("\n".join(json.dumps({"problem": f"p{i}", "answer": str(i)})
                              for i in range(50)))
    return file


def test_each_name_loads_its_task(math_file, tmp_path):
    mmlu = tmp_path / "mmlu.csv"
    mmlu.write_text("q,a,b,c,d,A\n")
    assert isinstance(load_task("math", path=math_file), MathTask)
    assert isinstance(load_task("mmlu", path=mmlu), MMLUTask)
    assert isinstance(load_task("humaneval", n=3), HumanEvalTask)
    arith = load_task("arith", n=7, seed=2, difficulty=2)
    assert isinstance(arith, ArithTask) and len(arith.questions) == 7
    assert arith.difficulty == 2


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="math, mmlu, humaneval, arith"):
        load_task("gsm8k")


def test_path_rules(math_file):
    with pytest.raises(ConfigError, match="path="):
        load_task("math")
    with pytest.raises(ConfigError, match="path="):
        load_task("mmlu")
    with pytest.raises(ConfigError, match="generated"):
        load_task("arith", path=math_file)


def test_misspelt_option_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="difficuly.*difficulty"):
        load_task("arith", difficuly=2)


def test_subsample_is_seeded_ordered_and_sized(math_file):
    a = load_task("math", path=math_file, n=10, seed=1)
    b = load_task("math", path=math_file, n=10, seed=1)
    c = load_task("math", path=math_file, n=10, seed=2)
    ids = [int(q.answer) for q in a.questions]
    assert len(ids) == 10 and ids == sorted(ids)
    assert ids == [int(q.answer) for q in b.questions]
    assert ids != [int(q.answer) for q in c.questions]
    assert ids != list(range(10))  # spread over the file, not its head
    assert len(load_task("math", path=math_file, n=500).questions) == 50


def test_subsample_leaves_the_full_task_usable(math_file):
    full = MathTask.from_file(math_file)
    part = subsample(full, 5, seed=0)
    assert len(full.questions) == 50 and len(part.questions) == 5
    assert part.check(part.questions[0], part.questions[0].answer)


def test_nonpositive_n_is_a_config_error(math_file):
    with pytest.raises(ConfigError):
        load_task("math", path=math_file, n=0)
