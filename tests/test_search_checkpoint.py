"""The checkpoint's files: append-only logs that are the source of truth for the history, a small
state file, writes off the event loop, and recovery from torn or uncommitted log lines."""

from __future__ import annotations

import json
import os
import threading

import pytest
from test_search_fakes import FACTORIES, ToyEvaluator, make_searcher

from pytts.errors import ConfigError, PyttsError
from pytts.search import Checkpoint, run_search_sync
from pytts.search import checkpoint as checkpoint_module


def keys_values(history) -> list[tuple]:
    return [(r.key, r.value, r.reused, r.feedback) for r in history]


def straight_run(name: str, n: int):
    return run_search_sync(make_searcher(name, seed=4), ToyEvaluator(), n, batch_size=3)


def checkpointed_run(name: str, n: int, path):
    return run_search_sync(make_searcher(name, seed=4), ToyEvaluator(), n, batch_size=3,
                           checkpoint=path)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_state_file_does_not_grow_with_the_history(name, tmp_path):
    checkpointed_run(name, 6, tmp_path / "short")
    checkpointed_run(name, 30, tmp_path / "long")
    short, long = ((tmp_path / d / "state.json").stat().st_size for d in ("short", "long"))
    histories = [len(Checkpoint.read_history(tmp_path / d)) for d in ("short", "long")]
    assert histories[1] >= 4 * histories[0] > 0
    assert long <= short + 2048, f"state.json grew from {short} to {long} bytes"


@pytest.mark.parametrize("name", ["agent-reinforce", "tpe"])
def test_the_logs_are_only_ever_appended_to(name, tmp_path):
    checkpointed_run(name, 9, tmp_path)
    before = {f: (tmp_path / f).read_bytes() for f in ("history.jsonl", "journal.jsonl")}
    checkpointed_run(name, 21, tmp_path)
    for file, old in before.items():
        new = (tmp_path / file).read_bytes()
        assert len(new) > len(old) and new.startswith(old), file


@pytest.mark.parametrize("name", ["agent-reinforce", "tpe", "random"])
def test_a_torn_last_line_is_dropped_on_resume(name, tmp_path):
    checkpointed_run(name, 9, tmp_path)
    for file in ("history.jsonl", "journal.jsonl"):
        with open(tmp_path / file, "ab") as handle:
            handle.write(b'{"number": 9, "graph": {"templ')
    resumed = checkpointed_run(name, 21, tmp_path)
    straight = straight_run(name, 21)
    assert keys_values(resumed.history) == keys_values(straight.history)
    assert keys_values(Checkpoint.read_history(tmp_path)) == keys_values(straight.history)


@pytest.mark.parametrize("name", ["agent-reinforce", "tpe"])
def test_log_lines_the_state_does_not_count_are_dropped_on_resume(name, tmp_path):
    # A kill between a log append and the state save that counts it leaves extra lines.
    checkpointed_run(name, 9, tmp_path)
    for file in ("history.jsonl", "journal.jsonl"):
        lines = (tmp_path / file).read_text().splitlines(keepends=True)
        with open(tmp_path / file, "a") as handle:
            handle.write(lines[-1])
    resumed = checkpointed_run(name, 21, tmp_path)
    assert keys_values(resumed.history) == keys_values(straight_run(name, 21).history)
    assert len(Checkpoint.read_history(tmp_path)) == len(resumed.history)


def test_a_log_shorter_than_the_state_says_is_refused(tmp_path):
    checkpointed_run("random", 9, tmp_path)
    history = tmp_path / "history.jsonl"
    history.write_text("".join(history.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(ConfigError, match="history.jsonl has 7 complete lines"):
        checkpointed_run("random", 21, tmp_path)


def test_files_are_written_off_the_event_loop_thread(tmp_path, monkeypatch):
    threads = []
    for name in ("fsync", "replace"):
        real = getattr(os, name)

        def spy(*args, _real=real, **kwargs):
            threads.append(threading.current_thread())
            return _real(*args, **kwargs)

        monkeypatch.setattr(checkpoint_module.os, name, spy)
    checkpointed_run("agent-reinforce", 9, tmp_path)
    assert threads and threading.main_thread() not in threads
    assert len(Checkpoint.read_history(tmp_path)) >= 9


def test_a_failed_write_stops_the_search_with_an_error_naming_the_checkpoint(tmp_path,
                                                                             monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.os, "replace", full_disk)
    with pytest.raises(PyttsError, match=f"checkpoint {tmp_path}.*No space left"):
        checkpointed_run("random", 30, tmp_path)
    assert not (tmp_path / "state.json").exists()


def test_logs_left_without_a_state_are_cleared_before_a_new_run(tmp_path):
    (tmp_path / "history.jsonl").write_text('{"number": 0}\n')
    report = checkpointed_run("random", 6, tmp_path)
    assert keys_values(Checkpoint.read_history(tmp_path)) == keys_values(report.history)


def test_a_state_file_from_another_program_is_refused(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"searcher": {}, "run": {}}))
    with pytest.raises(ConfigError, match="not a run_search state"):
        checkpointed_run("random", 6, tmp_path)


def test_a_new_checkpoint_starts_with_what_the_searcher_was_told_before(tmp_path):
    searcher = make_searcher("random", seed=4)
    evaluator = ToyEvaluator()
    for graph in searcher.ask(3):
        searcher.tell(graph, evaluator.result(graph))
    report = run_search_sync(searcher, evaluator, 6, checkpoint=tmp_path)
    assert len(report.history) >= 9
    assert keys_values(Checkpoint.read_history(tmp_path)) == keys_values(report.history)
    resumed = run_search_sync(make_searcher("random", seed=4), evaluator, 6,
                              checkpoint=tmp_path)
    assert keys_values(resumed.history) == keys_values(report.history)
