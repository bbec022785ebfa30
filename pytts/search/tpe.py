"""TPE: Optuna's Tree-structured Parzen Estimator over an encoding of the graph's choices.

Optuna is an optional dependency (``pip install "pytts[optuna]"``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluate import EvalResult
from ..graph import ROLES, CollaborationGraph
from ..probgraph import ProbGraph
from .base import Searcher
from .history import TrialRecord
from .moves import shrink_to_budget

log = logging.getLogger("pytts.search")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError('the TPE searcher needs optuna: pip install "pytts[optuna]"') from None
    return optuna


class TPE(Searcher):
    """Bayesian optimisation with Optuna's `TPESampler` through ``study.ask()/tell()``.

    Encoding (define-by-run, so deeper choices only exist when used): ``depth`` in 1..D; per
    layer ``width_l`` in 1..W; per node ``model_l_i`` (a pool name) and, after the first layer,
    ``role_l_i``; per possible edge ``edge_l_p_i`` in {0, 1}. A node whose edges all came out 0
    reads slot ``min(i, width_{l-1} - 1)`` of the previous layer (like the probabilistic
    graph's forced predecessor), so every parameter set decodes to a valid graph.

    Feasibility by repair: a decoded graph over the budget is shrunk by `shrink_to_budget`
    (remove the node that saves most FLOPs until it fits), and the trial is told the value of
    the repaired graph - the repair is part of the objective TPE models. (Telling infeasible
    trials as failed would leave TPE blind to the budget, and on tight budgets most of its
    random start-up trials would be wasted.) A proposal repeating a told graph is told that
    graph's value at once (no evaluation); one repeating a pending graph is marked failed; after
    ``max_retries`` such proposals in a row a random unseen feasible graph (uniform
    probabilistic graph) is enqueued as the trial instead (``n_fallbacks``); when uniform
    samples find none either, the space within the budget is taken as exhausted and TPE
    proposes nothing more (`run_search` then stops with ``"exhausted"``). Every repeat is a
    trial, and an ask costs time in proportion to the trials: on a budget that leaves few
    graphs, 20 retries made a 64-evaluation search ask ~700 times (80 s of CPU); 5 give the
    same returned graphs in the benchmark (paired over 96 runs) at half the CPU.

    Determinism: each ``study.ask()`` gets a fresh `TPESampler` seeded from this searcher's RNG;
    the sampler keeps no other state, so the study's trials and the RNG fully determine what
    comes next. A trial is saved once it has finished, as an entry of ``journal``; the running
    ones (asked, not told) are saved with the rest of the state.
    """

    name = "tpe"

    def __init__(self, *args: Any, n_startup_trials: int = 10, max_retries: int = 5,
                 multivariate: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._optuna = _optuna()
        self._optuna.logging.set_verbosity(self._optuna.logging.WARNING)
        self.n_startup_trials = int(n_startup_trials)
        self.max_retries = int(max_retries)
        self.multivariate = bool(multivariate)
        self.study = self._new_study()
        self.n_repaired = 0
        self.n_repeats = 0
        self.n_fallbacks = 0
        self._trial_of: dict[str, list[int]] = {}
        self._uniform = ProbGraph.uniform(*self.template, self.model_names)

    def _new_study(self):
        return self._optuna.create_study(direction="maximize", sampler=self._sampler(0))

    def _sampler(self, seed: int):
        with warnings.catch_warnings():
            # multivariate/group are flagged experimental; they are what conditional spaces need
            warnings.simplefilter("ignore", self._optuna.exceptions.ExperimentalWarning)
            return self._optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=self.n_startup_trials,
                multivariate=self.multivariate, group=self.multivariate)

    # ------------------------------------------------------------- encoding
    def _decode(self, trial) -> CollaborationGraph:
        d_max, w_max = self.template
        depth = trial.suggest_int("depth", 1, d_max)
        model = np.full((d_max, w_max), -1, np.int16)
        role = np.zeros((d_max, w_max), np.int8)
        edges = np.zeros((d_max - 1, w_max, w_max), np.uint8)
        widths = []
        for l in range(depth):
            w = trial.suggest_int(f"width_{l}", 1, w_max)
            widths.append(w)
            for i in range(w):
                name = trial.suggest_categorical(f"model_{l}_{i}", list(self.model_names))
                model[l, i] = self.model_names.index(name)
                if l > 0:
                    role[l, i] = ROLES.index(trial.suggest_categorical(f"role_{l}_{i}",
                                                                       list(ROLES)))
                    for p in range(widths[l - 1]):
                        edges[l - 1, p, i] = trial.suggest_int(f"edge_{l}_{p}_{i}", 0, 1)
                    if not edges[l - 1, :, i].any():
                        edges[l - 1, min(i, widths[l - 1] - 1), i] = 1
        return CollaborationGraph(model, role, edges, self.model_names)

    def encode(self, graph: CollaborationGraph) -> dict[str, Any]:
        """The parameters that `_decode` turns into ``graph`` (used to enqueue fallbacks)."""
        params: dict[str, Any] = {"depth": graph.depth}
        widths = graph.layer_widths
        for l, w in enumerate(widths):
            params[f"width_{l}"] = w
            for i in range(w):
                params[f"model_{l}_{i}"] = self.model_names[graph.model[l, i]]
                if l > 0:
                    params[f"role_{l}_{i}"] = ROLES[graph.role[l, i]]
                    for p in range(widths[l - 1]):
                        params[f"edge_{l}_{p}_{i}"] = int(graph.edges[l - 1, p, i])
        return params

    # ------------------------------------------------------------- ask / tell
    async def _propose(self, n: int) -> list[CollaborationGraph]:
        out: list[CollaborationGraph] = []
        while len(out) < n:
            graph = self._propose_one({g.canonical_key() for g in out})
            if graph is None:
                break  # the space within the budget is exhausted: propose what we have
            out.append(graph)
        return out

    def _propose_one(self, taken: set[str]) -> CollaborationGraph | None:
        fail = self._optuna.trial.TrialState.FAIL
        for _ in range(self.max_retries):
            trial = self._ask()
            decoded = self._decode(trial)
            graph = shrink_to_budget(decoded, self.cost, self.budget)
            self.n_repaired += graph is not decoded
            key = graph.canonical_key()
            if key in self._value_by_key:
                self.n_repeats += 1
                self._finished(self.study.tell(trial, self._value_by_key[key]))
            elif key in taken or self.seen(graph):
                self.n_repeats += 1
                self._finished(self.study.tell(trial, state=fail))
            else:
                self._trial_of.setdefault(key, []).append(trial.number)
                return graph
        fresh = self.sample_unseen(self._uniform, 1, exclude=taken, fill=False)
        if not fresh:
            # Neither TPE nor hundreds of uniform draws found a graph not seen yet: the few
            # graphs within the budget are all known. Asking on would only grow the study.
            log.info("TPE found no new graph in %d proposals nor in uniform samples; the "
                     "space within the budget looks exhausted", self.max_retries)
            return None
        self.n_fallbacks += 1
        log.info("TPE found no new graph in %d proposals; enqueuing a random one",
                 self.max_retries)
        graph = fresh[0]
        self.study.enqueue_trial(self.encode(graph))
        trial = self._ask()
        if self._decode(trial).canonical_key() != graph.canonical_key():
            raise RuntimeError("TPE encoding does not round-trip a graph")
        self._trial_of.setdefault(graph.canonical_key(), []).append(trial.number)
        return graph

    def _ask(self):
        self.study.sampler = self._sampler(self._next_seed() % 2 ** 32)
        return self.study.ask()

    async def _observe(self, graph: CollaborationGraph, result: EvalResult,
                       record: TrialRecord) -> None:
        numbers = self._trial_of[record.key]
        self._finished(self.study.tell(numbers.pop(0), record.value))
        if not numbers:
            del self._trial_of[record.key]

    # ------------------------------------------------------------- persistence
    def _finished(self, trial) -> None:
        """Journal a trial that has just finished (it never changes again)."""
        self.journal.append(self._trial_to_dict(trial))

    def _trial_to_dict(self, trial) -> dict[str, Any]:
        dist_json = self._optuna.distributions.distribution_to_json
        return {"number": trial.number, "state": trial.state.name, "value": trial.value,
                "params": trial.params,
                "distributions": {k: dist_json(v) for k, v in trial.distributions.items()}}

    def _extra_state(self) -> dict[str, Any]:
        running = sorted(n for numbers in self._trial_of.values() for n in numbers)
        trials = self.study.get_trials(deepcopy=False)
        return {"running": [self._trial_to_dict(trials[n]) for n in running],
                "trial_of": self._trial_of, "n_repaired": self.n_repaired,
                "n_repeats": self.n_repeats, "n_fallbacks": self.n_fallbacks}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        optuna = self._optuna
        dist_from = optuna.distributions.json_to_distribution
        self.study = self._new_study()
        trials = sorted(self.journal + state["running"], key=lambda t: t["number"])
        if [t["number"] for t in trials] != list(range(len(trials))):
            raise ConfigError("cannot resume: the saved TPE trials are not numbered 0..n-1 "
                              "(the journal does not match the state)")
        for t in trials:
            self.study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState[t["state"]], value=t["value"],
                params=t["params"],
                distributions={k: dist_from(v) for k, v in t["distributions"].items()}))
        self._trial_of = {k: list(v) for k, v in state["trial_of"].items()}
        self.n_repaired = int(state["n_repaired"])
        self.n_repeats = int(state["n_repeats"])
        self.n_fallbacks = int(state["n_fallbacks"])

