"""The space of graphs on a template: counting and exhaustive enumeration.

Enumeration lists every graph a `ProbGraph` on the same template can produce (so the exact
distribution can be checked against samples) and is what the `Exhaustive` searcher walks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from .graph import GraphBatch, check_template


def _widths(depth: int, width: int) -> Iterator[tuple[int, ...]]:
    for d in range(1, depth + 1):
        yield from itertools.product(range(1, width + 1), repeat=d)


def count_graphs(depth: int, width: int, n_models: int, n_roles: int,
                 cap: int | None = None) -> int:
    """Number of distinct graphs (as arrays, not up to isomorphism) on the template; with
    ``cap``, the smaller of that number and ``cap`` (cheap however large the template).

    Counted layer by layer in O(depth * width**2) big-integer steps, never by walking the
    width**depth width tuples: ``ending[w]`` is the number of graphs so far whose last layer has
    ``w`` nodes. A next layer of ``v`` nodes multiplies by ``(n_models * n_roles)**v`` (a model
    and a role each) and ``(2**w - 1)**v`` (each node reads a non-empty subset of the layer
    before); the first layer has models only. Every term is a non-negative count, so clamping
    the partial counts at ``cap`` (and stopping once the total reaches it) changes nothing
    below it.
    """
    check_template(depth, width)

    def clamp(value: int) -> int:
        return value if cap is None else min(value, cap)

    ending = [0] + [clamp(n_models ** w) for w in range(1, width + 1)]
    total = clamp(sum(ending))
    for _ in range(1, depth):
        if total == cap:
            break
        ending = [0] + [clamp((n_models * n_roles) ** v
                              * sum(count * (2 ** w - 1) ** v for w, count in enumerate(ending)
                                    if w))
                        for v in range(1, width + 1)]
        total = clamp(total + sum(ending))
    return total


def enumerate_graphs(depth: int, width: int, n_models: int, n_roles: int,
                     limit: int = 2_000_000) -> GraphBatch:
    """Every graph on the template, as one batch; ValueError if there are more than ``limit``."""
    total = count_graphs(depth, width, n_models, n_roles)
    if total > limit:
        raise ValueError(f"the template has {total} graphs, more than limit={limit}; "
                         "enumerate a smaller template")
    models, roles, edges = [], [], []
    for ws in _widths(depth, width):
        slots = [(l, i) for l, w in enumerate(ws) for i in range(w)]
        later = [(l, i) for l, i in slots if l > 0]
        columns = [(l, j) for l in range(len(ws) - 1) for j in range(ws[l + 1])]
        subsets = [[s for s in range(1, 2 ** ws[l])] for l, _ in columns]
        for ms in itertools.product(range(n_models), repeat=len(slots)):
            model = np.full((depth, width), -1, np.int16)
            for (l, i), m in zip(slots, ms):
                model[l, i] = m
            for rs in itertools.product(range(n_roles), repeat=len(later)):
                role = np.zeros((depth, width), np.int8)
                for (l, i), r in zip(later, rs):
                    role[l, i] = r
                for cols in itertools.product(*subsets):
                    edge = np.zeros((max(depth - 1, 0), width, width), np.uint8)
                    for (l, j), mask in zip(columns, cols):
                        for i in range(ws[l]):
                            if mask >> i & 1:
                                edge[l, i, j] = 1
                    models.append(model)
                    roles.append(role)
                    edges.append(edge)
    return GraphBatch(np.stack(models), np.stack(roles), np.stack(edges))
