"""pytts: search the compute-optimal test-time-scaling strategy (a collaboration graph of LLM
calls) for a task, a model pool and a FLOPs budget, with Agent-REINFORCE and its baselines."""

from .cost import Budget, CostModel
from .errors import (
                     AgentReplyError,
                     BankError,
                     BankMissError,
                     BudgetError,
                     ConfigError,
                     EndpointUnreachableError,
                     LLMError,
                     LLMTimeoutError,
                     PyttsError,
                     RateLimitError,
                     SandboxError,
                     ServerExitedError,
)
from .graph import MAX_DEPTH, MAX_WIDTH, ROLES, CollaborationGraph, GraphBatch
from .kernels import BACKEND
from .pool import ModelPool, ModelSpec
from .probgraph import ProbGraph, ProbGraphGrad

__version__ = "0.1.0"

__all__ = [
    "AgentReplyError", "BACKEND", "BankError", "BankMissError", "Budget", "BudgetError",
    "CollaborationGraph", "ConfigError", "CostModel", "EndpointUnreachableError", "GraphBatch",
    "LLMError", "LLMTimeoutError", "MAX_DEPTH", "MAX_WIDTH", "ModelPool", "ModelSpec",
    "ProbGraph", "ProbGraphGrad", "PyttsError", "ROLES", "RateLimitError", "SandboxError",
    "ServerExitedError",
]
