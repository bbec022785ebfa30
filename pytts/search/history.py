"""A search's history: one `TrialRecord` per told graph, and its JSON form (one line of a
checkpoint's ``history.jsonl``).

In memory a record holds objects (the `CollaborationGraph`, the `EvalResult`); JSON exists only
at the checkpoint, where ``to_dict`` / ``from_dict`` convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..evaluate import EvalResult
from ..graph import CollaborationGraph


@dataclass
class TrialRecord:
    """One told graph: what was proposed, how it did, and what the searcher made of it.

    ``number`` counts tells from 0; ``key`` is the graph's canonical key; ``reused`` marks a
    repeated proposal that was told the cached result of an earlier evaluation (no evaluation
    was spent); ``feedback`` is the textual gradient an agent wrote after the round this graph
    closed (None for other searchers/tells).
    """

    number: int
    graph: CollaborationGraph
    key: str
    result: EvalResult
    value: float
    reused: bool = False
    feedback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the graph by model name, see `CollaborationGraph.to_dict`)."""
        return {"number": self.number, "graph": self.graph.to_dict(), "key": self.key,
                "result": self.result.to_dict(), "value": self.value, "reused": self.reused,
                "feedback": self.feedback}

    @classmethod
    def from_dict(cls, data: dict[str, Any], model_names: Sequence[str]) -> TrialRecord:
        """Rebuild from ``to_dict()`` output; the graph's models are looked up in
        ``model_names`` (the searcher's pool, in pool order)."""
        try:
            graph = CollaborationGraph.from_dict(data["graph"], model_names)
            return cls(int(data["number"]), graph, str(data["key"]),
                       EvalResult.from_dict(data["result"]), float(data["value"]),
                       bool(data.get("reused", False)), data.get("feedback"))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"a history record lacks a field or has a bad one ({exc!r}); it was "
                              "not written by run_search or was edited") from None

