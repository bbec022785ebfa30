"""Tasks: questions, prompts, answer extraction and checking for each benchmark."""

from .arith import ArithTask
from .base import Question, Task
from .humaneval import HumanEvalTask
from .math import MathTask, math_equal, normalize_math_answer
from .mmlu import MMLUTask
from .registry import TASK_NAMES, load_task
from .sandbox import SandboxResult, containment, run_sandboxed

__all__ = ["ArithTask", "HumanEvalTask", "MMLUTask", "MathTask", "Question", "SandboxResult",
           "TASK_NAMES", "Task", "containment", "load_task", "math_equal",
           "normalize_math_answer", "run_sandboxed"]
