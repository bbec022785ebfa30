"""Writes kernels_known_answers.json: inputs and the outputs the kernels gave for them when the
file was made. tests/test_kernels_agreement.py checks every backend against it, so a change to
the sampler's stream, tables or arithmetic (on either backend) fails a test instead of passing
unnoticed. Run ``python tests/data/make_known_answers.py`` only when such a change is meant."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pytts import _core
from pytts.cost import flops_per_token

OUT = Path(__file__).with_name("kernels_known_answers.json")

# (name, D, W, K, R, n, seed, budget quantile or None, logit scale)
CASES = [
    ("4x8 template, no budget", 4, 8, 6, 2, 12, 2024, None, 1.0),
    ("4x8 template, budget at the 40% quantile", 4, 8, 6, 2, 12, 7, 0.4, 1.0),
    ("3x10 template (no subset table), budget at the median", 3, 10, 3, 3, 8, 2**64 - 1, 0.5, 2.0),
    ("one slot, one model, one role", 1, 1, 1, 1, 4, 0, None, 1.0),
    ("2x3 template, peaked logits", 2, 3, 2, 2, 10, 12345, None, 4.0),
]


def main() -> None:
    cases = []
    for name, d, w, k, r, n, seed, quantile, scale in CASES:
        rng = np.random.default_rng([d, w, k, r, n])
        logits = [rng.normal(0, scale, s) for s in
                  [(d,), (d, d, w), (d, w, k), (d, w, r), (d - 1, w, w)]]
        costs = np.column_stack([flops_per_token(rng.uniform(0.5, 70, k)),
                                 rng.uniform(50, 500, k), rng.uniform(500, 5000, k),
                                 rng.uniform(20, 100, k), rng.uniform(0, 0.5, k)])
        base = 100.0
        budget = math.inf
        if quantile is not None:
            probe = _core.sample_graphs(*logits, None, base, 256, seed ^ 1, math.inf, 256)
            budget = float(np.quantile(_core.graph_cost(*probe[:3], costs, base)[0], quantile))
        model, role, edges, logp, n_drawn = _core.sample_graphs(*logits, costs, base, n, seed,
                                                                budget, 1000 * n)
        flops, latency = _core.graph_cost(model, role, edges, costs, base)
        cases.append({
            "name": name, "logits": [a.tolist() for a in logits],
            "shapes": [list(a.shape) for a in logits], "model_costs": costs.tolist(),
            "base_prompt_tokens": base, "n": n, "seed": seed,
            "budget": None if budget == math.inf else budget, "max_draws": 1000 * n,
            "model": model.tolist(), "role": role.tolist(), "edges": edges.tolist(),
            "logp": logp.tolist(), "n_drawn": int(n_drawn),
            "flops": flops.tolist(), "latency": latency.tolist(),
        })
    answers = ["4", "5", "", "é", "x\ud800y", "The answer is 42."]
    doc = {"sampler": cases,
           "intern_answers": {"answers": answers,
                              "ids": _core.intern_answers(answers).tolist()}}
    # One line per case: small, and a diff shows which case changed.
    lines = ['{"sampler": [']
    lines += [json.dumps(case, separators=(",", ":")) + ("," if k + 1 < len(cases) else "")
              for k, case in enumerate(cases)]
    lines += ['], "intern_answers": ' + json.dumps(doc["intern_answers"]) + "}"]
    OUT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
