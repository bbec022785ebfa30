"""Every searcher: feasible proposals only, state that round-trips through JSON, and a resumed
searcher that continues exactly like an uninterrupted one."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

import numpy as np
import pytest
from test_search_fakes import FACTORIES, ToyEvaluator, make_searcher, toy_accuracy, toy_cost

from pytts import CollaborationGraph
from pytts.errors import ConfigError
from pytts.graph import ASSISTANT, FUSER
from pytts.search import AccuracyLatency, AgentReinforce, Exhaustive, Reinforce, feasible_graphs
from pytts.search.moves import (
    append_fusion,
    append_refinement,
    neighbours,
    shrink_to_budget,
    structural_moves,
)
from pytts.search.run import run_search_sync

NAMES = sorted(FACTORIES)


def drive(searcher, evaluator: ToyEvaluator, n_tells: int, batch: int = 3,
          stop_after: int | None = None) -> None:
    """Ask/tell until the history holds ``n_tells`` tells (or ``stop_after``, possibly in the
    middle of a batch). Ask sizes depend only on the history's length, so a run stopped and
    resumed makes the same calls as one that was not."""
    stop = n_tells if stop_after is None else stop_after
    while len(searcher.history) < stop:
        graphs = searcher.pending or searcher.ask(min(batch, n_tells - len(searcher.history)))
        if not graphs:
            return
        for g in graphs:
            if len(searcher.history) == stop:
                return
            searcher.tell(g, evaluator.result(g))


def history_of(searcher) -> list[tuple]:
    return [(r.key, r.value, r.feedback) for r in searcher.history]


@pytest.mark.parametrize("name", NAMES)
def test_every_proposal_fits_the_template_and_budget(name):
    searcher = make_searcher(name, seed=3, template=(2, 2) if name == "exhaustive" else (3, 3))
    drive(searcher, ToyEvaluator(), 30)
    flops = searcher.flops([r.graph for r in searcher.history])
    assert len(searcher.history) >= 20
    assert (flops <= searcher.budget).all()
    assert all(r.graph.template == searcher.template
               for r in searcher.history)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trips_through_json(name):
    searcher = make_searcher(name, seed=1)
    drive(searcher, ToyEvaluator(), 7)
    searcher.ask(2)  # leave graphs pending
    state = json.loads(json.dumps(searcher.state_dict()))
    clone = make_searcher(name, seed=1)
    clone.load_state_dict(state)
    assert json.loads(json.dumps(clone.state_dict())) == state
    assert [g.canonical_key() for g in clone.pending] == [g.canonical_key()
                                                          for g in searcher.pending]


@pytest.mark.parametrize("name", NAMES)
def test_resumed_searcher_continues_like_an_uninterrupted_one(name):
    evaluator = ToyEvaluator()
    straight = make_searcher(name, seed=5)
    drive(straight, evaluator, 25)

    first = make_searcher(name, seed=5)
    drive(first, evaluator, 25, stop_after=11)  # stops mid-batch: a graph is pending
    assert first.pending
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make_searcher(name, seed=5)
    resumed.load_state_dict(state)
    drive(resumed, evaluator, 25)
    assert len(resumed.history) == 25
    assert history_of(resumed) == history_of(straight)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_search_other_seed_other_search(name):
    runs = []
    for seed in (2, 2, 9):
        s = make_searcher(name, seed=seed)
        drive(s, ToyEvaluator(), 12)
        runs.append([r.key for r in s.history])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_load_state_dict_refuses_other_settings():
    state = make_searcher("random", seed=1).state_dict()
    with pytest.raises(ConfigError, match="seed"):
        make_searcher("random", seed=2).load_state_dict(state)
    with pytest.raises(ConfigError, match="searcher"):
        make_searcher("reinforce", seed=1).load_state_dict(state)
    with pytest.raises(ConfigError, match="objective"):
        make_searcher("random", seed=1, objective=AccuracyLatency(0.1)).load_state_dict(state)


def test_tell_rejects_a_graph_that_was_not_asked():
    s = make_searcher("random")
    g = CollaborationGraph.layered([[0]], s.model_names, template=s.template)
    with pytest.raises(ValueError, match="not pending"):
        s.tell(g, ToyEvaluator().result(g))


def test_best_is_the_highest_objective_value():
    s = make_searcher("random", seed=4)
    drive(s, ToyEvaluator(), 15)
    graph, result = s.best()
    assert result.accuracy == max(r.result.accuracy for r in s.history)
    assert graph.canonical_key() == max(s.history, key=lambda r: r.value).key


def test_accuracy_latency_objective_trades_accuracy_for_speed():
    slow_but_right = make_searcher("exhaustive", seed=0)
    fast = make_searcher("exhaustive", seed=0, objective=AccuracyLatency(penalty_per_s=0.5))
    ev = ToyEvaluator()
    for s in (slow_but_right, fast):
        drive(s, ev, 10_000, batch=50)
    acc_best = slow_but_right.best()[1]
    lat_best = fast.best()[1]
    assert lat_best.mean_latency_s < acc_best.mean_latency_s
    assert lat_best.accuracy <= acc_best.accuracy


# ------------------------------------------------------------------- Exhaustive
def test_exhaustive_proposes_every_feasible_graph_once_then_nothing():
    s = make_searcher("exhaustive", seed=0)
    expected = {g.canonical_key() for g in feasible_graphs(s.template, s.cost, s.budget)}
    drive(s, ToyEvaluator(), 10_000, batch=64)
    keys = [r.key for r in s.history]
    assert len(keys) == len(set(keys)) == len(expected) == s.n_graphs
    assert set(keys) == expected
    assert s.ask(5) == []


def test_exhaustive_order_depends_on_the_seed():
    a, b = (make_searcher("exhaustive", seed=k) for k in (0, 1))
    assert [g.canonical_key() for g in a.ask(10)] != [g.canonical_key() for g in b.ask(10)]


def test_exhaustive_refuses_a_template_too_large_to_enumerate():
    cost = toy_cost()
    with pytest.raises(ConfigError, match="exhaustive limit"):
        Exhaustive(cost.pool, (3, 3), cost, "5x m")


# ------------------------------------------------------------------- RandomSearch
def test_random_search_avoids_graphs_it_has_seen():
    s = make_searcher("random", seed=0, template=(2, 2))
    drive(s, ToyEvaluator(), 40)
    keys = [r.key for r in s.history]
    assert len(set(keys)) == len(keys)


# ------------------------------------------------------------------- Reinforce
def test_reinforce_update_raises_the_probability_of_rewarded_graphs():
    s = make_searcher("reinforce", seed=0)
    assert isinstance(s, Reinforce)
    good = CollaborationGraph.layered([[2]], s.model_names, template=s.template)
    bad = CollaborationGraph.layered([[0]], s.model_names, template=s.template)
    before = s.probgraph.log_prob([good, bad])
    s.baseline = 0.7
    s.step([good, bad], np.array([0.9, 0.5]))
    after = s.probgraph.log_prob([good, bad])
    assert after[0] > before[0] and after[1] < before[1]
    assert s.n_updates == 1 and s.baseline == pytest.approx(0.7)


def test_reinforce_learns_toward_better_graphs_on_the_toy_objective():
    s = make_searcher("reinforce", seed=0, template=(3, 3))
    ev = ToyEvaluator()
    drive(s, ev, 90)
    early = np.mean([r.value for r in s.history[:15]])
    late = np.mean([r.value for r in s.history[-15:]])
    assert late > early + 0.03


# ------------------------------------------------------------------- TPE
def test_tpe_repairs_over_budget_proposals_and_beats_its_random_start():
    s = make_searcher("tpe", seed=0, template=(3, 3))
    drive(s, ToyEvaluator(), 40)
    assert s.n_repaired > 0
    start = max(r.value for r in s.history[:4])
    assert s.best_record().value > start


def test_tpe_stops_when_every_graph_within_the_budget_is_known():
    # a one-layer template leaves a few dozen graphs; TPE runs out of new ones and says so,
    # instead of asking (and growing its study) forever
    s = make_searcher("tpe", seed=0, template=(1, 4))
    expected = {g.canonical_key() for g in feasible_graphs(s.template, s.cost, s.budget)}
    report = run_search_sync(s, ToyEvaluator(), 10_000, batch_size=4)
    assert report.stopped == "exhausted"
    assert {r.key for r in s.history if not r.reused} <= expected
    assert report.n_evals >= 0.8 * len(expected)
    assert len(s.study.trials) < 20 * 4 * (report.n_evals + 4)


def test_tpe_encoding_round_trips_every_graph():
    s = make_searcher("tpe", seed=0)
    for g in feasible_graphs(s.template, s.cost, s.budget)[:200]:
        s.study.enqueue_trial(s.encode(g))
        assert s._decode(s._ask()).canonical_key() == g.canonical_key()


def test_shrink_to_budget_returns_a_feasible_subgraph():
    cost = toy_cost()
    names = cost.pool.names
    big = CollaborationGraph.layered([[2, 2, 2], [2, 1, 0], [2]], names)
    budget = cost.call_flops("l") * 2.5
    small = shrink_to_budget(big, cost, budget)
    assert cost.graph_cost(small)[0] <= budget < cost.graph_cost(big)[0]
    assert small.n_nodes < big.n_nodes
    fitting = CollaborationGraph.layered([[0]], names)
    assert shrink_to_budget(fitting, cost, budget) is fitting


# ------------------------------------------------------------------- LLMOptimizer (offline)
def test_offline_llm_optimizer_proposes_mostly_its_own_graphs():
    s = make_searcher("llm-optimizer", seed=0, template=(3, 3))
    drive(s, ToyEvaluator(), 30)
    assert s.offline
    assert s.counts["n_from_llm"] >= 20
    assert s.counts["n_from_llm"] + s.counts["n_random"] == len(s.history)


# ------------------------------------------------------------------- neighbours
def test_neighbours_are_valid_distinct_and_one_move_away():
    names = toy_cost().pool.names
    g = CollaborationGraph.layered([[0, 1], [2]], names, template=(3, 3))
    moves = neighbours(g)
    keys = [m.canonical_key() for m in moves]
    assert len(keys) == len(set(keys)) and g.canonical_key() not in keys
    assert all(abs(m.n_nodes - g.n_nodes) <= 1 for m in moves)
    # model swaps (2 per node), a deeper graph, a shallower one and wider layers are all there
    assert {m.depth for m in moves} == {1, 2, 3}
    assert max(m.width for m in moves) == 3
    assert sum(m.layer_widths == g.layer_widths and m.n_nodes == 3 for m in moves) >= 6


def test_fusers_put_on_one_answer_stay_fusers_and_differ_from_a_refinement():
    names = toy_cost().pool.names
    chain = CollaborationGraph.layered([[0], [0]], names, roles=[[ASSISTANT], [FUSER]],
                                       template=(4, 3))
    fused = append_fusion(chain, 1, 2)
    assert fused is not None and fused.layer_widths == (1, 1, 2)
    # the new fusers and the chain's own fuser of one answer keep their role
    assert fused.role[1, 0] == FUSER and list(fused.role[2, :2]) == [FUSER, FUSER]
    refined = append_refinement(chain, 1)
    assert refined is not None and refined.role[2, 0] == ASSISTANT
    one = append_fusion(chain, 1, 1)
    assert one is not None and one.canonical_key() != refined.canonical_key()
    # over several answers nothing changes: fusers read them all; a refinement of a fuser's
    # lone answer still turns it into a refiner (only fusion moves keep lone fusers)
    vote = CollaborationGraph.layered([[0, 1]], names, template=(3, 3))
    over_vote = append_fusion(vote, 2, 1)
    assert over_vote is not None and over_vote.predecessors(1, 0) == [0, 1]
    assert refined.role[1, 0] == ASSISTANT
    keys = {g.canonical_key() for g in structural_moves(chain, lambda gs: np.ones(len(gs), bool))}
    assert one.canonical_key() in keys and refined.canonical_key() in keys


# ------------------------------------------------------------------- AgentReinforce
def test_agent_reinforce_starts_with_one_pilot_per_model():
    s = make_searcher("agent-reinforce", seed=0, template=(3, 3))
    assert isinstance(s, AgentReinforce)
    pilots = s.ask(3)
    assert [p.depth for p in pilots] == [1, 1, 1]
    assert sorted(int(p.model[0, 0]) for p in pilots) == [0, 1, 2]
    # each pilot is as wide as the budget allows for its model
    for p in pilots:
        if p.width < s.template[1]:
            wider = CollaborationGraph.layered([[int(p.model[0, 0])] * (p.width + 1)],
                                               s.model_names, template=s.template)
            assert not s.feasible([wider])[0]


def test_agent_reinforce_probes_roles_after_the_pilots_have_been_scored():
    s = make_searcher("agent-reinforce", seed=0, template=(3, 3), budget="3x l")
    ev = ToyEvaluator()
    pilots = s.ask(4)
    assert len(pilots) == 3  # the probe round waits for the pilots' scores: a short ask
    for g in pilots:
        s.tell(g, asyncio.run(ev.evaluate(g)))
    ranked = sorted(pilots, key=toy_accuracy, reverse=True)
    best, second = (int(g.model[0, 0]) for g in ranked[:2])
    probes = s.ask(4)
    assert [g.layer_widths for g in probes] == [(1, 1)] * 4
    assert {int(g.model[0, 0]) for g in probes} == {best}
    assert {(int(g.model[1, 0]), int(g.role[1, 0])) for g in probes} == {
        (m, r) for m in (best, second) for r in (ASSISTANT, FUSER)}
    assert s._rounds[-1]["kind"] == "probe"


def _pilots_told_on_a_tight_budget(budget: str) -> tuple[AgentReinforce, tuple[int, int, int],
                                                             Callable[[int, int], bool]]:
    """Agent-REINFORCE on the toy pool at ``budget`` with its pilots told (l the best of
    them), the indices of s, m and l, and whether a two-node chain (first, second) fits."""
    s = make_searcher("agent-reinforce", seed=0, template=(3, 3), budget=budget)
    assert isinstance(s, AgentReinforce)
    names = s.model_names
    ev = ToyEvaluator()
    pilots = s.ask(4)
    for g in pilots:
        s.tell(g, asyncio.run(ev.evaluate(g)))
    small, mid, large = (names.index(n) for n in ("s", "m", "l"))
    assert sorted(pilots, key=toy_accuracy)[-1].model[0, 0] == large

    def fits(first: int, second: int) -> bool:
        chain = CollaborationGraph.layered([[first], [second]], names, template=(3, 3))
        return bool(s.feasible([chain])[0])

    return s, (small, mid, large), fits


def test_agent_reinforce_probes_from_the_best_model_a_second_step_can_follow():
    # On this budget the strong model's answer leaves no room for a second call of it, and
    # a probe led by it could only add the weakest model: the probes start from the middle
    # model, the best whose own second step fits, followed by the two best that fit after it.
    s, (s_, m, l), fits = _pilots_told_on_a_tight_budget("1.4x l")
    assert not fits(l, l) and fits(m, m) and not fits(s_, l)
    followers = [x for x in (l, m, s_) if fits(m, x)][:2]
    probes = s.ask(4)
    assert s._rounds[-1]["kind"] == "probe"
    assert {int(g.model[0, 0]) for g in probes} == {m}
    assert {(int(g.model[1, 0]), int(g.role[1, 0])) for g in probes} == {
        (x, r) for x in followers for r in (ASSISTANT, FUSER)}


def test_agent_reinforce_probes_the_best_model_as_second_step_where_it_cannot_follow_itself():
    # The best model's own second step does not fit, nor does it fit after the middle model:
    # besides the middle model's chains, the probes put the best model after the small one
    # (the best-ranked model it fits after), as refiner and as fuser, each chain once.
    s, (s_, m, l), fits = _pilots_told_on_a_tight_budget("1.6x l")
    assert not fits(l, l) and not fits(m, l) and fits(s_, l) and fits(m, m)
    asked = s.ask(8)  # the probe round, then the first search round
    assert [r["kind"] for r in s._rounds] == ["probe", "search"]
    probes = asked[:len(s._rounds[0]["keys"])]
    steps = [(int(g.model[0, 0]), int(g.model[1, 0]), int(g.role[1, 0])) for g in probes]
    assert len(steps) == len(set(steps)) == 6
    followers = [x for x in (l, m, s_) if fits(m, x)][:2]
    assert set(steps) == {(m, x, r) for x in followers for r in (ASSISTANT, FUSER)} | {
        (s_, l, ASSISTANT), (s_, l, FUSER)}


def test_agent_reinforce_without_probes_searches_right_after_the_pilots():
    cost = toy_cost()
    s = AgentReinforce(cost.pool, (3, 3), cost, "5x m", seed=0, probes=False)
    ev = ToyEvaluator()
    graphs = s.ask(4)
    assert len(graphs) == 4 and [g.depth for g in graphs[:3]] == [1, 1, 1]
    for g in graphs:
        s.tell(g, asyncio.run(ev.evaluate(g)))
    assert [r["kind"] for r in s.journal] == ["pilot"]


def test_agent_reinforce_keeps_feedback_in_the_history():
    s = make_searcher("agent-reinforce", seed=0, template=(3, 3))
    drive(s, ToyEvaluator(), 15)
    texts = [r.feedback for r in s.history if r.feedback]
    assert len(texts) == len(s.feedback_log) >= 4
    assert "Pilots" in texts[0] and "Best so far" in texts[1]
    assert all(entry["kl"]["depth"] <= s.trust.max_kl + 1e-9 for entry in s.feedback_log)


def test_agent_reinforce_moves_mass_toward_the_best_models():
    s = make_searcher("agent-reinforce", seed=0, template=(3, 3))
    drive(s, ToyEvaluator(), 30)
    probs = dict(zip(s.model_names, s.probgraph.mean_model_probs()))
    assert probs["l"] > probs["s"]
    assert toy_accuracy(s.best()[0]) >= max(toy_accuracy(CollaborationGraph.layered(
        [[k]], s.model_names)) for k in range(3))



def test_tpe_without_optuna_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` fail
    with pytest.raises(ConfigError, match=r'pip install "pytts\[optuna\]"'):
        make_searcher("tpe")
