"""Canonical keys and orders: equal exactly for graphs equal up to slot permutations within layers.

The oracle is brute force (every per-layer ordering, smallest encoding), on graphs small enough
for it; the hard cases are regular wirings between layers that colour refinement cannot split.
Both kernel backends run every property, and must return the very same orders.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter

import numpy as np
import pytest
from conftest import BACKENDS, require_core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytts import CollaborationGraph, GraphBatch, _reference, kernels
from pytts.graph import MAX_DEPTH, MAX_WIDTH

NAMES = ("a", "b", "c")
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextlib.contextmanager
def backend(name: str):
    """Route `pytts.kernels` (and so `CollaborationGraph.canonical_key`) to one backend."""
    impl = require_core() if name == "core" else _reference
    saved, kernels._impl = kernels._impl, impl
    try:
        yield
    finally:
        kernels._impl = saved


def fresh(g: CollaborationGraph) -> CollaborationGraph:
    """The same graph without its cached key and order."""
    return CollaborationGraph(g.model, g.role, g.edges, g.model_names)


# ---------------------------------------------------------------- builders
@st.composite
def graphs(draw, max_depth: int = 4, max_width: int = 6, n_models: int = 2,
           template: tuple[int, int] | None = None) -> CollaborationGraph:
    """A valid graph; few models and dense choices, so that ties and twins are common."""
    depth = draw(st.integers(1, max_depth))
    widths = [draw(st.integers(1, max_width)) for _ in range(depth)]
    d, w = template or (max_depth, max_width)
    model = np.full((d, w), -1, np.int16)
    role = np.zeros((d, w), np.int8)
    edges = np.zeros((d - 1, w, w), np.uint8)
    density = draw(st.sampled_from([0.2, 0.5, 0.9, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    for l, width in enumerate(widths):
        model[l, :width] = rng.integers(0, n_models, width)
        if l:
            role[l, :width] = rng.integers(0, 2, width)
            e = rng.random((widths[l - 1], width)) < density
            e[rng.integers(0, widths[l - 1], width), np.arange(width)] = True
            edges[l - 1, : widths[l - 1], :width] = e
    return CollaborationGraph(model, role, edges, NAMES)


@st.composite
def regular_graphs(draw, max_depth: int = 5, max_width: int = 8) -> CollaborationGraph:
    """Layers of identical nodes, each pair of layers wired by a union of random perfect
    matchings: near-regular, so colour refinement leaves ties for the search to break."""
    depth, width = draw(st.integers(2, max_depth)), draw(st.integers(2, max_width))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    edges = np.zeros((depth - 1, width, width), np.uint8)
    for l in range(depth - 1):
        for _ in range(draw(st.integers(1, 3))):
            edges[l, np.arange(width), rng.permutation(width)] = 1
    return CollaborationGraph(np.zeros((depth, width)), np.zeros((depth, width)), edges, NAMES)


def permuted(g: CollaborationGraph, perms: list[np.ndarray]) -> CollaborationGraph:
    """``g`` with layer l's slot i moved to slot ``perms[l][i]`` (a permutation of its nodes)."""
    model, role, edges = g.model.copy(), g.role.copy(), g.edges.copy()
    for l, p in enumerate(perms):
        model[l, p] = g.model[l, : len(p)]
        role[l, p] = g.role[l, : len(p)]
    for l in range(len(perms) - 1):
        edges[l] = 0
        edges[l][np.ix_(perms[l], perms[l + 1])] = g.edges[l][: len(perms[l]), : len(perms[l + 1])]
    return CollaborationGraph(model, role, edges, g.model_names)


def random_perms(g: CollaborationGraph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(w) for w in g.layer_widths]


def brute_force_form(g: CollaborationGraph) -> tuple:
    """The smallest encoding over every ordering of every layer's slots (the test oracle)."""
    widths = g.layer_widths
    best = None
    for orders in itertools.product(*(itertools.permutations(range(w)) for w in widths)):
        enc = tuple((tuple(g.model[l, list(o)]), tuple(g.role[l, list(o)]),
                     tuple(g.edges[l][np.ix_(o, orders[l + 1])].ravel())
                     if l + 1 < len(widths) else ())
                    for l, o in enumerate(orders))
        best = enc if best is None or enc < best else best
    return best


def bipartite(width: int, wiring: list[tuple[int, int]], depth: int = 2) -> CollaborationGraph:
    """``depth`` layers of ``width`` identical nodes, each pair of consecutive layers wired by
    ``wiring`` (pairs (i, j): slot i feeds slot j)."""
    model = np.zeros((depth, width), np.int16)
    edges = np.zeros((depth - 1, width, width), np.uint8)
    for l in range(depth - 1):
        for i, j in wiring:
            edges[l, i, j] = 1
    return CollaborationGraph(model, np.zeros((depth, width), np.int8), edges, NAMES)


def cycles(lengths: list[int]) -> list[tuple[int, int]]:
    """A 2-regular wiring: one cycle of 2 * n nodes (n per layer) for each n in ``lengths``."""
    wiring, base = [], 0
    for n in lengths:
        for k in range(n):
            wiring += [(base + k, base + k), (base + k, base + (k + 1) % n)]
        base += n
    return wiring


def refinement_histogram(g: CollaborationGraph) -> list[tuple[int, int]]:
    """The stable colour histogram of plain colour refinement, which is all refinement can tell
    about a graph (colours start from (layer, model, role))."""
    nodes = [(l, i) for l in range(g.depth) for i in range(g.layer_widths[l])]
    succ = {v: [(v[0] + 1, int(s)) for s in np.flatnonzero(g.edges[v])] if v[0] + 1 < g.depth
            else [] for v in nodes}
    colour = {v: (v[0], int(g.model[v]), int(g.role[v])) for v in nodes}
    for _ in range(len(nodes)):
        sig = {v: (colour[v], tuple(sorted(colour[(v[0] - 1, p)] for p in g.predecessors(*v))),
                   tuple(sorted(colour[s] for s in succ[v]))) for v in nodes}
        rank = {x: k for k, x in enumerate(sorted(set(sig.values())))}
        colour = {v: rank[sig[v]] for v in nodes}
    return sorted(Counter(colour.values()).items())


def components(g: CollaborationGraph) -> int:
    """Number of connected components (edges taken as undirected)."""
    parent = {(l, i): (l, i) for l in range(g.depth) for i in range(g.layer_widths[l])}

    def find(v):
        while parent[v] != v:
            v = parent[v]
        return v

    for l, i, j in g.edges_list():
        parent[find((l, i))] = find((l + 1, j))
    return len({find(v) for v in parent})


# ---------------------------------------------------------------- properties
@pytest.mark.parametrize("name", ["core", "reference"])
@PROPERTY
@given(g=graphs(max_depth=5, max_width=8), seed=st.integers(0, 2**32 - 1))
def test_slot_permutations_within_layers_keep_the_key(name, g, seed):
    with backend(name):
        h = permuted(g, random_perms(g, seed))
        assert h.canonical_key() == g.canonical_key()
        # the canonical orders read both graphs' arrays identically
        for x in (g, h):
            order = x.canonical_order()
            assert sorted(order[order >= 0].tolist()) == sorted(
                np.nonzero(x.active)[1].tolist())


@pytest.mark.parametrize("name", ["core", "reference"])
@PROPERTY
@given(g=regular_graphs(), seed=st.integers(0, 2**32 - 1))
def test_slot_permutations_keep_the_key_where_refinement_leaves_ties(name, g, seed):
    with backend(name):
        assert permuted(g, random_perms(g, seed)).canonical_key() == g.canonical_key()


@pytest.mark.parametrize("name", ["core", "reference"])
@PROPERTY
@given(pair=st.tuples(regular_graphs(max_depth=3, max_width=3),
                      regular_graphs(max_depth=3, max_width=3)))
def test_near_regular_keys_are_equal_exactly_when_brute_force_finds_them_isomorphic(name, pair):
    a, b = pair
    with backend(name):
        assert (a.canonical_key() == b.canonical_key()) == (brute_force_form(a) ==
                                                            brute_force_form(b))


@pytest.mark.parametrize("name", ["core", "reference"])
@PROPERTY
@given(pair=st.tuples(graphs(max_depth=3, max_width=3), graphs(max_depth=3, max_width=3)))
def test_keys_are_equal_exactly_when_brute_force_finds_the_graphs_isomorphic(name, pair):
    a, b = pair
    with backend(name):
        assert (a.canonical_key() == b.canonical_key()) == (brute_force_form(a) ==
                                                            brute_force_form(b))


@pytest.mark.parametrize("name", ["core", "reference"])
@PROPERTY
@given(g=graphs(max_depth=3, max_width=4, n_models=1), seed=st.integers(0, 2**32 - 1))
def test_one_model_graphs_match_brute_force_and_their_permutations(name, g, seed):
    # one model and dense wiring: mostly ties that only the search can break
    h = permuted(g, random_perms(g, seed))
    with backend(name):
        assert g.canonical_key() == h.canonical_key()
        other = CollaborationGraph.layered([[0] * w for w in g.layer_widths], NAMES)
        assert (g.canonical_key() == other.canonical_key()) == (brute_force_form(g) ==
                                                                brute_force_form(other))


def _shifted_cube() -> CollaborationGraph:
    """K(4,4) minus a matching between layers 0 and 1, and again between 1 and 2 with layer 2
    relabelled (slot j renamed j + 1 mod 4): the same graph, built differently."""
    edges = np.array([[[int(i != j) for j in range(4)] for i in range(4)],
                      [[int(i != (j + 1) % 4) for j in range(4)] for i in range(4)]])
    return CollaborationGraph(np.zeros((3, 4)), np.zeros((3, 4)), edges, NAMES)


# (label, a, b, isomorphic): every pair is regular between layers, so that colour refinement
# gives both graphs one colour per layer and only the search can tell them apart
HARD_PAIRS = [
    # 2-regular between two layers of 6: one 12-cycle, or two 6-cycles
    ("one cycle vs two", bipartite(6, cycles([6])), bipartite(6, cycles([3, 3])), False),
    # the same across four layers of 8: a 16-cycle between each pair of layers, or 4-cycles
    ("cycles over 4 layers", bipartite(8, cycles([8]), 4), bipartite(8, cycles([2, 2, 2, 2]), 4),
     False),
    # two 8-cycles vs one 16-cycle between two layers of 8
    ("8+8 vs 16 cycles", bipartite(8, cycles([4, 4])), bipartite(8, cycles([8])), False),
    # an 8-cycle beside a 4-cycle: its nodes are not all alike, so the search's first leaf
    # depends on the slot order and only the smallest leaf is canonical
    ("8+4 vs 12 cycles", bipartite(6, cycles([4, 2])), bipartite(6, cycles([6])), False),
    ("cube vs shifted cube",
     bipartite(4, [(i, j) for i in range(4) for j in range(4) if i != j], 3), _shifted_cube(),
     True),
]


@pytest.mark.parametrize("name", ["core", "reference"])
@pytest.mark.parametrize("label, a, b, isomorphic", HARD_PAIRS, ids=[p[0] for p in HARD_PAIRS])
def test_hard_cases_for_refinement_get_exact_keys(name, label, a, b, isomorphic):
    with backend(name):
        for g in (a, b):
            for seed in range(5):
                shuffled = permuted(g, random_perms(g, seed))
                assert shuffled.canonical_key() == fresh(g).canonical_key()
        assert (fresh(a).canonical_key() == fresh(b).canonical_key()) == isomorphic


@pytest.mark.parametrize("label, a, b, isomorphic", HARD_PAIRS, ids=[p[0] for p in HARD_PAIRS])
def test_hard_cases_are_hard_for_colour_refinement_and_labelled_right(label, a, b, isomorphic):
    assert refinement_histogram(a) == refinement_histogram(b)
    assert len(refinement_histogram(a)) == a.depth  # one colour per layer
    if isomorphic:
        assert brute_force_form(a) == brute_force_form(b)
    else:
        assert components(a) != components(b)


def test_one_cycle_and_two_cycles_are_not_isomorphic_by_brute_force():
    a, b = bipartite(4, cycles([4])), bipartite(4, cycles([2, 2]))
    assert refinement_histogram(a) == refinement_histogram(b)
    assert brute_force_form(a) != brute_force_form(b)
    for name in BACKENDS:
        with backend(name):
            assert fresh(a).canonical_key() != fresh(b).canonical_key()


@pytest.mark.sanitize
@PROPERTY
@given(g=graphs(max_depth=6, max_width=10, n_models=2))
def test_both_backends_return_the_same_orders(g):
    core = require_core()
    args = (g.model[None], g.role[None], g.edges[None])
    np.testing.assert_array_equal(core.canonical_order(*args), _reference.canonical_order(*args))


@pytest.mark.sanitize
@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 6), st.integers(0, 5))
def test_both_backends_agree_on_arbitrary_array_values(seed, d, w, b):
    # a slot holds a node where model >= 0 and an edge is any nonzero byte; nothing else matters
    core = require_core()
    rng = np.random.default_rng(seed)
    model = rng.integers(-3, 3, (b, d, w)).astype(np.int16)
    role = rng.integers(-128, 128, (b, d, w)).astype(np.int8)
    edges = (rng.integers(0, 4, (b, d - 1, w, w)) * rng.integers(0, 2, (b, d - 1, w, w))
             ).astype(np.uint8)
    np.testing.assert_array_equal(core.canonical_order(model, role, edges),
                                  _reference.canonical_order(model, role, edges))


@pytest.mark.parametrize("name", ["core", "reference"])
def test_all_identical_slots_at_the_template_limits(name):
    g = CollaborationGraph.layered([[0] * MAX_WIDTH] * MAX_DEPTH, NAMES)
    h = permuted(g, random_perms(g, 3))
    with backend(name):
        assert g.canonical_key() == h.canonical_key()
        assert g.canonical_key().startswith(f"{MAX_DEPTH}|0.0,")


@pytest.mark.sanitize
def test_parallel_chains_at_the_template_limits_are_symmetric_not_slow():
    # 64 disjoint chains of 16 identical nodes: no twins, refinement splits nothing, every
    # ordering of the chains is an automorphism; pruning keeps this to one leaf per level
    core = require_core()
    g = bipartite(MAX_WIDTH, [(i, i) for i in range(MAX_WIDTH)], MAX_DEPTH)
    h = permuted(g, random_perms(g, 5))
    args = [(x.model[None], x.role[None], x.edges[None]) for x in (g, h)]
    a, b = (core.canonical_order(*x)[0] for x in args)
    for l in range(MAX_DEPTH - 1):
        np.testing.assert_array_equal(g.edges[l][np.ix_(a[l], a[l + 1])],
                                      h.edges[l][np.ix_(b[l], b[l + 1])])


def test_key_ignores_the_template_and_the_pool_names():
    g = CollaborationGraph.layered([[0, 1], [2]], NAMES)
    big = CollaborationGraph.layered([[0, 1], [2]], ("x", "y", "z"), template=(5, 7))
    assert g.canonical_key() == big.canonical_key() == "2|0.0,1.0/11/2.1"


@pytest.mark.parametrize("name", ["core", "reference"])
@PROPERTY
@given(g=graphs(max_depth=4, max_width=6), seed=st.integers(0, 2**32 - 1))
def test_vote_order_follows_the_canonical_order(name, g, seed):
    h = permuted(g, random_perms(g, seed))
    with backend(name):
        def labels(x: CollaborationGraph) -> list[tuple[int, int, int]]:
            return [(l, int(x.model[l, i]), int(x.role[l, i])) for l, i in x.vote_order()]
        assert labels(g) == labels(h)
        assert sorted(g.vote_order()) == g.sinks()


def test_canonical_order_face_checks_its_argument():
    with pytest.raises(ValueError, match="role"):
        kernels.canonical_order(np.zeros((1, 2, 2), np.int16), np.zeros((1, 2, 3), np.int8),
                                np.zeros((1, 1, 2, 2), np.uint8))
    empty = GraphBatch.empty(2, 3)
    out = kernels.canonical_order(empty.model, empty.role, empty.edges)
    assert out.shape == (0, 2, 3) and out.dtype == np.int32
