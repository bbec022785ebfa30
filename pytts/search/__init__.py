"""Search for the best collaboration graph: searchers (ask/tell), objectives, and the loop.

`AgentReinforce` is the paper's method; `RandomSearch`, `Exhaustive`, `Reinforce`, `TPE` and
`LLMOptimizer` are the baselines. `run_search` drives any of them with an evaluator,
checkpointing after every evaluation.
"""

from ..registry import SEARCHER_NAMES, searcher_class
from .agent import Agent, Feedback, HeuristicAgent, LLMAgent
from .agent_reinforce import AgentReinforce, TrustRegion, move_toward, pilot_graphs
from .base import Searcher
from .checkpoint import Checkpoint
from .exhaustive import Exhaustive, feasible_graphs
from .history import TrialRecord
from .llm_io import AgentContext, Update
from .llm_optimizer import LLMOptimizer, OfflineProposer
from .moves import neighbours, shrink_to_budget
from .objective import (
                        Accuracy,
                        AccuracyLatency,
                        Objective,
                        ParetoFront,
                        ParetoPoint,
                        dominates,
                        objective_from_dict,
)
from .random_search import RandomSearch
from .reinforce import Reinforce
from .run import SearchProgress, SearchReport, run_search, run_search_sync
from .tpe import TPE

SEARCHERS: dict[str, type[Searcher]] = {name: searcher_class(name) for name in SEARCHER_NAMES}
"""Searcher classes by their ``name`` (what a CLI flag or a config file says), in the order of
`pytts.registry.SEARCHER_NAMES`."""

__all__ = [
    "Accuracy", "AccuracyLatency", "Agent", "AgentContext", "AgentReinforce", "Checkpoint",
    "Exhaustive", "Feedback", "HeuristicAgent", "LLMAgent", "LLMOptimizer", "Objective",
    "OfflineProposer", "ParetoFront", "ParetoPoint", "RandomSearch", "Reinforce", "SEARCHERS",
    "SearchProgress", "SearchReport", "Searcher", "TPE", "TrialRecord", "TrustRegion", "Update",
    "dominates", "feasible_graphs", "move_toward", "neighbours", "objective_from_dict",
    "pilot_graphs", "run_search", "run_search_sync", "shrink_to_budget",
]
