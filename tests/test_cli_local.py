"""`pytts search --local`: a small search against the real embedded model, end to end."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_local_search_completes_on_the_embedded_model(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-m", "pytts.cli", "search", "--local", "--name",
                           "local", "--runs-dir", "runs", "--n-evals", "6", "--n-questions", "10"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "local"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    evaluated = [r for r in history if not r["reused"]]
    assert len(evaluated) == 6
    assert all(r["result"]["n_questions"] == 10 and r["result"]["n_failed"] == 0
               for r in evaluated)
    with sqlite3.connect(run / "bank.sqlite") as conn:
        rows = conn.execute("SELECT COUNT(*), SUM(completion_tokens) FROM completions").fetchone()
    made = sum(r["result"]["calls_made"] for r in evaluated)
    assert rows[0] == made > 0 and rows[1] > 0          # every real call is in the bank, once
    best = json.loads((run / "best_graph.json").read_text())
    assert all(n["model"].startswith("smollm2-135m") for n in best["graph"]["nodes"])
    assert (run / "plots" / "best_graph.png").stat().st_size > 0
