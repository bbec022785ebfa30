"""Racing: statistically sound evaluation and selection for every searcher (docs/method.md,
"Evaluation and selection").

A candidate graph is first run on a small batch of the race questions and gets more only while a
*paired* comparison with the incumbent (same questions, same sample indices, so the bank gives
common random numbers) still leaves it a real chance of being better; the first batch, which
has no incumbent, races its members against the best of them (`OpeningRace`). The graph handed
back to the user is protected from the winner's curse: the top few by their race estimate are
run on confirmation questions that played no part in picking them and on fresh samples of every
dev question (the best of them on more samples than the rest), and the best over all its runs
is returned, with its paired difference to the runner-up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError
from ..evaluate import EvalResult
from ..graph import CollaborationGraph

DEFAULT_STAGES = (25, 50, 100, 200)
"""Race questions after each stage: a candidate that survives every stage has the last number.
Each stage doubles the last: a candidate still level with the incumbent after 100 questions is
worth 100 more, because the incumbent (and so the returned graph) is only as sure as the
questions that crowned it (docs/method.md, "Evaluation and selection")."""
RACE_SHARE = 0.8
"""Share of a dev set `RacingPolicy.for_questions` races on; the rest confirms the selection."""
MIN_STAGE = 20
"""The smallest first stage `RacingPolicy.for_questions` makes: fewer questions say too little."""
DEFAULT_Z = 2.0
"""A candidate continues while ``mean + z * stderr`` of its paired difference is above zero:
at z = 2 a candidate as good as the incumbent survives a stage about 98% of the time. At z = 1
(84%) racing cut good candidates against an incumbent whose fixed draws were lucky, and the
returned graphs were worse than without racing (docs/method.md, "Evaluation and selection")."""
DEFAULT_CONFIRM = 50
DEFAULT_TOP = 5
"""Finalists of a selection: the best fully raced graphs by their race accuracy."""
DEFAULT_RESAMPLES = 3
"""Fresh samples of every dev question for the best finalists (`Race.select`). A finalist's
race estimate is mostly the noise of its calls: on the benchmark, choosing among the fully
raced graphs by their accuracy over ten samples of the same 250 questions left a median regret
of 0.3 points, against 0.85 by their accuracy on those questions once, so fresh samples, not
only more questions, tell finalists apart (docs/method.md, "Evaluation and selection")."""
RESAMPLE_KEEP = 2
"""Finalists that go on after the first fresh sample: the best two of all of them by then."""

SAMPLE_STRIDE = 1 << 32
"""A run of a graph on the dev set is keyed by ``question + sample * SAMPLE_STRIDE`` (`run_key`):
sample 0, the one every race uses, is keyed by the question index itself, and a fresh sample
runs the same question again with new draws. Plain integer keys keep the bookkeeping of races,
which runs at every tell, as cheap as it was with questions alone."""


class SubsetEvaluator(Protocol):
    """An evaluator that can score a graph on chosen questions (indices into its question list)
    with a chosen sample number.

    `pytts.evaluate.Evaluator` and `pytts.sim.LatentEvaluator` are. ``len(evaluator.questions)``
    bounds the indices. ``sample`` keys the draws of the calls (0, the default, is the one every
    race uses, so results of different graphs are paired); a result on ``sample > 0`` lists it
    in its ``samples``. A race calls with ``sample`` only when it is above 0, and only when its
    policy has ``resamples``.
    """

    questions: Sequence[Any]

    async def evaluate(self, graph: CollaborationGraph, questions: Sequence[int] | None = None,
                       *, sample: int = 0) -> EvalResult:
        ...


@dataclass(frozen=True)
class PairedDifference:
    """Mean and standard error of ``a - b`` over paired 0/1 outcomes on the same questions."""

    mean: float
    stderr: float
    n: int

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """``mean -/+ z * stderr`` (a normal-approximation interval)."""
        return self.mean - z * self.stderr, self.mean + z * self.stderr


def paired_difference(a: Sequence[bool] | np.ndarray,
                      b: Sequence[bool] | np.ndarray) -> PairedDifference:
    """The paired difference of two graphs' per-question correctness on the same questions.

    The standard error is the sample standard deviation of the per-question differences over
    sqrt(n) (0 for fewer than two questions): with common random numbers most questions agree,
    so this is far smaller than the error of either accuracy alone.
    """
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("paired outcomes must be 1-D")
    n = x.size
    if n == 0:
        return PairedDifference(0.0, math.inf, 0)
    stderr = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    return PairedDifference(float(x.mean()), stderr, n)


def run_key(question: int, sample: int = 0) -> int:
    """The key of the run of ``question`` on ``sample`` (see `SAMPLE_STRIDE`)."""
    return question + sample * SAMPLE_STRIDE


def run_keys(result: EvalResult) -> Sequence[int]:
    """The key of each of ``result``'s runs, in its order."""
    ids = result.question_ids if result.question_ids is not None else range(len(result.correct))
    if result.samples is None:
        return ids
    return [q + s * SAMPLE_STRIDE for q, s in zip(ids, result.samples)]


def outcomes(result: EvalResult) -> dict[int, bool]:
    """Run key (`run_key`; the question index for sample 0) -> correct, for every run
    ``result`` covers."""
    return dict(zip(run_keys(result), result.correct))


def merge_results(parts: Sequence[EvalResult]) -> EvalResult:
    """One result over the union of the parts' runs (each run counted once, from the first part
    that has it; in run-key order: sample 0 first, each sample by question); costs are
    run-weighted means, calls are summed."""
    if not parts:
        raise ValueError("nothing to merge")
    seen: dict[int, tuple[bool, str | None]] = {}
    for part in parts:
        for key, ok, answer in zip(run_keys(part), part.correct, part.answers):
            seen.setdefault(int(key), (bool(ok), answer))
    order = sorted(seen)
    weights = np.array([p.n_questions for p in parts], dtype=np.float64)
    total = weights.sum() or 1.0
    resampled = bool(order) and order[-1] >= SAMPLE_STRIDE
    return EvalResult.from_scores(
        [seen[k][0] for k in order], answers=[seen[k][1] for k in order],
        question_ids=[k % SAMPLE_STRIDE for k in order] if resampled else order,
        samples=[k // SAMPLE_STRIDE for k in order] if resampled else None,
        mean_flops=float(sum(w * p.mean_flops for w, p in zip(weights, parts)) / total),
        mean_latency_s=float(sum(w * p.mean_latency_s for w, p in zip(weights, parts)) / total),
        prompt_tokens=sum(p.prompt_tokens for p in parts),
        completion_tokens=sum(p.completion_tokens for p in parts),
        calls_made=sum(p.calls_made for p in parts),
        calls_served=sum(p.calls_served for p in parts),
        n_failed=sum(p.n_failed for p in parts), wall_s=sum(p.wall_s for p in parts),
        errors=sorted({e for p in parts for e in p.errors})[:5])


@dataclass(frozen=True)
class RacingPolicy:
    """How candidates are raced and how the returned graph is chosen.

    ``stages`` are cumulative numbers of race questions (the first ``stages[-1]`` questions of
    the evaluator); ``z`` is the continuation margin (see `DEFAULT_Z`). ``confirm`` questions
    after the race questions are used only to choose among the ``top`` best raced graphs, which
    also run ``resamples`` fresh samples of every race and confirmation question (all of them
    the first, the best `RESAMPLE_KEEP` the rest). ``stages=(n,)`` turns racing off (every
    candidate runs on all n questions) and keeps the confirmed selection.
    """

    stages: tuple[int, ...] = DEFAULT_STAGES
    z: float = DEFAULT_Z
    confirm: int = DEFAULT_CONFIRM
    top: int = DEFAULT_TOP
    resamples: int = DEFAULT_RESAMPLES

    def __post_init__(self) -> None:
        stages = tuple(int(s) for s in self.stages)
        if not stages or stages[0] < 2 or any(b <= a for a, b in zip(stages, stages[1:])):
            raise ConfigError(f"racing stages must be increasing numbers of questions >= 2, "
                              f"got {self.stages}")
        if not (math.isfinite(self.z) and self.z >= 0):
            raise ConfigError(f"racing z must be a finite number >= 0, got {self.z}")
        if self.confirm < 0 or self.top < 1 or self.resamples < 0:
            raise ConfigError("racing needs confirm >= 0, top >= 1 and resamples >= 0")
        object.__setattr__(self, "stages", stages)

    @classmethod
    def for_questions(cls, n_questions: int, *, race_share: float = RACE_SHARE,
                      min_stage: int = MIN_STAGE) -> RacingPolicy:
        """The racing for a dev set of ``n_questions``: ``race_share`` of them raced in stages
        that double up to all race questions (halving down from them while a stage keeps at
        least ``min_stage`` questions), the rest confirm the selection. 250 questions give
        `DEFAULT_STAGES` and `DEFAULT_CONFIRM`."""
        if n_questions < 2:
            raise ConfigError("racing needs at least 2 questions")
        if not 0 < race_share <= 1 or min_stage < 2:
            raise ConfigError("need 0 < race_share <= 1 and min_stage >= 2")
        n_race = min(n_questions, max(2, round(race_share * n_questions)))
        stages = [n_race]
        while stages[0] // 2 >= min_stage:
            stages.insert(0, stages[0] // 2)
        return cls(tuple(stages), confirm=n_questions - n_race)

    @property
    def n_race(self) -> int:
        return self.stages[-1]

    def fitted(self, n_questions: int) -> RacingPolicy:
        """This policy cut to an evaluator of ``n_questions`` questions: race questions first,
        confirmation questions from what is left (none if nothing is)."""
        if n_questions < 2:
            raise ConfigError("racing needs at least 2 questions")
        stages = tuple(s for s in self.stages if s < n_questions)
        n_race = min(self.n_race, n_questions)
        if not stages or stages[-1] != n_race:
            stages = stages + (n_race,)
        return dataclasses.replace(self, stages=stages,
                                   confirm=min(self.confirm, n_questions - n_race))

    def to_dict(self) -> dict[str, Any]:
        return {"stages": list(self.stages), "z": self.z, "confirm": self.confirm,
                "top": self.top, "resamples": self.resamples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RacingPolicy:
        """The policy of `to_dict` (one saved before ``resamples`` existed made none)."""
        return cls(tuple(data["stages"]), float(data["z"]), int(data["confirm"]),
                   int(data["top"]), int(data.get("resamples", 0)))


def _prefix_length(result: EvalResult) -> int:
    """How many questions ``result`` covers on sample 0, checking that they are the first ones
    (0, 1, ...), as a raced result's are."""
    ids = sorted(k for k in run_keys(result) if k < SAMPLE_STRIDE)
    if ids != list(range(len(ids))):
        raise ValueError("a race continues only from a result on the first questions")
    return len(ids)


@dataclass
class Entrant:
    """A raced graph: its key, graph and everything known of it (merged over evaluations)."""

    key: str
    graph: CollaborationGraph
    result: EvalResult

    @functools.cached_property
    def by_run(self) -> dict[int, bool]:
        """`outcomes` of its result, made once (every selection reads every entrant's)."""
        return outcomes(self.result)


@dataclass(frozen=True)
class Selection:
    """The returned graph and how sure the choice is.

    ``result`` covers the runs (race and confirmation questions, and their fresh samples) the
    graph was run on; ``runner_up`` is the next best of the finalists (None if there was one),
    and ``difference`` the paired difference (returned - runner-up) on the runs both made.
    """

    key: str
    graph: CollaborationGraph
    result: EvalResult
    runner_up: str | None
    difference: PairedDifference | None
    confirm_calls: int = 0
    """LLM calls made to run the finalists on the confirmation questions, whenever that was
    (a finalist of an earlier selection was confirmed then): with the race's calls, what a run
    that stopped here spent."""


class Race:
    """The incumbent and the rules of one run's race (state rebuilt from the told history).

    ``observe`` is called at every tell, in tell order, so the incumbent is a function of the
    history: a resumed run races exactly as the uninterrupted one did.
    """

    def __init__(self, policy: RacingPolicy, n_questions: int) -> None:
        self.policy = policy.fitted(n_questions)
        self.entrants: dict[str, Entrant] = {}
        self.incumbent: str | None = None
        self.confirm_calls: dict[str, int] = {}
        """Per confirmed graph (key), the calls its confirmation run made."""

    @property
    def calls(self) -> int:
        """LLM calls made by `select` (confirmation runs; race runs are counted by the loop)."""
        return sum(self.confirm_calls.values())

    # ---------------------------------------------------------------- racing
    def full(self, entrant: Entrant) -> bool:
        """Whether ``entrant`` has run every race question (on sample 0)."""
        return all(q in entrant.by_run for q in range(self.policy.n_race))

    async def evaluate(self, evaluator: SubsetEvaluator, graph: CollaborationGraph,
                       against: EvalResult | None, *,
                       start: EvalResult | None = None) -> EvalResult:
        """Run ``graph`` stage by stage against the incumbent's result ``against`` (None: no
        incumbent yet, so the candidate runs on every race question).

        ``start`` is a result of ``graph`` on the first race questions (the end of a stage):
        the race goes on from there, first asking whether the candidate still survives."""
        parts = [] if start is None else [start]
        done = 0 if start is None else _prefix_length(start)
        if (start is not None and against is not None and done < self.policy.n_race
                and not self.survives(start, against)):
            return start
        for stage in self.policy.stages:
            if stage <= done:
                continue
            parts.append(await evaluator.evaluate(graph, list(range(done, stage))))
            done = stage
            if against is None or stage == self.policy.n_race:
                continue
            so_far = merge_results(parts)
            if not self.survives(so_far, against):
                break
        return merge_results(parts)

    def opening(self, evaluator: SubsetEvaluator, graphs: Sequence[CollaborationGraph],
                known: Sequence[EvalResult | None]) -> OpeningRace:
        """The `OpeningRace` of a batch asked while there is no incumbent; ``known`` holds the
        results already had of its members (None for the rest)."""
        return OpeningRace(self, evaluator, graphs, known)

    def survives(self, candidate: EvalResult, incumbent: EvalResult) -> bool:
        """True while the candidate may still be better than the incumbent (paired test)."""
        diff = self.compare(candidate, incumbent)
        if diff is None or diff.n < 2:
            return True
        if diff.stderr == 0:
            return diff.mean >= 0
        return diff.mean + self.policy.z * diff.stderr >= 0

    @staticmethod
    def compare(a: EvalResult, b: EvalResult) -> PairedDifference | None:
        """Paired difference ``a - b`` on the runs both cover (None if none)."""
        oa, ob = outcomes(a), outcomes(b)
        common = sorted(set(oa) & set(ob))
        if not common:
            return None
        return paired_difference([oa[q] for q in common], [ob[q] for q in common])

    def observe(self, key: str, graph: CollaborationGraph, result: EvalResult) -> None:
        """Record a told result; a fully raced graph that beats the incumbent on the race
        questions (paired mean > 0) becomes the incumbent."""
        known = self.entrants.get(key)
        merged = result if known is None else merge_results([known.result, result])
        self.entrants[key] = Entrant(key, graph, merged)
        if not self.full(self.entrants[key]):
            return
        if self.incumbent is None or self.incumbent == key:
            self.incumbent = key
            return
        diff = self.compare(merged, self.entrants[self.incumbent].result)
        if diff is not None and diff.mean > 0:
            self.incumbent = key

    @property
    def incumbent_result(self) -> EvalResult | None:
        return None if self.incumbent is None else self.entrants[self.incumbent].result

    def race_mean(self, entrant: Entrant) -> float:
        """Accuracy of ``entrant`` on the race questions it ran on (sample 0)."""
        have = entrant.by_run
        ids = [q for q in range(self.policy.n_race) if q in have]
        return float(np.mean([have[q] for q in ids])) if ids else 0.0

    # ---------------------------------------------------------------- selection
    def finalists(self) -> list[Entrant]:
        """The ``top`` fully raced graphs by race accuracy (the incumbent always among them)."""
        full = [e for e in self.entrants.values() if self.full(e)]
        full.sort(key=lambda e: -self.race_mean(e))
        top = full[: self.policy.top]
        if self.incumbent is not None and all(e.key != self.incumbent for e in top):
            top = top[:-1] + [self.entrants[self.incumbent]]
        return top

    async def select(self, evaluator: SubsetEvaluator) -> Selection | None:
        """The returned graph. Each finalist runs the confirmation questions and a fresh sample
        of every race and confirmation question; the best `RESAMPLE_KEEP` by then run the
        remaining ``resamples``, and the best of those over all its runs wins (the runner-up is
        the other). Runs made before (an earlier selection's) are not made again."""
        finalists = self.finalists()
        if not finalists:
            return None
        n_race, confirm = self.policy.n_race, self.policy.confirm
        dev = list(range(n_race + confirm))
        alive = finalists
        for sample in range(self.policy.resamples + 1):
            if sample == 2:
                alive = self._ranked(alive)[:RESAMPLE_KEEP]
            for e in alive:
                await self._run(evaluator, e, dev[n_race:] if sample == 0 else dev, sample)
        confirm_calls = sum(self.confirm_calls.get(e.key, 0) for e in finalists)
        # the winner is one that ran every sample: a finalist left out after the first ran
        # fewer runs, so its accuracy is the noisier
        ranked = self._ranked(alive)
        best = ranked[0]
        if len(ranked) == 1:
            return Selection(best.key, best.graph, best.result, None, None, confirm_calls)
        second = ranked[1]
        return Selection(best.key, best.graph, best.result, second.key,
                         self.compare(best.result, second.result), confirm_calls)

    def _ranked(self, entrants: list[Entrant]) -> list[Entrant]:
        """``entrants`` (as they now are) best first by accuracy over all their runs; stable,
        so on equal accuracy the earlier (higher race estimate) comes first."""
        current = [self.entrants[e.key] for e in entrants]
        return sorted(current, key=lambda e: -e.result.accuracy)

    async def _run(self, evaluator: SubsetEvaluator, entrant: Entrant,
                   questions: list[int], sample: int) -> None:
        """Run ``entrant`` on the ``questions`` it has not run on ``sample`` yet; count the
        calls as its confirmation's."""
        known = self.entrants[entrant.key]
        have = known.by_run
        missing = [q for q in questions if run_key(q, sample) not in have]
        if not missing:
            return
        extra = await (evaluator.evaluate(known.graph, missing, sample=sample) if sample
                       else evaluator.evaluate(known.graph, missing))
        self.confirm_calls[known.key] = self.confirm_calls.get(known.key, 0) + extra.calls_made
        self.entrants[known.key] = Entrant(known.key, known.graph,
                                           merge_results([known.result, extra]))


class OpeningRace:
    """The race of a batch asked while no graph has been raced to the end (the first batch):
    with no incumbent, its members race each other.

    Every member runs the opening questions, the first two stages (one stage says too little
    to pick a leader among graphs nothing is known of). The best there (the earliest on ties)
    runs every race question, and the others then race against it as later candidates race
    against the incumbent: a member far behind stops at the opening instead of running every
    race question (docs/method.md, "Evaluation and selection"). Members known already (told
    before a run was interrupted) take part with their results and are not run again, so a
    resumed batch picks the same leader and races as the uninterrupted one did; a known leader
    is raced against as it is known (a graph told through ask/tell may cover other questions).
    """

    def __init__(self, race: Race, evaluator: SubsetEvaluator,
                 graphs: Sequence[CollaborationGraph],
                 known: Sequence[EvalResult | None]) -> None:
        if len(graphs) != len(known):
            raise ValueError("one known result (or None) per member")
        stages = race.policy.stages
        self.n_opening = stages[min(1, len(stages) - 1)]
        self._race, self._evaluator = race, evaluator
        self._graphs, self._known = list(graphs), list(known)
        self._openings: asyncio.Future[list[EvalResult | BaseException]] | None = None
        self._leader_run: asyncio.Future[EvalResult] | None = None

    async def evaluate(self, member: int) -> EvalResult:
        """The race result of member ``member`` (an index into the batch's graphs). A member
        whose opening raised raises that error; the others race without it."""
        openings = await self._opening_results()
        opened = openings[member]
        if isinstance(opened, BaseException):
            raise opened
        known_member = self._known[member]
        if known_member is not None:  # not run again
            return known_member
        ran = {i: r for i, r in enumerate(openings) if not isinstance(r, BaseException)}
        leader = max(ran, key=lambda i: (self._opening_accuracy(ran[i]), -i))
        known = self._known[leader]
        if known is not None:  # what is known of the leader is all it races with
            lead = known
        else:
            if self._leader_run is None:
                self._leader_run = asyncio.ensure_future(self._race.evaluate(
                    self._evaluator, self._graphs[leader], None, start=ran[leader]))
            lead = await self._leader_run
        if member == leader:
            return lead
        return await self._race.evaluate(self._evaluator, self._graphs[member], lead,
                                         start=opened)

    def _opening_results(self) -> asyncio.Future[list[EvalResult | BaseException]]:
        """Every member's result on the opening questions (its known result, or the error its
        evaluation raised), computed once for all members."""
        if self._openings is None:
            self._openings = asyncio.ensure_future(asyncio.gather(
                *(self._open(i) for i in range(len(self._graphs))), return_exceptions=True))
        return self._openings

    async def _open(self, member: int) -> EvalResult:
        known = self._known[member]
        if known is not None:
            return known
        return await self._evaluator.evaluate(self._graphs[member], list(range(self.n_opening)))

    def _opening_accuracy(self, result: EvalResult) -> float:
        """Accuracy on the opening questions (a known result told on other questions: its
        accuracy)."""
        have = outcomes(result)
        on_opening = [have[q] for q in range(self.n_opening) if q in have]
        return float(np.mean(on_opening)) if on_opening else result.accuracy
