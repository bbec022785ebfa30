"""Reference optimum of a simulated landscape at a budget: a long search scored by expected
accuracy (the ground truth), reported with its standard error.

The search is exhaustive over a family of test-time-scaling strategies (a vote of one model or
of two models, followed by up to ``D - 1`` steps each of which is a refinement of every branch
or a layer of one to three fusers over all branches - a fuser of a single answer too, which
prompts differently from a refiner - any model per step), then a best-first
local search from the ten best of them with every local and structural move
(`pytts.search.moves`), until a round improves nothing. Candidates are scored with few
Monte-Carlo samples; the best ones are then rescored with many.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import kernels
from ..cost import CostModel
from ..graph import FUSER, CollaborationGraph, GraphBatch
from ..search.moves import FUSER_COUNTS, neighbours, structural_moves
from .client import SimulatedPool
from .presets import SimPreset
from .truth import GroundTruth

log = logging.getLogger("pytts.sim")

SCREEN_SAMPLES = 48
FINAL_SAMPLES = 4000
FINAL_TOP = 12
LOCAL_ROUNDS = 6
LOCAL_PARENTS = 10
CACHE_FORMAT = 1
"""Version of a cached reference's file layout (`cached_reference_optimum`)."""
_SIM_MODULES = ("client", "draws", "kernel", "latent", "presets", "reference",
                "simulate_reference", "task", "truth")


@dataclass(frozen=True)
class Reference:
    """The best graph found, its expected accuracy on the test split and the standard error
    (Monte-Carlo) of that figure; ``n_scored`` graphs were scored to find it; ``best_single``
    is the best one-layer single-model graph (a "pilot") at the same budget."""

    graph: CollaborationGraph
    accuracy: float
    stderr: float
    n_scored: int
    best_single: float


def _layered(names: tuple[str, ...], template: tuple[int, int], first: list[int],
             steps: list[tuple[str, int, int]]) -> CollaborationGraph:
    d_max, w_max = template
    model = np.full((d_max, w_max), -1, np.int16)
    role = np.zeros((d_max, w_max), np.int8)
    edges = np.zeros((d_max - 1, w_max, w_max), np.uint8)
    model[0, : len(first)] = first
    width = len(first)
    for l, (kind, m, count) in enumerate(steps, start=1):
        if kind == "refine":
            model[l, :width] = m
            edges[l - 1, np.arange(width), np.arange(width)] = 1
        else:
            model[l, :count] = m
            role[l, :count] = FUSER
            edges[l - 1, :width, :count] = 1
            width = count
    return CollaborationGraph(model, role, edges, names)


def strategy_family(names: tuple[str, ...], template: tuple[int, int], cost: CostModel,
                    budget: float) -> list[CollaborationGraph]:
    """Every graph of the family in the module docstring that fits ``budget``."""
    d_max, w_max = template
    k = len(names)

    def fits(g: CollaborationGraph) -> bool:
        return bool(cost.batch_cost(GraphBatch.from_graphs([g]))[0][0] <= budget)

    out: list[CollaborationGraph] = []

    def grow(first: list[int], steps: list[tuple[str, int, int]], width: int) -> None:
        g = _layered(names, template, first, steps)
        if not fits(g):
            return  # every step adds cost: nothing that extends it fits either
        out.append(g)
        if len(steps) + 1 >= d_max:
            return
        for m in range(k):
            grow(first, steps + [("refine", m, width)], width)
            for count in FUSER_COUNTS:
                if count <= w_max:
                    grow(first, steps + [("fuse", m, count)], count)

    for a in range(k):
        for w in range(1, w_max + 1):
            grow([a] * w, [], w)
        for b in range(a + 1, k):
            for wa in range(1, w_max):
                for wb in range(1, w_max - wa + 1):
                    g = _layered(names, template, [a] * wa + [b] * wb, [])
                    if fits(g):
                        out.append(g)
    return out


def reference_optimum(preset: SimPreset, budget: str | float, *,
                      template: tuple[int, int] | None = None,
                      local_rounds: int = LOCAL_ROUNDS, screen_questions: int | None = None,
                      screen_samples: int = SCREEN_SAMPLES) -> Reference:
    """The reference optimum of ``preset`` at ``budget`` (the name of one of its budgets, or
    FLOPs per query) on ``template`` (default: the preset's), as the module docstring says.

    ``local_rounds`` bounds the local search; candidates are screened on the first
    ``screen_questions`` test questions (default: all) with ``screen_samples`` samples each.
    Smaller values are faster and may miss the optimum by a little; the final figure is always
    the full test split with many samples.
    """
    truth = GroundTruth(preset)
    sim = SimulatedPool(preset)
    screen_on = (None if screen_questions is None
                 else sim.task(screen_questions, split="test").questions)
    cost = sim.cost_model()
    budget_flops = (preset.budgets[budget].resolve(cost) if isinstance(budget, str)
                    else float(budget))
    template = template or preset.template
    names = tuple(sim.pool.names)
    scores: dict[str, tuple[float, CollaborationGraph]] = {}

    def score(graphs: list[CollaborationGraph]) -> None:
        fresh: dict[str, CollaborationGraph] = {}
        for g in graphs:
            key = g.canonical_key()
            if key not in scores:
                fresh.setdefault(key, g)
        if not fresh:
            return
        batch = GraphBatch.from_graphs(list(fresh.values()))
        means, _ = truth.expected_accuracy_batch(batch, screen_on, n_samples=screen_samples)
        for (key, g), m in zip(fresh.items(), means):
            scores[key] = (float(m), g)

    def fits_all(graphs: list[CollaborationGraph]) -> np.ndarray:
        if not graphs:
            return np.zeros(0, bool)
        return cost.batch_cost(GraphBatch.from_graphs(graphs))[0] <= budget_flops

    family = strategy_family(names, template, cost, budget_flops)
    score(family)
    single = max(v for v, g in scores.values() if g.vote_model is not None)
    expanded: set[str] = set()
    for _ in range(local_rounds):
        ranked = sorted(scores.items(), key=lambda kv: -kv[1][0])[:LOCAL_PARENTS]
        parents = [(k, g) for k, (_, g) in ranked if k not in expanded]
        if not parents:
            break
        for key, g in parents:
            expanded.add(key)
            local = neighbours(g)
            moves = [h for h, ok in zip(local, fits_all(local)) if ok]
            score(moves + structural_moves(g, fits_all))
    top = sorted(scores.values(), key=lambda t: -t[0])[:FINAL_TOP]
    batch = GraphBatch.from_graphs([g for _, g in top])
    means, errs = truth.expected_accuracy_batch(batch, n_samples=FINAL_SAMPLES, seed=1)
    i = int(np.argmax(means))
    return Reference(top[i][1], float(means[i]), float(errs[i]), len(scores), single)


def reference_key(preset: SimPreset, budget_flops: float, template: tuple[int, int]) -> str:
    """The cache key of a reference: a hash of everything that decides it.

    That is the preset's every parameter, the budget and template, the search's constants, the
    kernel backend, and the code that scores and moves graphs. The code enters as the bytes of
    its modules and of the compiled extension, so an edited simulator or search never reads a
    reference cached by the code before it."""
    described = {
        "format": CACHE_FORMAT,
        "preset": dataclasses.asdict(preset),
        "budget": float(budget_flops).hex(),
        "template": list(template),
        "search": [SCREEN_SAMPLES, FINAL_SAMPLES, FINAL_TOP, LOCAL_ROUNDS, LOCAL_PARENTS],
        "backend": kernels.BACKEND,
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=repr).encode())
    code = ["pytts.graph", "pytts.cost", "pytts.kernels", "pytts._reference",
            "pytts.search.moves"] + [f"pytts.sim.{m}" for m in _SIM_MODULES] + ["pytts._core"]
    for name in code:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pytts._core, on the NumPy fallback: not part of the reference
            continue
        if module.__file__ is None:  # a namespace package: there is no file to key on
            raise RuntimeError(f"{name} has no file, so the reference cache cannot be keyed")
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:32]


def cached_reference_optimum(preset: SimPreset, budget_flops: float, *,
                             template: tuple[int, int], cache_dir: str | Path) -> Reference:
    """`reference_optimum` of ``preset`` at ``budget_flops`` on ``template``, kept as one JSON
    file per `reference_key` in ``cache_dir`` so that a rerun on the same landscape skips the
    search. A cached file that does not read back as a reference for this pool is searched
    again and overwritten; a cache directory that cannot be written is skipped (the reference
    is still returned)."""
    path = Path(cache_dir) / f"{reference_key(preset, budget_flops, template)}.json"
    try:
        data = json.loads(path.read_text())
        graph = CollaborationGraph.from_dict(data["graph"], preset.model_names)
        if graph.template != tuple(template):
            raise ValueError(f"its graph is on template {graph.template}, not {template}")
        return Reference(graph, float(data["accuracy"]), float(data["stderr"]),
                         int(data["n_scored"]), float(data["best_single"]))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("reference cache %s does not read (%s); searching again", path, exc)
    ref = reference_optimum(preset, budget_flops, template=template)
    record = {"graph": ref.graph.to_dict(), "accuracy": ref.accuracy, "stderr": ref.stderr,
              "n_scored": ref.n_scored, "best_single": ref.best_single}
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # written whole, then renamed: a reader never sees half a file
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp",
                                         delete=False) as tmp:
            tmp_name = tmp.name
            json.dump(record, tmp)
        os.replace(tmp_name, path)
    except OSError as exc:
        log.warning("reference cache %s not written (%s)", path, exc)
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
    return ref
