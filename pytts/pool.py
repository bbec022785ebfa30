"""The model pool: which models a graph may call, what each costs, and where it is served."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from .errors import ConfigError

PROMPT_STYLES = ("zero-shot", "few-shot")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the pool: its size, token and speed profile, and endpoint.

    ``out_tokens`` is the mean number of tokens the model writes per call; ``prefill_tps`` and
    ``decode_tps`` are tokens per second; ``overhead_s`` is the fixed latency of one call.
    ``endpoint`` is an OpenAI-compatible base URL (``http://host:port/v1``) or None for simulated
    pools; ``api_model`` is the model's name at that endpoint (default: ``name``).
    ``temperature`` overrides the request's when set; ``prompt_style`` picks the task prompt.
    """

    name: str
    family: str
    params_b: float
    out_tokens: float = 256.0
    prefill_tps: float = 2000.0
    decode_tps: float = 50.0
    overhead_s: float = 0.05
    endpoint: str | None = None
    api_model: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    prompt_style: str = "zero-shot"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("model name must be a non-empty string")
        where = f"model {self.name!r}"
        for field, low, strict in (("params_b", 0.0, True), ("out_tokens", 0.0, False),
                                   ("prefill_tps", 0.0, True), ("decode_tps", 0.0, True),
                                   ("overhead_s", 0.0, False)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: {field} must be a number, got {value!r}")
            if not math.isfinite(value) or value < low or (strict and value == low):
                raise ConfigError(f"{where}: {field} must be {'>' if strict else '>='} {low}, "
                                  f"got {value!r}")
            object.__setattr__(self, field, float(value))
        for field, optional in (("family", False), ("endpoint", True), ("api_model", True),
                                ("api_key_env", True)):
            value = getattr(self, field)
            if not (optional and value is None) and not (isinstance(value, str) and value):
                raise ConfigError(f"{where}: {field} must be a non-empty string, got {value!r}")
        temperature = self.temperature
        if temperature is not None and (isinstance(temperature, bool)
                                        or not isinstance(temperature, (int, float))
                                        or not 0.0 <= temperature <= 2.0):
            raise ConfigError(f"{where}: temperature must be in [0, 2], got {temperature!r}")
        if self.prompt_style not in PROMPT_STYLES:
            raise ConfigError(f"{where}: prompt_style must be one of {PROMPT_STYLES}, "
                              f"got {self.prompt_style!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Build from a mapping, rejecting unknown fields by name."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown model field(s) {unknown} in {data.get('name', '?')!r}; "
                              f"allowed: {', '.join(allowed)}")
        missing = [f for f in ("name", "family", "params_b") if f not in data]
        if missing:
            raise ConfigError(f"model {data.get('name', '?')!r} lacks {', '.join(missing)}")
        return cls(**dict(data))


class ModelPool:
    """An ordered set of models; a graph's ``model`` array holds indices into it."""

    def __init__(self, models: Sequence[ModelSpec]) -> None:
        if not models:
            raise ConfigError("the model pool is empty")
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"duplicate model name(s) in pool: {dupes}")
        self.models: tuple[ModelSpec, ...] = tuple(models)
        self._index = {n: k for k, n in enumerate(names)}

    @classmethod
    def from_dicts(cls, items: Sequence[Mapping[str, Any]]) -> ModelPool:
        return cls([ModelSpec.from_dict(item) for item in items])

    @classmethod
    def from_file(cls, path: str | Path) -> ModelPool:
        """Load ``[[models]]`` from a TOML file or ``{"models": [...]}`` from JSON."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"pool file {path} does not exist")
        try:
            if path.suffix == ".json":
                data = json.loads(path.read_text())
            else:
                data = tomllib.loads(path.read_text())
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"pool file {path} does not parse: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise ConfigError(f"pool file {path} must hold a list 'models' of model tables")
        try:
            return cls.from_dicts(data["models"])
        except TypeError as exc:
            raise ConfigError(f"pool file {path}: {exc}") from None

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(m) for m in self.models]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def index(self, name: str) -> int:
        """Position of model ``name``; ConfigError listing the pool if it is unknown."""
        try:
            return self._index[name]
        except KeyError:
            raise ConfigError(f"unknown model {name!r}; the pool has: "
                              f"{', '.join(self.names)}") from None

    def __getitem__(self, key: int | str) -> ModelSpec:
        return self.models[self.index(key) if isinstance(key, str) else key]

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def families(self) -> tuple[str, ...]:
        """Distinct families, in pool order."""
        return tuple(dict.fromkeys(m.family for m in self.models))

    def cost_table(self) -> np.ndarray:
        """``float64[K, 5]``: params_b, out_tokens, prefill_tps, decode_tps, overhead_s."""
        return np.ascontiguousarray(
            [[m.params_b, m.out_tokens, m.prefill_tps, m.decode_tps, m.overhead_s]
             for m in self.models], dtype=np.float64)
