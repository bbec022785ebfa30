"""The simulated world's parameters: presets of which demo models play, how skilled each is on the
preset's task family, and how questions, refiners and fusers behave (the latent model of
`pytts.sim.latent`).

The named presets are calibrated so that the paper's three insights hold on the simulated tasks
(tests/test_sim_insights.py checks them); they are not measurements of the real models.
Generated presets (`generate_preset`, ``gen-<seed>``) draw every latent parameter from wide
priors instead, for benchmarks that no one can win by calibration: depending on the draw the
best graph is one big call, a wide vote of a small model, a deep refinement chain or a mixed
graph with fusers, and the paper's insights need not hold.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..cost import Budget
from ..demo_pool import DEMO_MODELS
from ..errors import ConfigError
from ..pool import ModelPool

ANSWER_KINDS = ("integer", "letter")
MAX_DISTRACTORS = 8
"""Upper bound on distractors per question: answer codes above it name free-form wrong answers."""
CHARS_PER_TOKEN = 4
"""Characters per token of simulated text (question prompts and replies alike)."""


@dataclass(frozen=True)
class SimModel:
    """How one pool model behaves in a preset.

    ``name`` is a model of `pytts.demo_pool.DEMO_MODELS` (its costs are reused as they are).
    ``skill`` is on the logit scale of the question difficulty: a first answer is right with
    probability ``sigmoid(slope * (skill - difficulty))``. ``refine`` and ``fuse`` shift the
    skill when the model refines or fuses (some models check or compare better than they
    solve); ``fail`` is the probability that a reply ends without a final answer.
    """

    name: str
    skill: float
    refine: float = 0.0
    fuse: float = 0.0
    fail: float = 0.01

    def __post_init__(self) -> None:
        for attr in ("skill", "refine", "fuse"):
            if not math.isfinite(getattr(self, attr)):
                raise ConfigError(f"sim model {self.name!r}: {attr} must be finite")
        if not 0.0 <= self.fail < 1.0:
            raise ConfigError(f"sim model {self.name!r}: fail must be in [0, 1), got {self.fail}")


@dataclass(frozen=True)
class SimPreset:
    """A simulated task family and pool: models, questions, role behaviour, costs, budgets.

    Questions: difficulty ~ Normal(``difficulty_mean``, ``difficulty_std``), and a fraction
    ``hard_fraction`` is ``hard_shift`` harder still (hard for every model). A wrong answer is
    a fresh free-form answer with probability ``noise``, else one of ``n_distractors``
    plausible distractors, chosen with question-specific weights ~ Dirichlet(``concentration``)
    (a small concentration makes one distractor dominate, so votes can agree on it).

    Refining a right answer keeps it with ``sigmoid(slope * (skill + refine - difficulty) +
    keep_offset)``; a wrong one is fixed with ``sigmoid(slope * (skill + refine - difficulty) -
    fix_offset)``, else kept with probability ``stick`` or replaced by a fresh wrong answer. A
    refiner shown several attempts checks the answer most of them give (ties: the first).
    A fuser that sees the right answer among its candidates picks it with
    ``sigmoid(slope * (skill + fuse - difficulty) + fuse_share * (share - 0.5) + fuse_offset)``
    (``share``: the right answer's fraction of the candidates that have an answer); without
    it, it works the answer out itself with ``sigmoid(slope * (skill + fuse - difficulty) -
    fix_offset)``; when it does not answer right it follows the candidates' most common wrong
    answer with probability ``follow``, else writes a fresh wrong answer. A refiner or fuser
    whose inputs carry no answer at all answers the question afresh. Any reply then fails
    (no final answer) with the model's ``fail`` probability.

    ``prompt_tokens`` is the task prompt's length (the questions are written to it) and goes
    to the CostModel; ``template`` is the recommended (D, W) search template; ``budgets`` are
    named `Budget` specs. ``n_dev``/``n_test`` are the split sizes.
    """

    name: str
    family: str
    description: str
    models: tuple[SimModel, ...]
    answer_kind: str = "integer"
    slope: float = 1.5
    difficulty_mean: float = 0.0
    difficulty_std: float = 1.0
    hard_fraction: float = 0.1
    hard_shift: float = 3.0
    n_distractors: int = 3
    concentration: float = 0.6
    noise: float = 0.2
    keep_offset: float = 2.0
    fix_offset: float = 1.0
    stick: float = 0.6
    fuse_share: float = 3.0
    fuse_offset: float = 1.0
    follow: float = 0.7
    prompt_tokens: float = 150.0
    template: tuple[int, int] = (3, 6)
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    n_dev: int = 100
    n_test: int = 200

    def __post_init__(self) -> None:
        where = f"sim preset {self.name!r}"
        if not self.models:
            raise ConfigError(f"{where} has no models")
        if self.answer_kind not in ANSWER_KINDS:
            raise ConfigError(f"{where}: answer_kind must be one of {ANSWER_KINDS}")
        if self.answer_kind == "letter" and (self.n_distractors != 3 or self.noise != 0.0):
            raise ConfigError(f"{where}: letter answers have exactly 3 distractors (the other "
                              "choices) and no free-form noise")
        if not 1 <= self.n_distractors <= MAX_DISTRACTORS:
            raise ConfigError(f"{where}: n_distractors must be in 1..{MAX_DISTRACTORS}")
        for attr in ("hard_fraction", "stick", "follow"):
            if not 0.0 <= getattr(self, attr) <= 1.0:
                raise ConfigError(f"{where}: {attr} must be in [0, 1]")
        if not 0.0 <= self.noise < 1.0:
            raise ConfigError(f"{where}: noise must be in [0, 1)")
        if self.slope <= 0 or self.difficulty_std < 0 or self.concentration <= 0:
            raise ConfigError(f"{where}: slope and concentration must be > 0, "
                              "difficulty_std >= 0")
        if self.prompt_tokens < 40:
            raise ConfigError(f"{where}: prompt_tokens must be at least 40")

    @classmethod
    def generate(cls, seed: int, priors: LandscapePriors | None = None, *,
                 n_dev: int = 200, n_test: int = 400) -> SimPreset:
        """The generated landscape of ``seed`` (see `generate_preset`)."""
        return generate_preset(seed, priors, n_dev=n_dev, n_test=n_test)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)


def _calls(n: float, model: str) -> Budget:
    return Budget(calls=n, model=model)


PRESETS: dict[str, SimPreset] = {}


def _register(preset: SimPreset) -> SimPreset:
    PRESETS[preset.name] = preset
    return preset


MATH_LIKE = _register(SimPreset(
    name="math-like",
    family="math",
    description=("Competition-style math: Qwen beats Llama at every size (Qwen 1.5B about "
                 "matches Llama 8B); votes saturate on shared mistakes; a refinement step or "
                 "two helps, long chains of weaker refiners drift."),
    models=(
        SimModel("qwen2.5-1.5b", skill=0.15, refine=-0.2, fuse=-0.3, fail=0.02),
        SimModel("qwen2.5-3b", skill=0.5, refine=0.0, fuse=0.0, fail=0.01),
        SimModel("qwen2.5-7b", skill=0.9, refine=0.2, fuse=0.3, fail=0.01),
        SimModel("llama3.2-1b", skill=-0.9, refine=-0.5, fuse=-0.6, fail=0.04),
        SimModel("llama3.2-3b", skill=-0.1, refine=-0.2, fuse=-0.2, fail=0.02),
        SimModel("llama3.1-8b", skill=0.05, refine=0.0, fuse=0.1, fail=0.01),
    ),
    answer_kind="integer",
    slope=1.5,
    difficulty_std=1.1,
    hard_fraction=0.12,
    hard_shift=3.0,
    n_distractors=3,
    concentration=0.5,
    noise=0.25,
    prompt_tokens=150.0,
    template=(4, 6),
    budgets={"low": _calls(6, "qwen2.5-1.5b"), "high": _calls(20, "qwen2.5-1.5b")},
))

MMLU_LIKE = _register(SimPreset(
    name="mmlu-like",
    family="mmlu",
    description=("Knowledge multiple choice: Llama beats Qwen at every size; a checker rarely "
                 "fixes what it does not know and sometimes talks itself out of a right "
                 "letter (depth hurts); four letters make wrong votes collide."),
    models=(
        SimModel("qwen2.5-1.5b", skill=-0.55, refine=-0.3, fuse=-0.2, fail=0.01),
        SimModel("qwen2.5-3b", skill=-0.05, refine=-0.2, fuse=0.0, fail=0.01),
        SimModel("qwen2.5-7b", skill=0.45, refine=0.0, fuse=0.1, fail=0.01),
        SimModel("llama3.2-1b", skill=-0.35, refine=-0.3, fuse=-0.3, fail=0.02),
        SimModel("llama3.2-3b", skill=0.3, refine=0.0, fuse=0.1, fail=0.01),
        SimModel("llama3.1-8b", skill=0.85, refine=0.1, fuse=0.3, fail=0.005),
    ),
    answer_kind="letter",
    slope=1.3,
    difficulty_mean=-0.2,
    difficulty_std=1.2,
    hard_fraction=0.1,
    hard_shift=3.0,
    n_distractors=3,
    concentration=0.8,
    noise=0.0,
    keep_offset=1.8,
    fix_offset=2.5,
    stick=0.8,
    prompt_tokens=220.0,
    template=(3, 6),
    budgets={"low": _calls(6, "llama3.2-1b"), "high": _calls(20, "llama3.2-1b")},
))

CODE_LIKE = _register(SimPreset(
    name="code-like",
    family="code",
    description=("Program synthesis judged by output: Llama 8B writes the best first draft, "
                 "Qwen models debug best (mixed-family graphs win); wrong programs fail in "
                 "many different ways, so votes over outputs rarely agree on a wrong one."),
    models=(
        SimModel("qwen2.5-1.5b", skill=-0.5, refine=0.4, fuse=0.0, fail=0.03),
        SimModel("qwen2.5-3b", skill=-0.05, refine=0.5, fuse=0.1, fail=0.02),
        SimModel("qwen2.5-7b", skill=0.5, refine=0.7, fuse=0.3, fail=0.01),
        SimModel("llama3.2-1b", skill=-1.1, refine=-0.3, fuse=-0.4, fail=0.05),
        SimModel("llama3.2-3b", skill=-0.3, refine=-0.3, fuse=-0.2, fail=0.03),
        SimModel("llama3.1-8b", skill=0.7, refine=-0.3, fuse=0.0, fail=0.01),
    ),
    answer_kind="integer",
    slope=1.8,
    difficulty_mean=0.2,
    difficulty_std=1.0,
    hard_fraction=0.1,
    hard_shift=3.0,
    n_distractors=2,
    concentration=1.0,
    noise=0.6,
    keep_offset=2.5,
    fix_offset=0.5,
    stick=0.5,
    prompt_tokens=260.0,
    template=(4, 6),
    budgets={"low": _calls(4, "qwen2.5-3b"), "high": _calls(8, "qwen2.5-3b")},
))

TINY = _register(dataclasses.replace(
    MATH_LIKE,
    name="tiny",
    description=("Three small models on math-like questions, for a 2x2 template small enough to "
                 "enumerate (3216 graphs: ground truth for exhaustive search). At the low "
                 "budget the best graph answers and refines; at the high one it fuses two "
                 "answers."),
    models=tuple(m for m in MATH_LIKE.models
                 if m.name in ("qwen2.5-1.5b", "qwen2.5-3b", "llama3.2-1b")),
    template=(2, 2),
    budgets={"low": _calls(6, "qwen2.5-1.5b"), "high": _calls(8, "qwen2.5-1.5b")},
    n_dev=60,
    n_test=120,
))


def get_preset(preset: str | SimPreset) -> SimPreset:
    """The preset called ``preset`` (or ``preset`` itself); ConfigError listing the names."""
    if isinstance(preset, SimPreset):
        return preset
    seed = generated_seed(preset) if isinstance(preset, str) else None
    if seed is not None:
        return generate_preset(seed)
    try:
        return PRESETS[preset]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown sim preset {preset!r}; choose one of "
                          f"{', '.join(PRESETS)}, or gen-<seed> for a generated one") from None


def preset_pool(preset: SimPreset) -> ModelPool:
    """The `ModelPool` of ``preset``'s models, in preset order, with their demo-model costs."""
    by_name = {m.name: m for m in DEMO_MODELS}
    missing = [m.name for m in preset.models if m.name not in by_name]
    if missing:
        raise ConfigError(f"sim preset {preset.name!r} names model(s) {missing} that are "
                          f"not demo models ({', '.join(by_name)})")
    return ModelPool([by_name[m.name] for m in preset.models])


# --------------------------------------------------------------------------- generated
GENERATED_PREFIX = "gen"
_SEED_SALT = 0x5EED_1A4D


@dataclass(frozen=True)
class LandscapePriors:
    """The ranges generated landscapes are drawn from (uniform unless said otherwise).

    ``size_effect`` is the slope of skill in log(parameters): negative values make smaller
    models better. ``family_spread`` and ``model_spread`` are standard deviations of a family's
    and a model's own skill offset; ``role_spread`` that of each model's refine and fuse
    shifts. ``low_calls`` is the low budget in calls of the cheapest model of the pool and
    ``high_ratio`` the high budget over the low one.
    """

    n_models: tuple[int, int] = (3, 6)
    size_effect: tuple[float, float] = (-0.3, 1.0)
    family_spread: float = 0.5
    model_spread: float = 0.35
    role_spread: float = 0.7
    fail: tuple[float, float] = (0.0, 0.08)
    letter_share: float = 0.3
    noise: tuple[float, float] = (0.0, 0.8)
    slope: tuple[float, float] = (0.8, 2.5)
    difficulty_mean: tuple[float, float] = (-0.8, 1.2)
    difficulty_std: tuple[float, float] = (0.5, 1.6)
    hard_fraction: tuple[float, float] = (0.0, 0.25)
    concentration: tuple[float, float] = (0.2, 3.0)       # drawn log-uniformly
    keep_offset: tuple[float, float] = (0.5, 3.0)
    fix_offset: tuple[float, float] = (-0.5, 2.5)
    stick: tuple[float, float] = (0.2, 0.9)
    follow: tuple[float, float] = (0.2, 0.9)
    fuse_share: tuple[float, float] = (0.0, 5.0)
    fuse_offset: tuple[float, float] = (-1.0, 2.0)
    prompt_tokens: tuple[float, float] = (80.0, 400.0)
    depth: tuple[int, int] = (2, 4)
    width: tuple[int, int] = (3, 8)
    low_calls: tuple[float, float] = (4.0, 10.0)
    high_ratio: tuple[float, float] = (2.5, 4.0)


def generate_preset(seed: int, priors: LandscapePriors | None = None, *,
                    n_dev: int = 200, n_test: int = 400) -> SimPreset:
    """The landscape of ``seed``: the same preset in every process (named ``gen-<seed>``)."""
    pr = priors or LandscapePriors()
    rng = np.random.default_rng([_SEED_SALT, int(seed)])

    def uniform(bounds: tuple[float, float]) -> float:
        return float(rng.uniform(*bounds))

    n_models = int(rng.integers(pr.n_models[0], pr.n_models[1] + 1))
    chosen = sorted(int(i) for i in rng.choice(len(DEMO_MODELS), size=n_models, replace=False))
    specs = [DEMO_MODELS[i] for i in chosen]
    size_effect = uniform(pr.size_effect)
    family = {f: float(rng.normal(0.0, pr.family_spread)) for f in sorted({s.family
                                                                            for s in specs})}
    models = tuple(
        SimModel(s.name,
                 skill=size_effect * float(np.log(s.params_b / 3.0)) + family[s.family]
                 + float(rng.normal(0.0, pr.model_spread)),
                 refine=float(rng.normal(0.0, pr.role_spread)),
                 fuse=float(rng.normal(0.0, pr.role_spread)),
                 fail=uniform(pr.fail))
        for s in specs)
    letter = rng.random() < pr.letter_share
    cheapest = min(specs, key=lambda s: s.params_b).name
    low = uniform(pr.low_calls)
    preset = SimPreset(
        name=f"{GENERATED_PREFIX}-{int(seed)}",
        family="generated",
        description=f"Generated landscape {int(seed)} (pytts.sim.landscape).",
        models=models,
        answer_kind="letter" if letter else "integer",
        slope=uniform(pr.slope),
        difficulty_mean=uniform(pr.difficulty_mean),
        difficulty_std=uniform(pr.difficulty_std),
        hard_fraction=uniform(pr.hard_fraction),
        hard_shift=float(rng.uniform(1.0, 4.0)),
        n_distractors=3 if letter else int(rng.integers(1, 6)),
        concentration=float(np.exp(rng.uniform(*np.log(pr.concentration)))),
        noise=0.0 if letter else uniform(pr.noise),
        keep_offset=uniform(pr.keep_offset),
        fix_offset=uniform(pr.fix_offset),
        stick=uniform(pr.stick),
        follow=uniform(pr.follow),
        fuse_share=uniform(pr.fuse_share),
        fuse_offset=uniform(pr.fuse_offset),
        prompt_tokens=uniform(pr.prompt_tokens),
        template=(int(rng.integers(pr.depth[0], pr.depth[1] + 1)),
                  int(rng.integers(pr.width[0], pr.width[1] + 1))),
        n_dev=n_dev,
        n_test=n_test,
    )
    budgets = {"low": Budget(calls=round(low, 2), model=cheapest),
               "high": Budget(calls=round(low * uniform(pr.high_ratio), 2), model=cheapest)}
    return dataclasses.replace(preset, budgets=budgets)


def generated_seed(name: str) -> int | None:
    """The seed of a generated landscape's name (``"gen-12"`` -> 12), else None."""
    prefix = GENERATED_PREFIX + "-"
    if name.startswith(prefix) and name[len(prefix):].isdigit():
        return int(name[len(prefix):])
    return None
