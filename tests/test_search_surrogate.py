"""The surrogate Agent-REINFORCE ranks candidates with: descriptors, GP fit and prediction,
expected improvement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytts.graph import ASSISTANT, FUSER, CollaborationGraph
from pytts.search.surrogate import (
    GraphSurrogate,
    Observation,
    expected_improvement,
    features_of,
    graph_features,
)

NAMES = ("small", "big")
TEMPLATE = (3, 4)


def chain(first: list[int], second: list[int] | None = None, role: int = ASSISTANT
          ) -> CollaborationGraph:
    layers = [first] + ([second] if second else [])
    roles = [[ASSISTANT] * len(first)] + ([[role] * len(second)] if second else [])
    return CollaborationGraph.layered(layers, NAMES, roles=roles, template=TEMPLATE)


def test_features_count_first_answers_refinements_fusions_and_shape():
    vote = chain([0, 0, 1])
    np.testing.assert_allclose(graph_features(vote),
                               np.log1p([2, 1, 0, 0, 0, 0, 0, 3, 3]))
    fused = chain([0, 0], [1], role=FUSER)  # one fuser of the big model reads both answers
    np.testing.assert_allclose(graph_features(fused),
                               np.log1p([2, 0, 0, 0, 0, 1, 1, 1, 3]))
    refined = chain([1], [0])
    np.testing.assert_allclose(graph_features(refined),
                               np.log1p([0, 1, 1, 0, 0, 0, 1, 1, 2]))


def test_fit_features_is_fit_on_the_same_observations():
    graphs = [chain([0]), chain([1]), chain([0, 0, 0]), chain([1], [0])]
    observations = [Observation(g, acc, n) for g, acc, n in
                    zip(graphs, (0.4, 0.7, 0.5, 0.75), (50, 100, 200, 25))]
    a = GraphSurrogate().fit(observations)
    b = GraphSurrogate().fit_features(features_of(graphs), np.array([0.4, 0.7, 0.5, 0.75]),
                                      np.array([50, 100, 200, 25]))
    probe = [chain([1, 1]), chain([0], [1], role=FUSER)]
    for x, y in zip(a.predict(probe), b.predict(probe)):
        np.testing.assert_array_equal(x, y)
    assert (a.lengthscale, a.signal, a.mean) == (b.lengthscale, b.signal, b.mean)


def test_fit_features_rejects_mismatched_or_empty_arrays():
    x = features_of([chain([0]), chain([1])])
    with pytest.raises(ValueError, match="as many features"):
        GraphSurrogate().fit_features(x, np.array([0.5]), np.array([10, 10]))
    with pytest.raises(ValueError, match="at least one"):
        GraphSurrogate().fit_features(x[:0], np.array([]), np.array([]))
    with pytest.raises(ValueError, match="at least one"):
        GraphSurrogate().fit([])


def test_predictions_follow_well_measured_graphs_and_are_surer_there():
    weak, strong = chain([0]), chain([1])
    observations = [Observation(weak, 0.3, 400), Observation(strong, 0.8, 400)]
    surrogate = GraphSurrogate().fit(observations)
    mu, sd = surrogate.predict([weak, strong, chain([1], [0], role=FUSER)])
    assert abs(mu[0] - 0.3) < 0.03 and abs(mu[1] - 0.8) < 0.03
    assert sd[0] < sd[2] and sd[1] < sd[2]  # an unmeasured shape is less certain


def test_prediction_before_fit_is_the_prior():
    mu, sd = GraphSurrogate().predict([chain([0]), chain([1])])
    np.testing.assert_allclose(mu, 0.5)
    assert np.all(sd > 0)


def test_expected_improvement_known_values():
    # at mu == best: sd * pdf(0); far below best: ~0; far above: ~mu - best
    np.testing.assert_allclose(expected_improvement(np.array([0.5]), np.array([0.1]), 0.5),
                               [0.1 / math.sqrt(2 * math.pi)])
    low, high = expected_improvement(np.array([0.0, 1.0]), np.array([0.01, 0.01]), 0.5)
    assert low < 1e-12 and abs(high - 0.5) < 1e-9
    # more uncertainty is worth more at equal mean
    ei = expected_improvement(np.array([0.4, 0.4]), np.array([0.01, 0.2]), 0.5)
    assert ei[1] > ei[0]
