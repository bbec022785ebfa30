"""The reference optimum's cache: a rerun on the same landscape reads what the first run found,
and anything else (another budget, template or preset, a damaged file, a cache that cannot be
written) searches."""

from __future__ import annotations

import dataclasses
import json

import pytest

import pytts.sim.reference as reference
from pytts.sim import SimulatedPool
from pytts.sim.presets import get_preset

TEMPLATE = (2, 2)


@pytest.fixture(scope="module")
def tiny():
    preset = get_preset("tiny")
    budget = preset.budgets["high"].resolve(SimulatedPool(preset).cost_model())
    return preset, budget


@pytest.fixture
def searches(monkeypatch):
    """Counts the reference searches made (each still runs)."""
    made = []
    search = reference.reference_optimum

    def counted(*args, **kwargs):
        made.append(args)
        return search(*args, **kwargs)

    monkeypatch.setattr(reference, "reference_optimum", counted)
    return made


def _cached(preset, budget, cache_dir, template=TEMPLATE):
    return reference.cached_reference_optimum(preset, budget, template=template,
                                              cache_dir=cache_dir)


def test_a_rerun_reads_the_cached_reference_without_searching(tiny, searches, tmp_path):
    preset, budget = tiny
    first = _cached(preset, budget, tmp_path)
    assert len(searches) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    again = _cached(preset, budget, tmp_path)
    assert len(searches) == 1
    assert again == first  # graph, accuracy, stderr, n_scored and best single, all equal
    assert again.graph.canonical_key() == first.graph.canonical_key()


def test_another_budget_template_or_preset_is_searched_anew(tiny, searches, tmp_path):
    preset, budget = tiny
    _cached(preset, budget, tmp_path)
    _cached(preset, budget * 0.8, tmp_path)
    _cached(preset, budget, tmp_path, template=(2, 1))
    changed = dataclasses.replace(preset, noise=preset.noise * 1.5)
    _cached(changed, budget, tmp_path)
    assert len(searches) == 4 and len(list(tmp_path.glob("*.json"))) == 4
    keys = {reference.reference_key(p, b, t) for p, b, t in
            [(preset, budget, TEMPLATE), (preset, budget * 0.8, TEMPLATE),
             (preset, budget, (2, 1)), (changed, budget, TEMPLATE)]}
    assert len(keys) == 4


@pytest.mark.parametrize("damage", ["{not json", json.dumps({"accuracy": 0.5}),
                                    json.dumps({"graph": {"template": {"depth": 1}}})])
def test_a_damaged_cache_file_is_searched_again_and_rewritten(tiny, searches, tmp_path, damage):
    preset, budget = tiny
    first = _cached(preset, budget, tmp_path)
    (path,) = tmp_path.glob("*.json")
    path.write_text(damage)
    assert _cached(preset, budget, tmp_path) == first
    assert len(searches) == 2
    assert _cached(preset, budget, tmp_path) == first and len(searches) == 2  # rewritten


def test_a_cached_graph_on_another_template_is_not_taken(tiny, searches, tmp_path):
    preset, budget = tiny
    first = _cached(preset, budget, tmp_path)
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    record["graph"]["template"]["width"] = 1
    path.write_text(json.dumps(record))
    assert _cached(preset, budget, tmp_path) == first and len(searches) == 2


def test_a_cache_that_cannot_be_written_still_gives_the_reference(tiny, searches, tmp_path):
    preset, budget = tiny
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory would go")
    ref = _cached(preset, budget, blocked / "reference")
    assert ref == _cached(preset, budget, tmp_path / "ok")
    assert len(searches) == 2 and blocked.read_text().startswith("a file")
