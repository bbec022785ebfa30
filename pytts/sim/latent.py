"""The latent model of the simulator: how a node's answer code is drawn from its model, its role
and its inputs' codes (parameters in `pytts.sim.presets`), and the vote over codes.

Answers are handled as codes: -1 no answer, 0 the right answer, 1..K the distractors, larger
codes free-form wrong answers (each one distinct).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..tasks.base import Question
from .presets import MAX_DISTRACTORS, SimPreset

__all__ = ["ANSWER", "CORRECT", "FUSE", "KINDS", "MISSING", "NEW_NOISE", "NOISE_BASE", "REFINE",
           "Behaviour", "Rows", "Uniforms", "vote_codes"]

# Answer codes of the latent model.
MISSING = -1
CORRECT = 0
NEW_NOISE = -2          # "write a fresh free-form wrong answer"; resolved by the caller
NOISE_BASE = MAX_DISTRACTORS + 1

# Node kinds (the role a call plays, as `parse_node_messages` tells it).
ANSWER, REFINE, FUSE = 0, 1, 2
KINDS = {"answer": ANSWER, "refine": REFINE, "fuse": FUSE}

Uniforms = Callable[[], np.ndarray]
"""Returns a fresh array of uniforms in [0, 1) of the sample shape on each call."""


@dataclass(frozen=True)
class Rows:
    """Latent parameters of Q questions, shaped to broadcast against ``[Q, S]`` sample arrays."""

    difficulty: np.ndarray      # float64 [Q, 1]
    wrong_cuts: np.ndarray      # float32 [Q, K]: where the wrong answers' ranges start in [0, 1)

    @classmethod
    def of(cls, questions: Sequence[Question], noise: float) -> "Rows":
        """Rows of ``questions``, whose wrong answers are free-form with probability ``noise``.

        A uniform u picks a wrong answer: u < noise is free-form; above, the distractors share
        [noise, 1) by their weights, distractor k starting at ``wrong_cuts[:, k - 1]``.
        """
        diff = np.array([q.meta["difficulty"] for q in questions], np.float64)[:, None]
        weights = np.array([q.meta["weights"] for q in questions], np.float64)
        starts = np.cumsum(weights, axis=1) - weights  # each distractor's lower end in [0, 1)
        cuts = noise + (1.0 - noise) * starts
        cuts[:, 0] = noise  # exactly: rounding must not move the free-form range
        return cls(diff, cuts.astype(np.float32))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # float32 is plenty for a probability and halves the memory traffic of the Monte-Carlo.
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _plurality(codes: Sequence[np.ndarray], counted: Callable[[np.ndarray], np.ndarray]
               ) -> np.ndarray:
    """Elementwise over equally shaped code arrays: the most common code among those where
    ``counted(code)`` holds (ties: the earliest array), else MISSING.

    ``counted`` must depend on the code only (so equal codes are counted alike).
    """
    masks = [counted(c) for c in codes]
    if len(codes) == 1:
        return np.where(masks[0], codes[0], MISSING).astype(np.int16)
    counts = [m.astype(np.int8) for m in masks]
    for i in range(len(codes)):
        for j in range(i + 1, len(codes)):
            same = (codes[i] == codes[j]) & masks[i]
            counts[i] += same
            counts[j] += same
    best, best_count = np.where(masks[0], codes[0], MISSING).astype(np.int16), counts[0]
    for code, count in zip(codes[1:], counts[1:]):
        # strictly more: an equal count keeps the earlier code (ties go to the first seen)
        better = count > best_count
        best = np.where(better, code, best)
        best_count = np.maximum(best_count, count)
    return best


def vote_codes(codes: Sequence[np.ndarray]) -> np.ndarray:
    """The vote of `pytts.kernels.vote` (unweighted, ties to the first seen, MISSING ignored)
    over answer-code arrays, one per sink in sink order; a faster equivalent for the
    Monte-Carlo's small integer codes (tests check the two agree)."""
    return _plurality(codes, lambda c: c != MISSING)


class Behaviour:
    """The latent model of one preset: how a node's output answer code is drawn."""

    def __init__(self, preset: SimPreset) -> None:
        self.preset = preset
        self.skill = np.array([m.skill for m in preset.models])
        self.refine = np.array([m.refine for m in preset.models])
        self.fuse = np.array([m.fuse for m in preset.models])
        self.fail = np.array([m.fail for m in preset.models])

    def _wrong(self, rows: Rows, u: np.ndarray) -> np.ndarray:
        """A wrong answer: fresh free-form with probability ``noise``, else a distractor."""
        # the number of range starts at or below u is the distractor's code (0: free-form)
        count = (u >= rows.wrong_cuts[:, :1]).view(np.int8)
        for k in range(1, rows.wrong_cuts.shape[1]):
            count = count + (u >= rows.wrong_cuts[:, k:k + 1]).view(np.int8)
        code = count.astype(np.int16)
        if self.preset.noise:
            code[count == 0] = NEW_NOISE
        return code

    def p_right(self, model: int, kind: int, rows: Rows, inputs: Sequence[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probability that the node's answer is the right one (before a failed reply), and the
        wrong answer it falls back to when there is one to stick to or follow (else None).

        ``inputs`` are the predecessors' answer codes in slot order (empty for a first
        answer), each broadcastable to the sample shape ``[Q, S]``.
        """
        p = self.preset
        gap = self.skill[model] - rows.difficulty
        p_answer = _sigmoid(p.slope * gap)
        if kind == ANSWER or not inputs:
            return p_answer, None
        if kind == REFINE:
            # Several attempts: the refiner checks the one most of them agree on.
            x = _plurality(inputs, lambda c: c != MISSING)
            z = p.slope * (gap + self.refine[model])
            p_right = np.where(x == MISSING, p_answer,
                               np.where(x == CORRECT, _sigmoid(z + p.keep_offset),
                                        _sigmoid(z - p.fix_offset)))
            return p_right, np.where(x > CORRECT, x, MISSING).astype(np.int16)
        n_answered = sum((c != MISSING).astype(np.int8) for c in inputs)
        n_right = sum((c == CORRECT).astype(np.int8) for c in inputs)
        share = n_right / np.maximum(n_answered, 1).astype(np.float32)
        z = (p.slope * (gap + self.fuse[model])).astype(np.float32)
        p_pick = _sigmoid(z + np.float32(p.fuse_share) * (share - np.float32(0.5))
                          + np.float32(p.fuse_offset))
        p_right = np.where(n_answered == 0, p_answer,
                           np.where(n_right > 0, p_pick, _sigmoid(z - p.fix_offset)))
        return p_right, _plurality(inputs, lambda c: c > CORRECT)

    def p_correct(self, model: int, kind: int, rows: Rows,
                  inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Probability that the node replies with the right answer (failures included)."""
        return self.p_right(model, kind, rows, inputs)[0] * np.float32(1.0 - self.fail[model])

    def step(self, model: int, kind: int, rows: Rows, inputs: Sequence[np.ndarray],
             uniform: Uniforms) -> np.ndarray:
        """Output answer codes (int16, the sample shape) of a node of ``model`` playing
        ``kind`` on ``inputs``; NEW_NOISE asks the caller for a fresh wrong answer.

        ``uniform()`` is called for: the outcome (no answer below ``fail``, else right with
        probability ``p_right``); which wrong answer; and, for refiners and fusers, whether to
        keep or follow their inputs' wrong answer.
        """
        p_right, fallback = self.p_right(model, kind, rows, inputs)
        fail = np.float32(self.fail[model])
        outcome = uniform()
        out = self._wrong(rows, uniform())
        if fallback is not None:
            keep = self.preset.stick if kind == REFINE else self.preset.follow
            out = np.where((fallback != MISSING) & (uniform() < keep), fallback, out)
        # [0, fail): no answer; [fail, fail + (1 - fail) p_right): right; above: wrong
        out = np.where(outcome < fail + (1 - fail) * p_right, np.int16(CORRECT), out)
        if fail > 0:
            out = np.where(outcome < fail, np.int16(MISSING), out)
        return out.astype(np.int16, copy=False)

