"""GraphExecutor: runs one collaboration graph on one question, node by node, asynchronously.

A node starts as soon as all its predecessors are done, so parallel branches overlap. Each node
is one LLM call; its answer is extracted by the task; the sinks' answers are interned and voted
by the kernels. A failed node is reported and the vote proceeds on what arrived; only when no sink
answered is the whole run a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

from .cost import FLOPS_PER_PARAM_TOKEN
from .defaults import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from .errors import EndpointUnreachableError, LLMError, LLMTimeoutError, ServerExitedError
from .graph import CollaborationGraph
from .kernels import intern_answers, vote
from .llm.base import Completion, LLMClient
from .pool import ModelPool
from .prompts import node_messages
from .tasks.base import Question, Task


@dataclass
class NodeResult:
    """What one node did: its completion (text, usage, latency) and extracted answer, or error.

    ``skipped``: it made no call because every predecessor failed; ``unreachable``: its call
    failed because the endpoint gave no HTTP answer.
    """

    layer: int
    slot: int
    model: str
    role: str
    text: str | None = None
    answer: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_s: float = 0.0
    cached: bool = False
    error: str | None = None
    skipped: bool = False
    unreachable: EndpointUnreachableError | None = field(default=None, repr=False)


@dataclass
class ExecutionResult:
    """One graph on one question: the voted answer and what it cost.

    ``flops`` come from the real token usage of every call x the model's parameters;
    ``latency_s`` is the critical path of the calls' recorded latencies (so a replay from the
    ResponseBank reports the latency the calls originally had); ``wall_s`` is this run's clock.
    """

    answer: str | None
    support: float
    nodes: list[NodeResult]
    flops: float
    latency_s: float
    wall_s: float
    prompt_tokens: int
    completion_tokens: int
    calls_made: int
    calls_served: int
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def unreachable(self) -> EndpointUnreachableError | None:
        """The failure of every call of this run when all of them failed to reach one endpoint,
        else None."""
        causes = [n.unreachable for n in self.nodes if not n.skipped]
        first = causes[0] if causes else None
        if first is None or any(c is None or c.endpoint != first.endpoint for c in causes):
            return None
        return first


def call_key(model: str, messages: list) -> str:
    """A string identifying one call's model and prompt (messages as sent)."""
    return json.dumps([model, messages], sort_keys=True)


def node_seed(base_seed: int, key: str, occurrence: int, sample: int = 0) -> int:
    """Seed of a call: equal for equal (model, prompt, occurrence, sample) in any graph.

    ``key`` is the call's `call_key`; ``occurrence`` numbers the nodes of one graph that make
    the same call, so a graph's parallel samples differ while two graphs that make the same k-th
    call share its answer (common random numbers across candidates). ``sample`` numbers runs of
    the same question: sample 1, 2, ... draw afresh (sample 0 keeps the seeds it always had).
    """
    tag = f"{base_seed}|{occurrence}|{key}" if not sample else \
        f"{base_seed}|{occurrence}|s{sample}|{key}"
    digest = hashlib.blake2b(tag.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


@dataclass
class GraphExecutor:
    """Runs graphs of ``pool`` models on ``task`` questions through ``client``."""

    client: LLMClient
    pool: ModelPool
    task: Task
    seed: int = 0
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    timeout_s: float | None = None
    _params: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._params = np.array([m.params_b for m in self.pool])

    async def run(self, graph: CollaborationGraph, question: Question, *,
                  sample: int = 0) -> ExecutionResult:
        """Execute ``graph`` on ``question``; a failed call is recorded (see `error`), not raised.
        ``sample`` numbers runs of the same question (`node_seed`).

        Except `ServerExitedError`: the server process behind an endpoint is gone, so no later
        call to it can succeed and the run stops there.
        """
        start = time.perf_counter()
        if tuple(graph.model_names) != self.pool.names:
            raise ValueError("the graph's model names differ from the executor's pool")
        nodes = {(n.layer, n.slot): NodeResult(n.layer, n.slot, n.model_name, n.role)
                 for n in graph.nodes()}
        done: dict[tuple[int, int], asyncio.Future] = {
            key: asyncio.get_running_loop().create_future() for key in nodes}
        occurrences: dict[str, int] = {}

        async def run_node(key: tuple[int, int]) -> None:
            layer, slot = key
            result = nodes[key]
            preds = [(layer - 1, p) for p in graph.predecessors(layer, slot)]
            for pred in preds:
                await done[pred]
            inputs = [text for p in preds if (text := nodes[p].text) is not None]
            wait = max((nodes[p].finish_s for p in preds), default=0.0)
            try:
                if preds and not inputs:
                    result.skipped = True
                    raise LLMError("every predecessor failed", model=result.model)
                completion = await self._call(result, inputs, question, occurrences, sample)
                result.text = completion.text
                result.prompt_tokens = completion.prompt_tokens
                result.completion_tokens = completion.completion_tokens
                result.latency_s = completion.latency_s
                result.cached = completion.cached
                result.answer = self.task.extract(question, completion.text)
            except ServerExitedError:
                raise
            except LLMError as exc:
                result.error = str(exc) or type(exc).__name__
                if isinstance(exc, EndpointUnreachableError):
                    result.unreachable = exc.with_traceback(None)  # frames are not needed
            result.finish_s = wait + result.latency_s
            done[key].set_result(None)

        tasks = [asyncio.ensure_future(run_node(key)) for key in nodes]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        return self._summarise(graph, nodes, time.perf_counter() - start)

    async def _call(self, node: NodeResult, inputs: list[str], question: Question,
                    occurrences: dict[str, int], sample: int) -> Completion:
        spec = self.pool[node.model]
        task_messages = self.task.prompt(question, spec.prompt_style)
        messages = node_messages(task_messages, node.role, inputs)
        key = call_key(node.model, messages)
        occurrence = occurrences.get(key, 0)
        occurrences[key] = occurrence + 1
        temperature = spec.temperature if spec.temperature is not None else self.temperature
        call = self.client.complete(node.model, messages, n=1, temperature=temperature,
                                    max_tokens=self.max_tokens,
                                    seed=node_seed(self.seed, key, occurrence, sample))
        try:
            completions = await (asyncio.wait_for(call, self.timeout_s) if self.timeout_s
                                 else call)
        except asyncio.TimeoutError:
            raise LLMTimeoutError(f"no reply within timeout_s = {self.timeout_s}s",
                                  model=node.model) from None
        if not completions:
            raise LLMError("the server returned no completion", model=node.model)
        return completions[0]

    def _summarise(self, graph: CollaborationGraph, nodes: dict, wall_s: float
                   ) -> ExecutionResult:
        ordered = [nodes[k] for k in sorted(nodes)]
        sinks = graph.vote_order()
        sink_answers = [nodes[k].answer for k in sinks]
        answered = [n for n in (nodes[k] for k in sinks) if n.error is None]
        ids = intern_answers(sink_answers).reshape(1, -1)
        winner, support = vote(ids)
        answer = None
        if winner[0] != -1:
            answer = sink_answers[int(np.flatnonzero(ids[0] == winner[0])[0])]
        flops = sum(FLOPS_PER_PARAM_TOKEN * 1e9 * self._params[self.pool.index(n.model)]
                    * (n.prompt_tokens + n.completion_tokens) for n in ordered)
        error = None if answered else "no sink answered: " + "; ".join(
            sorted({n.error for n in ordered if n.error}))
        return ExecutionResult(
            answer=answer, support=float(support[0]), nodes=ordered, flops=float(flops),
            latency_s=max(n.finish_s for n in ordered), wall_s=wall_s,
            prompt_tokens=sum(n.prompt_tokens for n in ordered),
            completion_tokens=sum(n.completion_tokens for n in ordered),
            calls_made=sum(1 for n in ordered if n.error is None and not n.cached),
            calls_served=sum(1 for n in ordered if n.cached), error=error)

