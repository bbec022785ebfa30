"""Decode speed of the embedded model with OpenMP threads that sleep vs spin while they wait.

Run ``python -m bench.local_wait_policy [--busy N] [--rounds R]``. Each round starts the
embedded model server once with ``OMP_WAIT_POLICY=PASSIVE`` (what `LocalServer` sets) and once
with ``ACTIVE``, in alternating order, and times one completion of ``TOKENS`` tokens on each
(after the server's own warm-up). ``--busy N`` runs N processes that spin on the CPU meanwhile,
as other users of a shared machine do. Reported: median tokens per second of each policy and
their ratio, all measured in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics

from pytts.doctor import SPEED_PROMPT, SPEED_TIMEOUT_S, SPEED_TOKENS
from pytts.llm.local import SERVED_MODEL, LocalServer
from pytts.llm.openai import OpenAIClient, RetryPolicy

POLICIES = ("PASSIVE", "ACTIVE")


def _spin() -> None:
    while True:
        pass


async def _tokens_per_s(url: str) -> float:
    async with OpenAIClient(url, retry=RetryPolicy(max_retries=0),
                            timeout_s=SPEED_TIMEOUT_S) as client:
        out = (await client.complete(SERVED_MODEL, SPEED_PROMPT, max_tokens=SPEED_TOKENS,
                                     temperature=0.0, seed=0))[0]
    return out.completion_tokens / out.latency_s


def measure(policy: str) -> float:
    """Tokens per second of one timed completion on a fresh server under ``policy``."""
    os.environ["OMP_WAIT_POLICY"] = policy  # LocalServer keeps a setting the user made
    try:
        with LocalServer(n_threads=2) as server:
            return asyncio.run(_tokens_per_s(server.base_url))
    finally:
        del os.environ["OMP_WAIT_POLICY"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=0, help="spinning processes alongside")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    speeds: dict[str, list[float]] = {p: [] for p in POLICIES}
    try:
        for r in range(args.rounds):
            for policy in POLICIES if r % 2 == 0 else POLICIES[::-1]:
                speeds[policy].append(measure(policy))
    finally:
        for p in spinners:
            p.terminate()
    median = {p: statistics.median(v) for p, v in speeds.items()}
    print(f"{args.busy} spinning process(es), {args.rounds} rounds, {SPEED_TOKENS} tokens each")
    for policy in POLICIES:
        print(f"  OMP_WAIT_POLICY={policy:<8} median {median[policy]:6.1f} tokens/s  "
              f"(runs: {', '.join(f'{s:.1f}' for s in speeds[policy])})")
    print(f"  passive / active: {median['PASSIVE'] / median['ACTIVE']:.2f}x")


if __name__ == "__main__":
    main()
