"""PNG plots of a search: best-so-far curve, accuracy/cost trade-offs, and a graph drawing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .graph import CollaborationGraph  # noqa: E402
from .search.objective import dominates  # noqa: E402


def pareto_mask(accuracy: Sequence[float] | np.ndarray,
                cost: Sequence[float] | np.ndarray) -> np.ndarray:
    """Points no other point dominates (`dominates`: higher accuracy, lower cost)."""
    acc = np.asarray(accuracy, float)
    cst = np.asarray(cost, float)
    keep = np.ones(len(acc), bool)
    for k in range(len(acc)):
        keep[k] = not dominates(acc, cst, acc[k], cst[k]).any()
    return keep


def plot_best_so_far(values: Sequence[float], path: str | Path, *, label: str = "objective",
                     title: str = "Best so far") -> Path:
    """Objective of each evaluation (dots) and its running maximum (line)."""
    vals = np.asarray(values, float)
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(1, len(vals) + 1)
    ax.scatter(x, vals, s=14, alpha=0.5, label="evaluated graph")
    ax.step(x, np.maximum.accumulate(vals) if len(vals) else vals, where="post", lw=2,
            label="best so far")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_tradeoff(accuracy: Sequence[float], cost: Sequence[float], path: str | Path, *,
                  xlabel: str, title: str) -> Path:
    """Accuracy against a cost axis, with the Pareto front drawn."""
    acc = np.asarray(accuracy, float)
    cst = np.asarray(cost, float)
    front = pareto_mask(acc, cst)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(cst, acc, s=16, alpha=0.5, label="evaluated graphs")
    order = np.argsort(cst[front])
    ax.plot(cst[front][order], acc[front][order], "o-", color="C3", lw=2, label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def draw_graph(graph: CollaborationGraph, path: str | Path, *, title: str = "") -> Path:
    """Layers left to right; each node labelled with its model and role; sinks outlined."""
    depth, widths = graph.depth, graph.layer_widths
    sinks = set(graph.sinks())
    height = max(widths)
    fig, ax = plt.subplots(figsize=(2.6 * depth + 1.5, 1.1 * height + 1.5))

    def pos(layer: int, slot: int) -> tuple[float, float]:
        return layer * 2.6, (widths[layer] - 1) / 2 - slot

    for l, i, j in graph.edges_list():
        (x0, y0), (x1, y1) = pos(l, i), pos(l + 1, j)
        ax.annotate("", xy=(x1 - 0.55, y1), xytext=(x0 + 0.55, y0),
                    arrowprops={"arrowstyle": "->", "color": "0.4", "lw": 1.2})
    families = sorted({_family(n.model_name) for n in graph.nodes()})
    colours = {f: f"C{k}" for k, f in enumerate(families)}
    for node in graph.nodes():
        x, y = pos(node.layer, node.slot)
        colour = colours[_family(node.model_name)]
        box = {"boxstyle": "round,pad=0.35", "fc": colour, "alpha": 0.25,
               "ec": "black" if (node.layer, node.slot) in sinks else colour,
               "lw": 2 if (node.layer, node.slot) in sinks else 1}
        ax.text(x, y, f"{node.model_name}\n{node.role}", ha="center", va="center", fontsize=8,
                bbox=box)
    if sinks:
        ax.text(depth * 2.6 - 1.2, -(height - 1) / 2 - 0.9, "outlined: sinks (voted)",
                fontsize=7, ha="right", color="0.3")
    ax.set_xlim(-1.3, depth * 2.6 - 1.0)
    ax.set_ylim(-(height - 1) / 2 - 1.1, (height - 1) / 2 + 0.8)
    ax.axis("off")
    ax.set_title(title or f"depth {depth}, widths {'x'.join(map(str, widths))}")
    return _save(fig, path)


def _family(model_name: str) -> str:
    """Colour key of a model: the letters its name starts with ("qwen2.5-3b" -> "qwen")."""
    match = re.match(r"[A-Za-z]+", model_name)
    return match.group(0).lower() if match else model_name


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
