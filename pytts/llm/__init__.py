"""The LLM layer: the client protocol and its implementations (OpenAI-compatible servers, the
ResponseBank cache, the simulated pool, the embedded local model)."""

from .bank import BankedClient, ResponseBank
from .base import Completion, LLMClient, Message, SamplingParams
from .local import LocalServer, local_pool_specs, serve_local
from .openai import OpenAIClient, RetryPolicy
from .router import RoutedClient
from .sim import SimulatedPool

__all__ = ["BankedClient", "Completion", "LLMClient", "LocalServer", "Message", "OpenAIClient",
           "ResponseBank", "RetryPolicy", "RoutedClient", "SamplingParams", "SimulatedPool",
           "local_pool_specs", "serve_local"]
