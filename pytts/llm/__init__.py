"""The LLM layer: the client protocol and its implementations (OpenAI-compatible servers, the
ResponseBank cache, the embedded local model). The simulated pool lives in `pytts.sim`."""

from .bank import BankedClient, ResponseBank
from .base import Completion, LLMClient, Message, SamplingParams
from .local import LocalServer, local_pool_specs, serve_local
from .openai import OpenAIClient, RetryPolicy
from .router import RoutedClient

__all__ = ["BankedClient", "Completion", "LLMClient", "LocalServer", "Message", "OpenAIClient",
           "ResponseBank", "RetryPolicy", "RoutedClient", "SamplingParams", "local_pool_specs",
           "serve_local"]
