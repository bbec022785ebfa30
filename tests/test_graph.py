"""CollaborationGraph: structure queries, validation, JSON, canonical keys; GraphBatch."""

from __future__ import annotations

import numpy as np
import pytest

from pytts import CollaborationGraph, ConfigError, GraphBatch

NAMES = ("small", "mid", "big")


def _graph(model, role, edges, names=NAMES):
    return CollaborationGraph(np.array(model), np.array(role), np.array(edges), names)


def _diamond() -> CollaborationGraph:
    """Two parallel answers, both fused by one node, then refined."""
    return _graph([[0, 1], [2, -1], [0, -1]], [[0, 0], [1, 0], [0, 0]],
                  [[[1, 0], [1, 0]], [[1, 0], [0, 0]]])


def test_structure_queries_describe_the_graph():
    g = _diamond()
    assert (g.depth, g.width, g.n_nodes, g.layer_widths) == (3, 2, 4, (2, 1, 1))
    assert g.edges_list() == [(0, 0, 0), (0, 1, 0), (1, 0, 0)]
    assert g.sinks() == [(2, 0)]
    assert g.predecessors(1, 0) == [0, 1]
    assert [(n.layer, n.slot, n.model_name, n.role) for n in g.nodes()] == [
        (0, 0, "small", "assistant"), (0, 1, "mid", "assistant"), (1, 0, "big", "fuser"),
        (2, 0, "small", "assistant")]


def test_a_node_without_successor_before_the_last_layer_is_a_sink():
    g = _graph([[0, 1], [2, -1]], [[0, 0], [0, 0]], [[[1, 0], [0, 0]]])
    assert g.sinks() == [(0, 1), (1, 0)]


@pytest.mark.parametrize("model, role, edges, message", [
    ([[-1, -1], [-1, -1]], [[0, 0], [0, 0]], [[[0, 0], [0, 0]]], "no node"),
    ([[-1, 0], [-1, -1]], [[0, 0], [0, 0]], [[[0, 0], [0, 0]]], "prefix"),
    ([[-1, -1], [0, -1]], [[0, 0], [0, 0]], [[[0, 0], [0, 0]]], "layer 0 is empty"),
    ([[0, -1], [1, -1]], [[0, 0], [0, 0]], [[[0, 0], [0, 0]]], "no predecessor"),
    ([[0, -1], [1, -1]], [[1, 0], [0, 0]], [[[1, 0], [0, 0]]], "must be assistants"),
    ([[0, -1], [1, -1]], [[0, 0], [0, 0]], [[[1, 1], [0, 0]]], "empty slot"),
    ([[0, 5], [1, -1]], [[0, 0], [0, 0]], [[[1, 0], [0, 0]]], "outside the pool"),
    ([[0, -1], [1, -1]], [[0, 0], [0, 1]], [[[1, 0], [0, 0]]], "empty slot has a role"),
])
def test_malformed_graphs_are_rejected_with_the_reason(model, role, edges, message):
    with pytest.raises(ValueError, match=message):
        _graph(model, role, edges)


def test_template_limits_are_enforced():
    with pytest.raises(ValueError, match="depth"):
        CollaborationGraph(np.zeros((17, 1)), np.zeros((17, 1)), np.zeros((16, 1, 1)), NAMES)
    with pytest.raises(ValueError, match="width"):
        CollaborationGraph(np.zeros((1, 65)), np.zeros((1, 65)), np.zeros((0, 65, 65)), NAMES)


def test_json_round_trip_keeps_the_graph_and_uses_model_names():
    g = _diamond()
    text = g.to_json()
    assert '"big"' in text
    back = CollaborationGraph.from_json(text, NAMES)
    assert back.canonical_key() == g.canonical_key()
    assert np.array_equal(back.model, g.model) and np.array_equal(back.edges, g.edges)
    # a reordered pool maps names, not indices
    reordered = CollaborationGraph.from_json(text, ("big", "small", "mid"))
    assert [n.model_name for n in reordered.nodes()] == [n.model_name for n in g.nodes()]


def test_json_with_unknown_model_names_the_pool():
    text = _diamond().to_json().replace('"big"', '"huge"')
    with pytest.raises(ConfigError, match="unknown model 'huge'.*small, mid, big"):
        CollaborationGraph.from_json(text, NAMES)
    with pytest.raises(ConfigError, match="does not parse"):
        CollaborationGraph.from_json("{not json", NAMES)


def test_canonical_key_ignores_slot_order_within_a_layer():
    a = _graph([[0, 1, 2], [1, 2, -1]], [[0, 0, 0], [1, 0, 0]],
               [[[1, 0, 0], [1, 1, 0], [0, 1, 0]]])
    # same graph with layer 0 slots permuted (0,1,2) -> (2,0,1) and layer 1 swapped
    perm0 = [1, 2, 0]          # old slot i goes to new slot perm0[i]
    perm1 = [1, 0]
    model = np.full((2, 3), -1)
    role = np.zeros((2, 3), int)
    edges = np.zeros((1, 3, 3), int)
    for i in range(3):
        model[0, perm0[i]] = a.model[0, i]
    for j in range(2):
        model[1, perm1[j]] = a.model[1, j]
        role[1, perm1[j]] = a.role[1, j]
    for i in range(3):
        for j in range(2):
            edges[0, perm0[i], perm1[j]] = a.edges[0, i, j]
    b = _graph(model, role, edges)
    assert not np.array_equal(a.model, b.model)
    assert a.canonical_key() == b.canonical_key() and a == b and hash(a) == hash(b)


def test_canonical_key_tells_different_graphs_apart():
    base = _diamond()
    other_model = _graph([[0, 1], [1, -1], [0, -1]], [[0, 0], [1, 0], [0, 0]],
                         [[[1, 0], [1, 0]], [[1, 0], [0, 0]]])
    other_role = _graph([[0, 1], [2, -1], [0, -1]], [[0, 0], [0, 0], [0, 0]],
                        [[[1, 0], [1, 0]], [[1, 0], [0, 0]]])
    keys = {g.canonical_key() for g in (base, other_model, other_role)}
    assert len(keys) == 3


def test_canonical_key_distinguishes_pairings_that_share_node_labels():
    # two ways to wire 2 sources to 2 refiners with crossed models: not isomorphic
    straight = CollaborationGraph.layered([[0, 1], [0, 1]], NAMES)
    s = np.zeros((1, 2, 2), np.uint8)
    s[0, 0, 0] = s[0, 1, 1] = 1
    x = s.copy()
    x[0] = [[0, 1], [1, 0]]
    g1 = CollaborationGraph(straight.model, np.zeros((2, 2)), s, NAMES)
    g2 = CollaborationGraph(straight.model, np.zeros((2, 2)), x, NAMES)
    assert g1.canonical_key() != g2.canonical_key()


def test_layered_and_chain_builders():
    g = CollaborationGraph.layered([[0, 0, 0], [2]], NAMES, template=(4, 8))
    assert g.template == (4, 8) and g.layer_widths == (3, 1)
    assert g.nodes()[-1].role == "fuser"
    c = CollaborationGraph.chain([0, 1, 2], NAMES)
    assert c.layer_widths == (1, 1, 1) and c.sinks() == [(2, 0)]


def test_graph_batch_is_contiguous_and_round_trips():
    graphs = [_diamond(), CollaborationGraph.layered([[0, 1], [2]], NAMES, template=(3, 2))]
    batch = GraphBatch.from_graphs(graphs)
    assert batch.model.shape == (2, 3, 2) and batch.edges.shape == (2, 2, 2, 2)
    assert all(a.flags.c_contiguous for a in (batch.model, batch.role, batch.edges))
    assert [g.canonical_key() for g in batch.graphs(NAMES)] == [g.canonical_key() for g in graphs]
    with pytest.raises(ValueError, match="one template"):
        GraphBatch.from_graphs([_diamond(), CollaborationGraph.chain([0], NAMES)])


def test_vote_order_is_the_same_for_slot_permutations():
    a = CollaborationGraph.layered([[0, 2]], NAMES)
    b = CollaborationGraph.layered([[2, 0]], NAMES)
    assert a.canonical_key() == b.canonical_key()
    order = lambda g: [g.model[s] for s in g.vote_order()]  # noqa: E731
    assert order(a) == order(b)
    assert sorted(a.vote_order()) == a.sinks()


def test_vote_model_names_the_model_of_a_single_model_one_layer_graph_only():
    names = ("a", "b", "c")
    assert CollaborationGraph.layered([[1]], names).vote_model == 1
    assert CollaborationGraph.layered([[2, 2, 2]], names, template=(2, 4)).vote_model == 2
    assert CollaborationGraph.layered([[0, 1]], names).vote_model is None      # two models
    assert CollaborationGraph.layered([[1], [1]], names).vote_model is None    # two layers
