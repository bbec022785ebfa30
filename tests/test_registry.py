"""One list per kind of name: the config's choices are the registry's names, each registered
searcher class answers to its name, and every task name loads."""

from __future__ import annotations

import dataclasses

import pytest

from pytts import registry
from pytts.config import SearchConfig
from pytts.errors import ConfigError
from pytts.search import SEARCHERS
from pytts.tasks.registry import load_task


def _allowed(key: str) -> tuple[str, ...]:
    field = next(f for f in dataclasses.fields(SearchConfig) if f.name == key)
    return field.metadata["allowed"]


def test_the_configs_choices_are_the_registries_names():
    assert _allowed("searcher") == registry.SEARCHER_NAMES
    assert _allowed("agent") == registry.AGENT_NAMES
    assert _allowed("task") == (registry.SIM_TASK, *registry.TASK_NAMES)


def test_each_registered_searcher_class_answers_to_its_name():
    assert tuple(SEARCHERS) == registry.SEARCHER_NAMES
    for name, cls in SEARCHERS.items():
        assert cls.name == name and registry.searcher_class(name) is cls


@pytest.mark.parametrize("name", registry.TASK_NAMES)
def test_every_registered_task_name_is_known_to_load_task(name):
    try:
        task = load_task(name, n=1)
    except ConfigError as exc:            # math and mmlu need a dataset file: asked by name
        assert "needs path=" in str(exc) and name in str(exc)
    else:
        assert len(task.questions) == 1


def test_a_searcher_name_outside_the_registry_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="searcher = 'annealing' is not allowed"):
        SearchConfig(searcher="annealing")
