"""The search configuration: one flat TOML table, every key also a ``pytts search`` flag.

Validation happens here, before anything is written or started: an error names the key and the
allowed values, so the command can exit with one line.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

SEARCHERS = ("agent-reinforce", "reinforce", "random", "tpe", "llm-optimizer", "exhaustive")
OBJECTIVES = ("accuracy", "accuracy-latency")
TASKS = ("sim", "arith", "math", "mmlu", "humaneval")
AGENTS = ("heuristic", "llm")


def _choice(allowed: tuple[str, ...]) -> dict:
    return {"allowed": allowed}


@dataclass
class SearchConfig:
    """Everything a search run needs. ``None`` means "the mode's default" (see `resolve`).

    ``pool`` is a pool file (TOML/JSON), or "demo", "local" (the embedded model) or a simulated
    preset name ("sim:math-like"). ``task`` with ``dataset`` (a file, for math/mmlu) and
    ``n_questions`` the dev-set size. ``budget`` is FLOPs ("2e12") or "N x MODEL".
    ``agent_context_tokens`` is the agent model's context window, for servers that do not
    report it (the agent's prompts are compacted to fit it).
    """

    name: str | None = None
    pool: str = "sim:math-like"
    task: str = field(default="sim", metadata=_choice(TASKS))
    dataset: str | None = None
    n_questions: int = 40
    budget: str | None = None
    searcher: str = field(default="agent-reinforce", metadata=_choice(SEARCHERS))
    n_evals: int = 32
    batch_size: int = 4
    depth: int | None = None
    width: int | None = None
    objective: str = field(default="accuracy", metadata=_choice(OBJECTIVES))
    latency_penalty: float = 0.01
    seed: int = 0
    concurrency: int = 16
    timeout_s: float = 120.0
    max_tokens: int = 512
    agent: str = field(default="heuristic", metadata=_choice(AGENTS))
    agent_endpoint: str | None = None
    agent_model: str | None = None
    agent_context_tokens: int | None = None
    bank: str | None = None
    ray: str | None = None
    runs_dir: str = "runs"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """ConfigError naming the key for any out-of-range or unknown value."""
        for f in fields(self):
            allowed = f.metadata.get("allowed")
            value = getattr(self, f.name)
            if allowed and value not in allowed:
                raise ConfigError(f"{f.name} = {value!r} is not allowed; use one of: "
                                  f"{', '.join(allowed)}")
        for key, low in (("n_questions", 1), ("n_evals", 1), ("batch_size", 1),
                         ("concurrency", 1), ("max_tokens", 1)):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < low:
                raise ConfigError(f"{key} must be an integer >= {low}, got "
                                  f"{getattr(self, key)!r}")
        for key, low in (("depth", 1), ("width", 1), ("agent_context_tokens", 256)):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < low):
                raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
        for key in ("latency_penalty", "timeout_s"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{key} must be a finite number >= 0, got {value!r}")
        if self.agent == "llm" and not (self.agent_endpoint and self.agent_model):
            raise ConfigError("agent = 'llm' needs agent_endpoint and agent_model")
        if self.task in ("math", "mmlu") and not self.dataset:
            raise ConfigError(f"task = {self.task!r} needs dataset = a file of questions")
        if self.dataset and not Path(self.dataset).is_file():
            raise ConfigError(f"dataset = {self.dataset!r}: no such file")
        if self.pool.startswith("sim:") != (self.task == "sim"):
            raise ConfigError("task = 'sim' goes with pool = 'sim:PRESET' (and only with it)")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "config") -> "SearchConfig":
        unknown = sorted(set(data) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: "
                              f"{', '.join(cls.keys())}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "SearchConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} does not parse: {exc}") from None
        return cls.from_mapping(data, source=str(path))

    def merged(self, overrides: Mapping[str, Any]) -> "SearchConfig":
        """A copy with the non-None ``overrides`` applied (flags over the file)."""
        data = dataclasses.asdict(self)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return SearchConfig.from_mapping(data, source="flags")

    def to_toml(self) -> str:
        """The resolved configuration as TOML (None values are left out)."""
        lines = []
        for key, value in dataclasses.asdict(self).items():
            if value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (int, float)):
                text = repr(value)
            else:
                text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{key} = {text}")
        return "\n".join(lines) + "\n"
