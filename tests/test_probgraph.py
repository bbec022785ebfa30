"""A ProbGraph validates its logits and builds the sampler's tables once per set of values (and
again whenever they change, in place or by assignment); its samples become graph objects
without being checked again; a cost model resolves a budget once."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_pool, random_logits

from pytts import CollaborationGraph, CostModel, GraphBatch, ProbGraph, kernels


@pytest.fixture
def pg():
    return random_logits(ProbGraph.uniform(3, 4, make_pool().names), 1)


def test_logits_are_validated_and_tabulated_once_while_they_stay_the_same(pg, backend):
    first = pg._kernel_logits()
    sampler = first.sampler()
    pg.sample(5, seed=1)
    pg.log_prob(pg.sample(5, seed=2)[0])
    assert pg._kernel_logits() is first and first.sampler() is sampler


def test_changing_a_logit_in_place_is_seen_by_the_next_call(pg, backend):
    before, _, _ = pg.sample(200, seed=3)
    pg.edge_logits[0, 0, 0] += 10.0  # one entry, in place
    after, _, _ = pg.sample(200, seed=3)
    fresh = ProbGraph(*(a.copy() for a in pg.logit_arrays()), model_names=pg.model_names)
    np.testing.assert_array_equal(after.edges, fresh.sample(200, seed=3)[0].edges)
    assert not np.array_equal(before.edges, after.edges)
    np.testing.assert_array_equal(pg.log_prob(after), fresh.log_prob(after))


def test_assigning_new_logits_is_seen_by_the_next_call(pg, backend):
    cached = pg._kernel_logits()
    pg.depth_logits = np.array([-20.0, -20.0, 20.0])
    assert pg._kernel_logits() is not cached
    batch, _, _ = pg.sample(50, seed=4)
    assert (batch.model[:, 2] >= 0).any(axis=1).all()  # depth 3, always
    pg.depth_logits = np.array([1.0, np.nan, 0.0])
    with pytest.raises(ValueError, match=r"depth_logits\[1\] = nan is invalid"):
        pg.sample(1, seed=0)


def test_a_sampled_batch_is_read_only_and_its_rows_are_not_checked_again(pg, monkeypatch):
    batch, _, _ = pg.sample(30, seed=5)
    with pytest.raises(ValueError, match="read-only"):
        batch.model[0, 0, 0] = 1
    checked = [CollaborationGraph(batch.model[b], batch.role[b], batch.edges[b], pg.model_names)
               for b in range(len(batch))]

    def fail(self):
        raise AssertionError("validate() ran on a sampled row")

    monkeypatch.setattr(CollaborationGraph, "validate", fail)
    for whole, sub in ((batch, batch.take(slice(None))), (batch, batch.take(np.arange(30)))):
        for b, graph in enumerate(sub.graphs(pg.model_names)):
            assert graph == checked[b] and graph.model_names == pg.model_names
            np.testing.assert_array_equal(graph.edges, whole.edges[b])
            assert not graph.model.flags.writeable and graph.model.base is None
    with pytest.raises(ValueError, match="outside the pool of 1 models"):
        batch.graph(int(np.argmax(batch.model.max(axis=(1, 2)))), pg.model_names[:1])


def test_other_batches_are_still_checked(pg):
    batch, _, _ = pg.sample(3, seed=6)
    model = batch.model.copy()
    model[0, 0, :] = -1  # a gap in the first layer
    with pytest.raises(ValueError, match="prefix|empty"):
        GraphBatch(model, batch.role, batch.edges).graph(0, pg.model_names)


def test_a_cost_model_resolves_each_budget_once(monkeypatch):
    cost = CostModel(make_pool(), prompt_tokens=100.0)
    calls = []
    real = CostModel.min_graph_flops

    def counted(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(CostModel, "min_graph_flops", counted)
    first = cost.budget_flops("4x m1")
    assert cost.budget_flops("4x m1") == first and len(calls) == 1
    cost.prompt_tokens = 200.0  # the call the budget counts grows: resolved again
    assert cost.budget_flops("4x m1") > first and len(calls) == 2
    assert cost.table.base_prompt_tokens == cost.base_prompt_tokens
    with pytest.raises(ValueError, match="budget"):
        cost.budget_flops(True)  # type: ignore[arg-type]


def test_kernel_logits_are_read_only_copies(pg):
    logits = kernels.Logits(*pg.logit_arrays())
    assert all(not a.flags.writeable for a in logits.arrays)
    pg.model_logits[...] = 0.0
    assert not logits.holds(pg.logit_arrays())
