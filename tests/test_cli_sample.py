"""`pytts sample`: the kernel demo of the README's first command."""

from __future__ import annotations

import subprocess
import sys

from pytts.cli import main


def test_sample_prints_feasible_graphs_and_the_acceptance_rate(capsys):
    assert main(["sample", "--budget", "6x qwen2.5-3b", "-n", "5", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "5 graphs within" in out and "acceptance" in out
    assert out.count("qwen") + out.count("llama") >= 5


def test_budget_below_the_cheapest_graph_exits_2_with_one_line(capsys):
    assert main(["sample", "--budget", "1e9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "below the cheapest graph" in err


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "pytts.cli", "sample", "-n", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "2 graphs within" in proc.stdout
