"""The demo-seeds benchmark runs the search ``pytts search --demo`` runs, on the latent-code
evaluator."""

from __future__ import annotations

import pytest

from bench.demo_seeds import demo_config, returned_accuracy
from pytts.cli import _search_config, build_parser

pytestmark = pytest.mark.slow


def test_the_benchmark_searches_with_the_demos_settings():
    cli = _search_config(build_parser().parse_args(["search", "--demo"]))
    ours = demo_config()
    for key in ("pool", "budget", "n_questions", "n_evals", "batch_size", "racing", "searcher"):
        assert getattr(ours, key) == getattr(cli, key), key


def test_a_seed_returns_a_graph_scored_by_the_ground_truth():
    acc = returned_accuracy(0)
    assert 0.70 < acc <= 0.80   # the demo landscape: pilots near 0.75, the optimum 0.786
    assert returned_accuracy(0) == acc   # a seed repeats exactly
