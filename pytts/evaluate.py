"""Evaluator: one graph on a dataset -> EvalResult (accuracy with its interval, cost, latency).

Questions run concurrently under one global limit; answer checks that block (code in a sandbox)
run in worker threads so the event loop keeps serving LLM calls.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from scipy.special import ndtri

from .defaults import QUESTION_CONCURRENCY
from .errors import EndpointUnreachableError, LLMError
from .execute import ExecutionResult, GraphExecutor
from .graph import CollaborationGraph
from .tasks.base import Question


@dataclass
class EvalResult:
    """How one graph did on a set of questions.

    ``accuracy`` counts a failed question (no sink answered) as wrong; ``ci_low``/``ci_high`` is
    the 95% Wilson interval; ``mean_flops``/``mean_latency_s`` are per question, measured from
    real usage; ``calls_made``/``calls_served`` split the calls between servers and the bank.
    ``question_ids`` are the indices (into the evaluator's question list) of the questions
    ``correct`` and ``answers`` refer to, in that order; None means all of them, in order.
    ``samples`` are the sample numbers of those runs (None: sample 0 for all, as every run but
    a selection's fresh samples is; see `pytts.search.racing.run_key`).
    """

    accuracy: float
    ci_low: float
    ci_high: float
    n_questions: int
    correct: list[bool]
    answers: list[str | None]
    mean_flops: float
    mean_latency_s: float
    prompt_tokens: int
    completion_tokens: int
    calls_made: int
    calls_served: int
    n_failed: int = 0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    question_ids: list[int] | None = None
    samples: list[int] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EvalResult:
        return cls(**data)

    @classmethod
    def from_scores(cls, correct: Sequence[bool], *, mean_flops: float, mean_latency_s: float,
                    answers: Sequence[str | None] | None = None, **extra) -> EvalResult:
        """Build from per-question correctness (accuracy and interval computed here)."""
        k, n = int(sum(correct)), len(correct)
        low, high = wilson_interval(k, n)
        return cls(accuracy=k / n if n else 0.0, ci_low=low, ci_high=high, n_questions=n,
                   correct=[bool(c) for c in correct],
                   answers=list(answers) if answers is not None else [None] * n,
                   mean_flops=float(mean_flops), mean_latency_s=float(mean_latency_s),
                   prompt_tokens=int(extra.pop("prompt_tokens", 0)),
                   completion_tokens=int(extra.pop("completion_tokens", 0)),
                   calls_made=int(extra.pop("calls_made", 0)),
                   calls_served=int(extra.pop("calls_served", 0)), **extra)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``(0, 1)`` when n = 0), two-sided,
    without continuity correction.

    Written out (Newcombe 1998, method 3) in the operation order of
    ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``, which gives the same floats,
    because importing scipy.stats costs more than half a second.
    """
    if n == 0:
        return 0.0, 1.0
    z = float(ndtri(0.5 + 0.5 * confidence))
    p = successes / n
    denom = 2 * (n + z ** 2)
    center = (2 * n * p + z ** 2) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z ** 2)
    low = 0.0 if successes == 0 else center - delta
    high = 1.0 if successes == n else center + delta
    return low, high


class Evaluator:
    """Scores graphs on a fixed list of questions with a `GraphExecutor`.

    ``concurrency`` bounds how many questions run at once (each may issue several calls).
    """

    def __init__(self, executor: GraphExecutor, questions: Sequence[Question] | None = None,
                 *, concurrency: int = QUESTION_CONCURRENCY) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.executor = executor
        self.questions = list(questions if questions is not None else executor.task.questions)
        if not self.questions:
            raise ValueError("the evaluator has no questions")
        self.concurrency = concurrency

    @property
    def task(self):
        return self.executor.task

    async def evaluate(self, graph: CollaborationGraph, questions: Sequence[int] | None = None,
                       *, sample: int = 0) -> EvalResult:
        """Run ``graph`` on every question, or on the questions at indices ``questions``, with
        sample number ``sample`` (`GraphExecutor.run`); LLMError if every question failed.

        A dead endpoint stops the evaluation early rather than failing question after question:
        `ServerExitedError` (its server process is gone) propagates at once, and
        `EndpointUnreachableError` is raised as soon as the first ``concurrency`` questions to
        finish (one wave run together) all failed only because they could not reach one
        endpoint.
        """
        start = time.perf_counter()
        chosen = self.questions
        if questions is not None:
            ids = [int(i) for i in questions]
            if not ids or min(ids) < 0 or max(ids) >= len(self.questions):
                raise ValueError(f"question indices must be in 0..{len(self.questions) - 1} "
                                 f"and not empty, got {questions!r}")
            chosen = [self.questions[i] for i in ids]
        limit = asyncio.Semaphore(self.concurrency)

        async def one(question: Question) -> tuple[ExecutionResult, bool]:
            async with limit:
                run = await self.executor.run(graph, question, sample=sample)
            ok = False
            if not run.failed:
                ok = (await asyncio.to_thread(self.task.check, question, run.answer)
                      if self.task.slow_check else self.task.check(question, run.answer))
            return run, ok

        tasks = [asyncio.ensure_future(one(q)) for q in chosen]
        try:
            await self._stop_on_outage(tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        runs = [t.result() for t in tasks]
        failed = [r for r, _ in runs if r.failed]
        if len(failed) == len(runs):
            raise LLMError(f"every question failed; first: {failed[0].error}")
        n = len(runs)
        return EvalResult.from_scores(
            [ok for _, ok in runs], answers=[r.answer for r, _ in runs],
            mean_flops=sum(r.flops for r, _ in runs) / n,
            mean_latency_s=sum(r.latency_s for r, _ in runs) / n,
            prompt_tokens=sum(r.prompt_tokens for r, _ in runs),
            completion_tokens=sum(r.completion_tokens for r, _ in runs),
            calls_made=sum(r.calls_made for r, _ in runs),
            calls_served=sum(r.calls_served for r, _ in runs),
            n_failed=len(failed), wall_s=time.perf_counter() - start,
            errors=sorted({r.error for r in failed if r.error})[:5],
            question_ids=ids if questions is not None else list(range(n)) if sample else None,
            samples=[sample] * n if sample else None)

    async def _stop_on_outage(self,
                              tasks: Sequence[asyncio.Future[tuple[ExecutionResult, bool]]]
                              ) -> None:
        """Wait for every question; raise as soon as one endpoint is known to be down."""
        wave = min(self.concurrency, len(tasks))
        down: list[EndpointUnreachableError] | None = []  # None once a run shows otherwise
        for finished in asyncio.as_completed(tasks):
            run, _ = await finished
            if down is None:
                continue
            cause = run.unreachable
            if cause is None or (down and cause.endpoint != down[0].endpoint):
                down = None
                continue
            down.append(cause)
            if len(down) == wave:
                raise EndpointUnreachableError(
                    f"no call of the first {wave} question(s) reached the endpoint, so the "
                    f"evaluation stopped; start its server or fix the endpoint in the pool "
                    f"file. Last error: {cause.reason}", endpoint=cause.endpoint)

    def evaluate_sync(self, graph: CollaborationGraph) -> EvalResult:
        """`evaluate` from synchronous code (runs its own event loop)."""
        return asyncio.run(self.evaluate(graph))


