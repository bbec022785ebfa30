"""Racing and selection (pytts.search.racing, run_search(racing=...)): the paired statistics on
known answers, early stopping of hopeless candidates, the first batch's race among its members,
the confirmed selection, and a resumed raced search that continues exactly like an
uninterrupted one."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from pytts.errors import ConfigError
from pytts.evaluate import EvalResult
from pytts.search import AgentReinforce, RandomSearch, run_search
from pytts.search.racing import Race, RacingPolicy, merge_results, outcomes, paired_difference
from pytts.sim import SimPreset, SimulatedPool
from pytts.sim.evaluator import LatentEvaluator


def _result(correct: list[bool], ids: list[int] | None = None) -> EvalResult:
    return EvalResult.from_scores(correct, mean_flops=1.0, mean_latency_s=1.0,
                                  question_ids=ids, calls_made=len(correct))


def test_paired_difference_known_answers():
    # d = [1, 0, 0, -1, 1]: mean 0.2, sample sd sqrt(0.7), stderr sqrt(0.7 / 5)
    a = [1, 1, 0, 0, 1]
    b = [0, 1, 0, 1, 0]
    diff = paired_difference(a, b)
    assert diff.n == 5
    assert diff.mean == pytest.approx(0.2)
    assert diff.stderr == pytest.approx(math.sqrt(0.7 / 5))
    low, high = diff.interval(1.0)
    assert (low, high) == pytest.approx((0.2 - math.sqrt(0.14), 0.2 + math.sqrt(0.14)))
    same = paired_difference([1, 0, 1], [1, 0, 1])
    assert same.mean == 0 and same.stderr == 0
    assert paired_difference([], []).stderr == math.inf
    assert paired_difference([1], [0]).stderr == math.inf


def test_merge_results_unions_questions_and_sums_calls():
    merged = merge_results([_result([True, False], [0, 1]), _result([True, True], [2, 1])])
    assert merged.question_ids == [0, 1, 2]
    assert merged.correct == [True, False, True]   # question 1 from the first part
    assert merged.calls_made == 4
    assert outcomes(merged) == {0: True, 1: False, 2: True}


def test_policy_is_validated_and_fitted_to_the_evaluator():
    with pytest.raises(ConfigError):
        RacingPolicy(stages=(50, 25))
    with pytest.raises(ConfigError):
        RacingPolicy(z=float("nan"))
    fitted = RacingPolicy((25, 50, 100), confirm=50).fitted(80)
    assert fitted.stages == (25, 50, 80) and fitted.confirm == 0
    assert RacingPolicy((25, 50, 100), confirm=50).fitted(120).confirm == 20


def test_policy_for_a_dev_set_races_in_doubling_stages_and_confirms_on_the_rest():
    default = RacingPolicy.for_questions(250)
    assert default == RacingPolicy() and default.stages == (25, 50, 100, 200)
    assert default.confirm == 50
    assert RacingPolicy.for_questions(100).stages == (20, 40, 80)
    assert RacingPolicy.for_questions(100).confirm == 20
    assert RacingPolicy.for_questions(20) == RacingPolicy((16,), confirm=4)
    with pytest.raises(ConfigError):
        RacingPolicy.for_questions(1)
    with pytest.raises(ConfigError):
        RacingPolicy.for_questions(100, race_share=0)


class _Scripted:
    """A subset evaluator whose graphs have fixed per-question outcomes: graph -> list (every
    sample alike) or graph -> {sample: list}. ``asked`` lists (graph, questions) of sample 0
    and (graph, questions, sample) of the others."""

    def __init__(self, table: dict[str, list[bool] | dict[int, list[bool]]]) -> None:
        self.table = table
        first = next(iter(table.values()))
        self.questions = list(range(len(first[0] if isinstance(first, dict) else first)))
        self.asked: list[tuple] = []

    async def evaluate(self, graph, questions=None, *, sample=0):
        ids = list(range(len(self.questions))) if questions is None else list(questions)
        self.asked.append((graph, ids) if sample == 0 else (graph, ids, sample))
        row = self.table[graph]
        row = row[sample] if isinstance(row, dict) else row
        result = _result([row[q] for q in ids], ids)
        result.samples = [sample] * len(ids) if sample else None
        return result


def test_a_hopeless_candidate_stops_after_the_first_stage():
    good = [True] * 90 + [False] * 10
    bad = [False] * 100
    ev = _Scripted({"inc": good, "bad": bad, "twin": good})
    race = Race(RacingPolicy((10, 40, 100), z=1.0, confirm=0), 100)
    inc = asyncio.run(race.evaluate(ev, "inc", None))
    assert inc.n_questions == 100
    race.observe("inc", "inc", inc)
    lost = asyncio.run(race.evaluate(ev, "bad", inc))
    assert lost.n_questions == 10           # paired diff -0.9, stderr ~0.1: out after stage 1
    tie = asyncio.run(race.evaluate(ev, "twin", inc))
    assert tie.n_questions == 100           # as good as the incumbent: raced to the end
    race.observe("twin", "twin", tie)
    assert race.incumbent == "inc"          # a tie does not dethrone


def _opening_race(ev, names, known=None):
    race = Race(RacingPolicy((10, 40, 100), confirm=0), 100)
    opening = race.opening(ev, names, known or [None] * len(names))

    async def every_member():
        return await asyncio.gather(*(opening.evaluate(i) for i in range(len(names))))
    return opening, asyncio.run(every_member())


# per question: the leader misses none of the first 40, the close one misses two, so it is
# 5 points behind at the opening (paired stderr 3.4 points: it survives at z = 2)
BEST = [True] * 40 + [True] * 50 + [False] * 10
CLOSE = [True] * 38 + [False] * 2 + [True] * 50 + [False] * 10
HOPELESS = [False] * 100


def test_a_first_batch_races_its_members_against_the_best_at_the_opening():
    ev = _Scripted({"best": BEST, "close": CLOSE, "bad": HOPELESS})
    opening, (bad, close, best) = _opening_race(ev, ["bad", "close", "best"])
    assert opening.n_opening == 40                  # the first two stages
    assert best.n_questions == close.n_questions == 100
    assert bad.n_questions == 40                    # out at the opening, 60 questions saved
    # every member ran the opening questions once; only the leader and the survivor the rest
    assert sorted(ev.asked) == sorted([(g, list(range(40))) for g in ("bad", "close", "best")]
                                      + [(g, list(range(40, 100))) for g in ("best", "close")])
    assert best.correct == BEST and close.correct == CLOSE


def test_the_earliest_member_leads_a_tie_at_the_opening():
    twin = [True] * 40 + [False] * 60               # level at the opening, far worse after it
    ev = _Scripted({"twin": twin, "best": BEST})
    _, (first, second) = _opening_race(ev, ["twin", "best"])
    assert first.n_questions == 100                 # the leader runs every race question
    assert second.n_questions == 100                # and "best", behind it by nothing, too


def test_known_members_race_with_their_results_and_are_not_run_again():
    ev = _Scripted({"best": BEST, "close": CLOSE, "bad": HOPELESS})
    known_best = _result(BEST, list(range(100)))
    _, (bad, close, best) = _opening_race(ev, ["bad", "close", "best"], [None, None, known_best])
    assert best == known_best
    assert all(g != "best" for g, _ in ev.asked)
    assert bad.n_questions == 40 and close.n_questions == 100


def test_a_known_leader_told_on_other_questions_is_raced_against_as_it_is():
    # a graph told through the ask/tell API on questions of its own choosing (not the first
    # ones), leading on them: the others race against what is known of it
    ev = _Scripted({"told": BEST, "close": CLOSE, "bad": HOPELESS})
    told = _result([BEST[q] for q in range(45, 85)], list(range(45, 85)))
    _, (bad, close, lead) = _opening_race(ev, ["bad", "close", "told"], [None, None, told])
    assert lead == told and all(g != "told" for g, _ in ev.asked)
    # the opening shares no question with it, and the last stage is not tested: no one is cut
    assert close.n_questions == bad.n_questions == 100


def test_a_member_whose_opening_fails_raises_and_the_rest_race_on():
    class Failing(_Scripted):
        async def evaluate(self, graph, questions=None):
            if graph == "best":
                raise RuntimeError("server down")
            return await super().evaluate(graph, questions)

    race = Race(RacingPolicy((10, 40, 100), confirm=0), 100)
    opening = race.opening(Failing({"best": BEST, "close": CLOSE, "bad": HOPELESS}),
                           ["bad", "close", "best"], [None] * 3)

    async def every_member():
        return await asyncio.gather(*(opening.evaluate(i) for i in range(3)),
                                    return_exceptions=True)
    bad, close, best = asyncio.run(every_member())
    assert isinstance(best, RuntimeError)
    assert close.n_questions == 100 and bad.n_questions == 40   # "close" led the rest


def test_selection_uses_confirmation_questions_against_the_winners_curse():
    # "lucky" beats "solid" on the race questions but not on the confirmation questions
    lucky = [True] * 60 + [False] * 40 + [False] * 50
    solid = [True] * 58 + [False] * 42 + [True] * 40 + [False] * 10
    ev = _Scripted({"lucky": lucky, "solid": solid})
    race = Race(RacingPolicy((100,), confirm=50, top=2, resamples=0), 150)
    for name in ("solid", "lucky"):
        race.observe(name, name, asyncio.run(race.evaluate(ev, name, None)))
    assert race.incumbent == "lucky"
    chosen = asyncio.run(race.select(ev))
    assert chosen.key == "solid" and chosen.runner_up == "lucky"
    assert chosen.result.n_questions == 150
    assert chosen.difference.mean == pytest.approx((98 - 60) / 150)
    assert race.calls == 100                # 50 confirmation questions for each finalist


def test_a_selection_counts_its_finalists_confirmation_whenever_it_ran():
    def graph(race_right: int) -> list[bool]:
        return [True] * race_right + [False] * (100 - race_right) + [True] * 25 + [False] * 25

    ev = _Scripted({"a": graph(70), "b": graph(60), "c": graph(65)})
    race = Race(RacingPolicy((100,), confirm=50, top=2, resamples=0), 150)
    for name in ("a", "b"):
        race.observe(name, name, asyncio.run(race.evaluate(ev, name, None)))
    first = asyncio.run(race.select(ev))
    assert first.confirm_calls == race.calls == 100        # a and b, 50 questions each
    race.observe("c", "c", asyncio.run(race.evaluate(ev, "c", None)))
    second = asyncio.run(race.select(ev))
    assert race.calls == 150                                 # only c was run now
    # the finalists are a (confirmed before) and c: a run stopped here pays for both, not b
    assert second.confirm_calls == 100


def test_selection_runs_fresh_samples_and_keeps_the_best_two_to_the_end():
    # a leads the race, but on fresh samples of the 150 dev questions b is the better graph;
    # c falls behind on the first fresh sample and runs no more
    def runs(race_right: int, confirm_right: int, fresh_right: int) -> dict[int, list[bool]]:
        first = ([True] * race_right + [False] * (100 - race_right)
                 + [True] * confirm_right + [False] * (50 - confirm_right))
        fresh = [True] * fresh_right + [False] * (150 - fresh_right)
        return {0: first, 1: fresh, 2: fresh, 3: fresh}

    ev = _Scripted({"a": runs(70, 25, 90), "b": runs(68, 25, 100), "c": runs(60, 20, 80)})
    race = Race(RacingPolicy((100,), confirm=50, top=3, resamples=3), 150)
    for name in ("c", "b", "a"):
        race.observe(name, name, asyncio.run(race.evaluate(ev, name, None)))
    assert race.incumbent == "a"
    chosen = asyncio.run(race.select(ev))
    assert chosen.key == "b" and chosen.runner_up == "a"
    assert chosen.result.n_questions == 600                   # 150 questions x 4 samples
    assert chosen.result.accuracy == pytest.approx((68 + 25 + 3 * 100) / 600)
    assert chosen.difference.n == 600
    assert chosen.difference.mean == pytest.approx((3 * 100 - 3 * 90 + 68 - 70) / 600)
    dev = list(range(150))
    fresh = [a for a in ev.asked if len(a) == 3]
    assert sorted(fresh) == sorted([(g, dev, 1) for g in "abc"]
                                   + [(g, dev, s) for g in "ab" for s in (2, 3)])
    assert race.calls == chosen.confirm_calls == 3 * 50 + 3 * 150 + 2 * 2 * 150
    # a second selection makes no run again
    asked = len(ev.asked)
    assert asyncio.run(race.select(ev)).key == "b" and len(ev.asked) == asked


def test_a_policy_saved_before_resamples_existed_makes_none():
    policy = RacingPolicy((25, 50), confirm=10, top=2, resamples=2)
    assert RacingPolicy.from_dict(policy.to_dict()) == policy
    old = {k: v for k, v in policy.to_dict().items() if k != "resamples"}
    assert RacingPolicy.from_dict(old).resamples == 0
    assert policy.fitted(40).resamples == 2
    with pytest.raises(ConfigError):
        RacingPolicy(resamples=-1)


def _sim_setup(seed: int = 0):
    preset = SimPreset.generate(1)
    sim = SimulatedPool(preset)
    evaluator = LatentEvaluator(sim, sim.task(90).questions, seed=seed)
    return preset, sim, evaluator


def _fresh(evaluator: LatentEvaluator) -> LatentEvaluator:
    """The same evaluator with an empty bank, so a run's call counts are its own."""
    return LatentEvaluator(evaluator.sim, evaluator.questions, seed=evaluator.seed)


def _searcher(preset, sim, seed=3):
    return AgentReinforce(sim.pool, preset.template, sim.cost_model(), preset.budgets["high"],
                          seed=seed)


def test_racing_spends_fewer_calls_per_evaluation_than_full_runs():
    preset, sim, evaluator = _sim_setup()
    raced = asyncio.run(run_search(RandomSearch(sim.pool, preset.template, sim.cost_model(),
                                                preset.budgets["high"], seed=1),
                                   evaluator, 16, batch_size=4,
                                   racing=RacingPolicy((15, 30, 60), confirm=30)))
    full = asyncio.run(run_search(RandomSearch(sim.pool, preset.template, sim.cost_model(),
                                               preset.budgets["high"], seed=1),
                                  _fresh(evaluator), 16, batch_size=4,
                                  racing=RacingPolicy((60,), confirm=30)))
    assert raced.n_evals == full.n_evals == 16
    assert raced.calls_made < full.calls_made
    assert any(r.result.n_questions < 60 for r in raced.history)
    assert raced.selection is not None and raced.best_graph is raced.selection.graph


def test_a_resumed_raced_search_continues_identically(tmp_path):
    preset, sim, evaluator = _sim_setup()
    policy = RacingPolicy((15, 30, 60), confirm=30)
    straight = asyncio.run(run_search(_searcher(preset, sim), evaluator, 20, batch_size=4,
                                      racing=policy))
    # stop where an ask of the straight run ended: the end of its third round (the pilot round
    # ends an ask of its own, so that is not a multiple of the batch size here)
    evaluated = np.cumsum([not r.reused for r in straight.history])
    round_ends = [int(n) for n, r in zip(evaluated, straight.history) if r.feedback]
    assert round_ends[2] % 4 != 0
    ckpt = tmp_path / "run"
    asyncio.run(run_search(_searcher(preset, sim), evaluator, round_ends[2], batch_size=4,
                           racing=policy, checkpoint=ckpt))
    resumed = asyncio.run(run_search(_searcher(preset, sim), evaluator, 20, batch_size=4,
                                     racing=policy, checkpoint=ckpt))
    assert [r.key for r in resumed.history] == [r.key for r in straight.history]
    assert [r.result.question_ids for r in resumed.history] == \
        [r.result.question_ids for r in straight.history]
    assert resumed.selection.key == straight.selection.key


def test_a_first_batch_stopped_after_its_opening_continues_identically(tmp_path):
    preset, sim, evaluator = _sim_setup()
    policy = RacingPolicy((15, 30, 60), confirm=30)
    straight = asyncio.run(run_search(_searcher(preset, sim), evaluator, 12, batch_size=4,
                                      racing=policy))
    # the first batch is the three pilots: one leads at the opening (30 questions), one is
    # out there and one races the leader to the end
    first = straight.history[:3]
    opening = [np.mean([outcomes(r.result)[q] for q in range(30)]) for r in first]
    leader = int(np.argmax(opening))
    survivors = [r for i, r in enumerate(first) if i != leader and r.result.n_questions == 60]
    assert survivors and any(r.result.n_questions == 30 for r in first)
    target = survivors[0].graph.canonical_key()

    class FailsPastTheOpening:
        """The survivor's evaluation fails after the opening (a server that went down)."""

        questions = evaluator.questions

        async def evaluate(self, graph, questions=None, *, sample=0):
            if graph.canonical_key() == target and questions and questions[0] == 30:
                raise RuntimeError("server down")
            return await evaluator.evaluate(graph, questions, sample=sample)

    ckpt = tmp_path / "run"
    with pytest.raises(RuntimeError, match="server down"):
        asyncio.run(run_search(_searcher(preset, sim), FailsPastTheOpening(), 12,
                               batch_size=4, racing=policy, checkpoint=ckpt))
    resumed = asyncio.run(run_search(_searcher(preset, sim), evaluator, 12, batch_size=4,
                                     racing=policy, checkpoint=ckpt))
    assert [r.key for r in resumed.history] == [r.key for r in straight.history]
    assert [r.result.question_ids for r in resumed.history] == \
        [r.result.question_ids for r in straight.history]
    assert resumed.selection.key == straight.selection.key


def test_selections_at_checkpoints_and_a_calls_budget():
    preset, sim, evaluator = _sim_setup()
    report = asyncio.run(run_search(_searcher(preset, sim), evaluator, 16, batch_size=4,
                                    racing=RacingPolicy((15, 30, 60), confirm=30),
                                    select_at=(8, 16)))
    assert sorted(report.selections) == [8, 16]
    calls8, calls16 = report.selections[8][1], report.selections[16][1]
    assert 0 < calls8 < calls16
    # capped at the race calls of those 16 evaluations (the selections' confirmation runs are
    # not in a run's calls_made): a 64-evaluation run stops for calls, near 16 evaluations
    capped = asyncio.run(run_search(_searcher(preset, sim), _fresh(evaluator), 64, batch_size=4,
                                    racing=RacingPolicy((15, 30, 60), confirm=30),
                                    max_calls=report.calls_made))
    assert capped.stopped == "calls" and capped.n_evals < 64
    assert capped.calls_made >= report.calls_made
    assert np.isfinite(capped.best_value)
