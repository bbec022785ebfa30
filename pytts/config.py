"""The search configuration: one flat TOML table, every key also a ``pytts search`` flag.

Validation happens here, before anything is written or started: an error names the key and the
allowed values, so the command can exit with one line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from .defaults import DEFAULT_CONCURRENCY, DEFAULT_MAX_TOKENS, DEFAULT_TIMEOUT_S
from .errors import ConfigError
from .graph import MAX_DEPTH, MAX_WIDTH
from .registry import AGENT_NAMES, RUN_TASK_NAMES, SEARCHER_NAMES

OBJECTIVES = ("accuracy", "accuracy-latency")


def _choice(allowed: tuple[str, ...]) -> dict:
    return {"allowed": allowed}


def _range(low: float, high: float, *, above: bool = False) -> dict:
    """Metadata of a numeric key: ``low <= value <= high`` (``low < value`` with ``above``).
    The upper ends are far past any sensible run; they stop a typo (``1e308``, ``10**12``)
    before it fails mid-run instead of at once."""
    return {"range": (low, high, above)}


# A run name becomes a directory name and a TOML string: no path separators or control
# characters, and short enough for any file system.
_NAME_MAX_BYTES = 200


@dataclass
class SearchConfig:
    """Everything a search run needs. ``None`` means "the mode's default" (see `resolve`).

    ``pool`` is a pool file (TOML/JSON), or "local" (the embedded model) or a simulated preset
    name ("sim:math-like"). ``task`` with ``dataset`` (a file, for math/mmlu) and
    ``n_questions`` the dev-set size. ``budget`` is FLOPs ("2e12", or a TOML number) or
    "N x MODEL".
    ``agent_context_tokens`` is the agent model's context window, for servers that do not
    report it (the agent's prompts are compacted to fit it).
    """

    name: str | None = None
    pool: str = "sim:math-like"
    task: str = field(default="sim", metadata=_choice(RUN_TASK_NAMES))
    dataset: str | None = None
    n_questions: int = field(default=40, metadata=_range(1, 1_000_000))
    budget: str | None = None
    searcher: str = field(default="agent-reinforce", metadata=_choice(SEARCHER_NAMES))
    n_evals: int = field(default=32, metadata=_range(1, 1_000_000))
    batch_size: int = field(default=4, metadata=_range(1, 10_000))
    depth: int | None = field(default=None, metadata=_range(1, MAX_DEPTH))
    width: int | None = field(default=None, metadata=_range(1, MAX_WIDTH))
    objective: str = field(default="accuracy", metadata=_choice(OBJECTIVES))
    latency_penalty: float = field(default=0.01, metadata=_range(0.0, 1e6))
    seed: int = field(default=0, metadata=_range(0, 2 ** 63 - 1))
    concurrency: int = field(default=DEFAULT_CONCURRENCY, metadata=_range(1, 10_000))
    timeout_s: float = field(default=DEFAULT_TIMEOUT_S, metadata=_range(0.0, 86_400.0, above=True))
    max_tokens: int = field(default=DEFAULT_MAX_TOKENS, metadata=_range(1, 1_000_000))
    agent: str = field(default="heuristic", metadata=_choice(AGENT_NAMES))
    agent_endpoint: str | None = None
    agent_model: str | None = None
    agent_context_tokens: int | None = field(default=None, metadata=_range(256, 10_000_000))
    bank: str | None = None
    ray: str | None = None
    runs_dir: str = "runs"
    racing: str = field(default="on", metadata=_choice(("on", "off")))

    def __post_init__(self) -> None:
        # TOML has numbers; the budget flag is text ("2e13" or "8x MODEL"): take both
        if isinstance(self.budget, (int, float)) and not isinstance(self.budget, bool):
            self.budget = repr(self.budget)
        self.validate()

    def validate(self) -> None:
        """ConfigError naming the key for any value of the wrong type, out of range or unknown."""
        for f in fields(self):
            value = getattr(self, f.name)
            expected, optional = _KINDS[f.name]
            if value is None and optional:
                continue
            if not _is_kind(value, expected):
                raise ConfigError(f"{f.name} must be {_KIND_NAMES[expected]}, got {value!r}")
            allowed = f.metadata.get("allowed")
            if allowed and value not in allowed:
                raise ConfigError(f"{f.name} = {value!r} is not allowed; use one of: "
                                  f"{', '.join(allowed)}")
            if "range" in f.metadata:
                low, high, above = f.metadata["range"]
                finite = not isinstance(value, float) or math.isfinite(value)
                if not (finite and (value > low if above else value >= low) and value <= high):
                    raise ConfigError(f"{f.name} must be {'>' if above else '>='} {low} and "
                                      f"<= {high:,}, got {value!r}")
            if expected is str and not value and f.name != "name":
                raise ConfigError(f"{f.name} must not be empty")
        if self.name is not None:
            _check_name(self.name)
        if self.agent == "llm" and not (self.agent_endpoint and self.agent_model):
            raise ConfigError("agent = 'llm' needs agent_endpoint and agent_model")
        if self.task in ("math", "mmlu") and not self.dataset:
            raise ConfigError(f"task = {self.task!r} needs dataset = a file of questions")
        if self.pool.startswith("sim:") != (self.task == "sim"):
            raise ConfigError("task = 'sim' goes with pool = 'sim:PRESET' (and only with it)")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "config") -> SearchConfig:
        unknown = sorted(set(data) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: "
                              f"{', '.join(cls.keys())}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> SearchConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} does not parse: {exc}") from None
        return cls.from_mapping(data, source=str(path))

    @property
    def pool_is_file(self) -> bool:
        """True when ``pool`` names a pool file (not "local" or a "sim:" preset)."""
        return not (self.pool == "local" or self.pool.startswith("sim:"))

    def check_paths(self) -> None:
        """ConfigError naming the key when a path the run reads or writes cannot serve: a
        missing dataset, a runs_dir or bank that exists as the wrong kind of file, or whose
        nearest existing parent is not a directory. Kept apart from `validate` so a finished
        run's config loads (``pytts compare``) without its inputs."""
        if self.dataset and not Path(self.dataset).is_file():
            raise ConfigError(f"dataset = {self.dataset!r}: no such file")
        for key, want_dir in (("runs_dir", True), ("bank", False)):
            value = getattr(self, key)
            if value is None:
                continue
            path = Path(value).expanduser()
            if path.exists():
                if not (path.is_dir() if want_dir else path.is_file()):
                    kind = "a directory" if want_dir else "a regular file"
                    raise ConfigError(f"{key} = {value!r} exists and is not {kind}")
                continue
            parent = next(q for q in path.absolute().parents if q.exists())   # "/" exists
            if not parent.is_dir():
                raise ConfigError(f"{key} = {value!r} cannot be created: {parent} is not a "
                                  "directory")

    def with_absolute_paths(self) -> SearchConfig:
        """A copy whose file paths (pool file, dataset, bank, runs_dir) are absolute, so the
        config means the same from any working directory (``--resume``, ``compare``)."""
        def absolute(value: str) -> str:
            return str(Path(value).expanduser().resolve())

        # Unset (None or empty) paths stay as they are.
        return dataclasses.replace(
            self, dataset=self.dataset and absolute(self.dataset),
            bank=self.bank and absolute(self.bank),
            runs_dir=self.runs_dir and absolute(self.runs_dir),
            pool=absolute(self.pool) if self.pool_is_file and self.pool else self.pool)

    def merged(self, overrides: Mapping[str, Any]) -> SearchConfig:
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
            text = repr(value) if isinstance(value, (int, float)) else _toml_string(value)
            lines.append(f"{key} = {text}")
        return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    # JSON's string escapes are TOML basic-string escapes; TOML also wants DEL escaped
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _check_name(name: str) -> None:
    bad = [c for c in name if unicodedata.category(c) == "Cc" or c in "/\\"]
    if bad or name in ("", ".", "..") or len(name.encode()) > _NAME_MAX_BYTES:
        raise ConfigError(f"name = {name!r} cannot name a run directory; use up to "
                          f"{_NAME_MAX_BYTES} bytes without '/', '\\' or control characters")


def _is_kind(value: Any, kind: type) -> bool:
    if isinstance(value, bool):           # TOML's true is not the number 1
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _kinds() -> dict[str, tuple[type, bool]]:
    """Each key's value type and whether it may be None, from the dataclass annotations."""
    out = {}
    for key, hint in typing.get_type_hints(SearchConfig).items():
        args = typing.get_args(hint) or (hint,)
        out[key] = (next(t for t in args if t is not type(None)), type(None) in args)
    return out


_KINDS = _kinds()
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number"}
