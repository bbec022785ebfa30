"""The latent model of the simulator: how a node's answer code is drawn from its model, its role
and its inputs' codes (parameters in `pytts.sim.presets`), and the vote over codes.

Answers are handled as codes: -1 no answer, 0 the right answer, 1..K the distractors, larger
codes free-form wrong answers (each one distinct). The model's probabilities are turned once
into integer thresholds (`Thresholds`) that the keyed draws of `pytts.sim.draws` are compared
to; `node_codes` is the one NumPy statement of a node's behaviour, used by the text path and the
kernel's NumPy twin alike (csrc/simulate.hpp writes the same rules in C++).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..tasks.base import Question
from .draws import (
    KEEP_BITS,
    OUTCOME_BITS,
    WRONG_BITS,
    keep_field,
    outcome_field,
    to_threshold,
    wrong_field,
)
from .presets import MAX_DISTRACTORS, SimPreset

__all__ = ["ANSWER", "CORRECT", "FUSE", "KINDS", "MISSING", "NEW_NOISE", "NOISE_BASE", "REFINE",
           "Thresholds", "node_codes", "pick_index", "plurality", "vote_codes"]

# Answer codes of the latent model.
MISSING = -1
CORRECT = 0
NEW_NOISE = -2          # "write a fresh free-form wrong answer"; resolved by the caller
NOISE_BASE = MAX_DISTRACTORS + 1

# Node kinds (the role a call plays, as `parse_node_messages` tells it).
ANSWER, REFINE, FUSE = 0, 1, 2
KINDS = {"answer": ANSWER, "refine": REFINE, "fuse": FUSE}

# Columns of `Thresholds.right`: the situations a node can be in, besides fusing a right answer.
FIRST, KEEP, REFIX, FUSEFIX = 0, 1, 2, 3


def pick_index(n_answered: np.ndarray, n_right: np.ndarray) -> np.ndarray:
    """Column of `Thresholds.pick` for a fuser shown ``n_right`` right answers among
    ``n_answered`` (1 <= n_right <= n_answered)."""
    return n_answered * (n_answered - 1) // 2 + n_right - 1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Thresholds:
    """The latent model of one preset on Q questions, as integer thresholds for the draws.

    A node's outcome field (`pytts.sim.draws.outcome_field`) below ``fail[k]`` is a reply
    without an answer; below ``right[k, q, situation]`` (and not failed) the right answer. The
    situations are a first answer (FIRST), refining a right (KEEP) or wrong (REFIX) attempt,
    fusing candidates without the right answer (FUSEFIX); a fuser shown r right answers of a
    answered uses ``pick[k, q, pick_index(a, r)]`` (a up to ``max_inputs``). Otherwise the
    answer is wrong: the wrong field counts the ``cuts[q]`` it reaches (0: a fresh free-form
    answer, j: distractor j), unless a refiner keeps (keep field below ``stick``) or a fuser
    follows (below ``follow``) its inputs' wrong answer.
    """

    fail: np.ndarray        # int64 [K]
    right: np.ndarray       # int64 [K, Q, 4]
    pick: np.ndarray        # int64 [K, Q, max_inputs * (max_inputs + 1) / 2]
    cuts: np.ndarray        # int64 [Q, n_distractors]
    keep: np.ndarray        # int64 [2]: stick (refiners), follow (fusers)

    def take(self, questions: np.ndarray) -> Thresholds:
        """The thresholds of the questions at indices ``questions`` (in that order)."""
        return Thresholds(self.fail, self.right[:, questions], self.pick[:, questions],
                          self.cuts[questions], self.keep)

    @property
    def max_inputs(self) -> int:
        """The largest number of candidates a fuser may be shown."""
        return int(round((np.sqrt(8 * self.pick.shape[2] + 1) - 1) / 2))

    @classmethod
    def of(cls, preset: SimPreset, questions: Sequence[Question],
           max_inputs: int = 1) -> Thresholds:
        """Thresholds of ``preset``'s models on ``questions``, for fusers of up to
        ``max_inputs`` candidates."""
        diff = np.array([q.meta["difficulty"] for q in questions], np.float64)
        weights = np.array([q.meta["weights"] for q in questions], np.float64)
        return cls.from_arrays(preset, diff, weights, max_inputs)

    @classmethod
    def from_arrays(cls, preset: SimPreset, difficulty: np.ndarray, weights: np.ndarray,
                    max_inputs: int = 1) -> Thresholds:
        """`of` from the questions' difficulties ``[Q]`` and distractor weights ``[Q, n]``."""
        if max_inputs < 1:
            raise ValueError(f"max_inputs must be >= 1, got {max_inputs}")
        skill = np.array([m.skill for m in preset.models])[:, None]
        refine = np.array([m.refine for m in preset.models])[:, None]
        fuse = np.array([m.fuse for m in preset.models])[:, None]
        fail = np.array([m.fail for m in preset.models])
        gap = skill - np.asarray(difficulty, np.float64)[None, :]          # [K, Q]
        z_refine = preset.slope * (gap + refine)
        z_fuse = preset.slope * (gap + fuse)
        p = np.stack([_sigmoid(preset.slope * gap), _sigmoid(z_refine + preset.keep_offset),
                      _sigmoid(z_refine - preset.fix_offset),
                      _sigmoid(z_fuse - preset.fix_offset)], axis=2)        # [K, Q, 4]
        answered = np.concatenate([np.full(a, a) for a in range(1, max_inputs + 1)])
        right = np.concatenate([np.arange(1, a + 1) for a in range(1, max_inputs + 1)])
        share = right / answered                                            # [P], pick order
        p_pick = _sigmoid(z_fuse[:, :, None] + preset.fuse_share * (share - 0.5)
                          + preset.fuse_offset)
        f = fail[:, None, None]
        # No answer first ([0, fail)), then right ([fail, fail + (1 - fail) p)), then wrong.
        starts = np.cumsum(weights, axis=1) - weights   # each distractor's lower end in [0, 1)
        cuts = preset.noise + (1.0 - preset.noise) * starts
        cuts[:, 0] = preset.noise  # exactly: rounding must not move the free-form range
        return cls(fail=to_threshold(fail, OUTCOME_BITS),
                   right=to_threshold(f + (1.0 - f) * p, OUTCOME_BITS),
                   pick=to_threshold(f + (1.0 - f) * p_pick, OUTCOME_BITS),
                   cuts=to_threshold(cuts, WRONG_BITS),
                   keep=to_threshold([preset.stick, preset.follow], KEEP_BITS))


def plurality(codes: Sequence[np.ndarray], counted: Callable[[np.ndarray], np.ndarray]
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
    return plurality(codes, lambda c: c != MISSING)


def right_threshold(th: Thresholds, model: int, kind: int, question: np.ndarray,
                    inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The right-answer threshold of a node (the sample shape), the wrong answer it falls back
    to when there is one to keep or follow (else None), and that fallback's keep threshold.

    ``question`` indexes the rows of ``th`` and broadcasts against the sample shape; ``inputs``
    are the predecessors' codes in slot order (empty for a first answer).
    """
    right = th.right[model]
    if kind == ANSWER or not inputs:
        return right[question, FIRST], None, 0
    if kind == REFINE:
        # Several attempts: the refiner checks the one most of them agree on.
        x = plurality(inputs, lambda c: c != MISSING)
        t = np.where(x == MISSING, right[question, FIRST],
                     np.where(x == CORRECT, right[question, KEEP], right[question, REFIX]))
        return t, np.where(x > CORRECT, x, MISSING).astype(np.int16), int(th.keep[0])
    n_answered = sum((c != MISSING).astype(np.int64) for c in inputs)
    n_right = sum((c == CORRECT).astype(np.int64) for c in inputs)
    pick = th.pick[model][question, pick_index(n_answered, np.maximum(n_right, 1))]
    t = np.where(n_answered == 0, right[question, FIRST],
                 np.where(n_right > 0, pick, right[question, FUSEFIX]))
    return t, plurality(inputs, lambda c: c > CORRECT), int(th.keep[1])


def node_codes(th: Thresholds, model: int, kind: int, question: np.ndarray,
               inputs: Sequence[np.ndarray], bits: np.ndarray, fresh: int) -> np.ndarray:
    """Output answer codes (int16, the shape of ``bits``) of a node of ``model`` playing
    ``kind`` on ``inputs``, from its draws ``bits``; a fresh wrong answer gets code ``fresh``.

    The outcome field decides no answer / right / wrong; the wrong field which wrong answer; the
    keep field, for refiners and fusers, whether to keep or follow their inputs' wrong answer.
    """
    t_right, fallback, keep = right_threshold(th, model, kind, question, inputs)
    wrong = np.zeros(bits.shape, np.int16)
    w = wrong_field(bits)
    cuts = th.cuts[question]
    for j in range(th.cuts.shape[1]):
        wrong += (w >= cuts[..., j]).astype(np.int16)
    out = np.where(wrong == 0, np.int16(fresh), wrong).astype(np.int16)
    if fallback is not None:
        out = np.where((fallback != MISSING) & (keep_field(bits) < keep), fallback, out)
    outcome = outcome_field(bits)
    out = np.where(outcome < t_right, np.int16(CORRECT), out)
    out = np.where(outcome < th.fail[model], np.int16(MISSING), out)
    return out.astype(np.int16, copy=False)
