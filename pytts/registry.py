"""The names a run is configured with, one list per kind: searchers (with the class each names),
agents and tasks. `SearchConfig` validates against these lists, `pytts.search.SEARCHERS` and
`pytts.tasks.load_task` are built on them, so a name added here is known everywhere.

Nothing is imported until a class is asked for: reading a config (and ``pytts --help``) must not
pay for importing every searcher.
"""

from __future__ import annotations

import importlib
from typing import Any

SEARCHER_CLASSES: dict[str, str] = {
    "agent-reinforce": "pytts.search.agent_reinforce:AgentReinforce",
    "reinforce": "pytts.search.reinforce:Reinforce",
    "random": "pytts.search.random_search:RandomSearch",
    "tpe": "pytts.search.tpe:TPE",
    "llm-optimizer": "pytts.search.llm_optimizer:LLMOptimizer",
    "exhaustive": "pytts.search.exhaustive:Exhaustive",
}
"""Searcher name (a config's ``searcher``) -> ``module:Class``; each class's ``name`` is its key."""

SEARCHER_NAMES: tuple[str, ...] = tuple(SEARCHER_CLASSES)

AGENT_NAMES: tuple[str, ...] = ("heuristic", "llm")
"""Agents of Agent-REINFORCE (a config's ``agent``): the heuristic one, or an LLM."""

TASK_NAMES: tuple[str, ...] = ("math", "mmlu", "humaneval", "arith")
"""Tasks `pytts.tasks.load_task` builds from a name."""

SIM_TASK = "sim"
"""The simulated task, which comes with a simulated pool (``pool = "sim:PRESET"``)."""

RUN_TASK_NAMES: tuple[str, ...] = (SIM_TASK, *TASK_NAMES)
"""Tasks a run may name (a config's ``task``): the simulated one and every loadable one."""


def searcher_class(name: str) -> Any:
    """The searcher class called ``name`` (imported now); KeyError for an unknown name."""
    module, _, attr = SEARCHER_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), attr)
