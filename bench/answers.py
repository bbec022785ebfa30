"""Answers at the boundary with Python objects: Cython (``pytts._answers``) vs pybind11
(``pytts._core``) vs pure Python (``pytts._reference``), side by side in one run.

Run ``python -m bench.answers`` (``--quick`` for fewer inputs). Rows: `intern_answers` on a vote's
handful of sink answers and on a long list; `extract_final_answer` and `extract_number` on
completion-like texts (a few hundred characters of steps with numbers, most ending "The answer
is X."). Each row is the best thread CPU time per item over a few repeats (implementations take
turns); the fastest compiled one is what `pytts.kernels` ships.
"""

from __future__ import annotations

import os

# As in bench.kernels: keep OpenBLAS (loaded with scipy) from spinning on the other core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
from collections.abc import Callable  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench.kernels import best_times  # noqa: E402
from pytts import _reference, kernels  # noqa: E402

try:
    from pytts import _answers, _core
except ImportError as exc:
    raise SystemExit(f"a compiled module is not built ({exc}); run `python setup.py build_ext "
                     "--inplace` first") from exc

IMPLS: dict[str, ModuleType] = {"cython": _answers, "pybind11": _core, "python": _reference}

_STEPS = ("Step {k}: combining the quantities from the previous step gives {v}.",
          "Step {k}: substituting back into the statement, the value is {v}.",
          "Step {k}: {a} + {b} = {v}, which fits every stated condition.",
          "Step {k}: cross-checking once more, {v} is consistent with it.")


def completions(n: int, seed: int = 0, answer_rate: float = 0.9) -> list[str]:
    """``n`` replies of 4-8 reasoning steps; ``answer_rate`` of them end "The answer is X."
    (a number or a letter), the others stop mid-sentence."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        steps = [_STEPS[int(rng.integers(len(_STEPS)))].format(
            k=k + 1, v=int(rng.integers(2, 9999)), a=int(rng.integers(1, 99)),
            b=int(rng.integers(1, 99))) for k in range(int(rng.integers(4, 9)))]
        if rng.random() < answer_rate:
            answer = "ABCD"[int(rng.integers(4))] if rng.random() < 0.3 else str(
                int(rng.integers(0, 10**5)))
            steps.append(f"The answer is {answer}.")
        else:
            steps.append("So the result must be")
        out.append("I will work through this step by step. " + " ".join(steps))
    return out


def interned(n: int, seed: int = 0) -> list[str | None]:
    """Answers as a vote sees them: short numbers and letters, about 1 in 17 missing."""
    rng = np.random.default_rng(seed)
    return [None if k % 17 == 0 else str(int(rng.integers(0, 10**6))) for k in range(n)]


def run(n_texts: int, n_long: int, repeat: int) -> list[tuple[str, str, float]]:
    """``(operation, implementation, seconds per item)`` rows."""
    texts = completions(n_texts)
    short, long = interned(8), interned(n_long)
    cases = [
        ("intern_answers, 8 answers (one vote)", "intern_answers", [short] * 200, 200),
        (f"intern_answers, {n_long} answers", "intern_answers", [long], n_long),
        ("extract_final_answer, per text", "extract_final_answer", texts, len(texts)),
        ("extract_number, per text", "extract_number", texts, len(texts)),
    ]
    for name, _, args, _ in cases:  # the implementations must agree before they are timed
        outs = [[np.asarray(getattr(m, name_of(name))(a)).tolist() for a in args[:50]]
                for m in IMPLS.values()]
        assert all(o == outs[0] for o in outs), f"implementations disagree on {name}"
    rows = []
    for label, fname, args, items in cases:
        fns = [(functools.partial(apply_each, getattr(m, fname), args), repeat)
               for m in IMPLS.values()]
        for impl, seconds in zip(IMPLS, best_times(fns)):
            rows.append((label, impl, seconds / items))
    return rows


def apply_each(fn: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    """``fn`` applied to each of ``args`` (one timed unit of work)."""
    return [fn(a) for a in args]


def name_of(label: str) -> str:
    return label.split(",")[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer inputs and repeats")
    args = parser.parse_args(argv)
    n_texts, n_long, repeat = (500, 2_000, 3) if args.quick else (5_000, 20_000, 7)
    rows = run(n_texts, n_long, repeat)
    print(f"best thread CPU time per item of {repeat} runs; shipped = what pytts.kernels uses")
    print(f"{'operation':<40} {'impl':<9} {'per item':>10} {'vs fastest':>11}")
    for label in dict.fromkeys(r[0] for r in rows):
        group = [r for r in rows if r[0] == label]
        fastest = min(r[2] for r in group)
        for _, impl, seconds in group:
            mark = "  shipped" if kernels.ANSWERS_BACKEND == impl else ""
            print(f"{label:<40} {impl:<9} {seconds * 1e9:>8.0f}ns {seconds / fastest:>10.2f}x"
                  f"{mark}")
        print()


if __name__ == "__main__":
    main()
