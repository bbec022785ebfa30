"""A fuzz test of ``pytts search --config``: hypothesis writes TOML with random keys, types and
values; every run either succeeds or exits 2 with one line, and a failed run leaves no run
directory.

Runs are in-process on the simulated pool, kept small by flags (``--n-evals 2 --batch-size 2
--n-questions 4``; flags override the file, whose values are still validated). Left out: ``ray``
(a valid address would start Ray) and the pool ``local`` (it starts the embedded model); both
have their own tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pytts.cli import main
from pytts.config import SearchConfig, _toml_string

FUZZED_KEYS = [key for key in SearchConfig.keys() if key != "ray"]

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
    st.sampled_from([0, 1, 2, 3, 16, 65, 10 ** 6 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1e-9, 1e308, -1.0]),
    st.text(max_size=12),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.text(max_size=4), scalars, max_size=2))
# values a key may plausibly get, so that some runs get past validation and really run
plausible = {
    "pool": st.sampled_from(["sim:math-like", "sim:tiny", "sim:code-like", "sim:nope",
                             "missing.toml", ""]),
    "task": st.sampled_from(["sim", "arith", "math", "nope"]),
    "searcher": st.sampled_from(["agent-reinforce", "reinforce", "random", "tpe",
                                 "llm-optimizer", "exhaustive", "annealing"]),
    "objective": st.sampled_from(["accuracy", "accuracy-latency"]),
    "agent": st.sampled_from(["heuristic", "llm"]),
    "budget": st.sampled_from(["2e13", "1e6", "-5", "8x qwen2.5-1.5b", "3x gpt-9", 2e13]),
    "depth": st.integers(min_value=-1, max_value=5),
    "width": st.integers(min_value=-1, max_value=5),
    "bank": st.sampled_from(["bank.sqlite", "sub/dir/bank.sqlite", "/dev/null", ".", ""]),
    "agent_endpoint": st.sampled_from(["file:///etc", "not a url", "http:///v1"]),
    "latency_penalty": st.floats(min_value=0, max_value=1e7),
    "seed": st.integers(min_value=-2, max_value=2 ** 64),
    "name": st.text(max_size=10),
}
# random text stays relative (the run's working directory is a fresh temporary one) and off
# the embedded model
safe_text = {"pool", "bank", "dataset", "name", "runs_dir"}


def _value(key: str) -> st.SearchStrategy:
    strategy = st.one_of(plausible[key], values) if key in plausible else values
    if key in safe_text:
        strategy = strategy.filter(lambda v: not (isinstance(v, str)
                                                  and (v.startswith(("/", "~")) or v == "local")
                                                  and v not in ("/dev/null",)))
    return strategy


configs = st.one_of(
    # any keys, any values: mostly refused, each refusal naming a key
    st.dictionaries(st.sampled_from(FUZZED_KEYS), st.just(None), max_size=8).flatmap(
        lambda keys: st.fixed_dictionaries({key: _value(key) for key in keys})),
    # a few keys with plausible values: many of these runs really search
    st.dictionaries(st.sampled_from(sorted(plausible)), st.just(None), max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({key: plausible[key] for key in keys})),
    # keys that do not exist
    st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3),
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value) if math.isfinite(value) else (
            "inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(config: dict) -> str:
    return "".join(f"{json.dumps(key)} = {_toml_value(value)}\n" for key, value in config.items())


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_any_config_runs_or_exits_2_with_one_line_and_no_run_directory(config):
    home = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            Path("search.toml").write_text(_toml(config))
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["search", "--config", "search.toml", "--runs-dir", "runs",
                             "--n-evals", "2", "--batch-size", "2", "--n-questions", "4"])
            # run directories; a finished simulated run also leaves the reference optimum's
            # cache (runs/.cache), which is not a run
            runs = (sorted(p for p in Path("runs").iterdir() if not p.name.startswith("."))
                    if Path("runs").exists() else [])
            finished = [(run / "summary.md").exists() for run in runs]
        finally:
            os.chdir(home)
    event(f"exit code {code}")
    if code == 0:
        assert finished == [True], (config, runs)
    else:
        lines = err.getvalue().strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("pytts search: error: "), \
            (config, code, err.getvalue())
        assert runs == [], (config, runs)
