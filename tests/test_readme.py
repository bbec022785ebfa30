"""The README's Python examples run as written (with the user's evaluator filled in)."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).parents[1] / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _bash_lines() -> list[str]:
    return [line for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
            for line in block.splitlines()]


def test_readme_commands_are_the_ones_ci_runs():
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text().splitlines()
    test_command = [line for line in _bash_lines() if 'pip install -e ".[test]"' in line]
    assert len(test_command) == 1 and test_command[0] in ci     # one pasteable line, verbatim
    assert test_command[0].endswith('pip install -e ".[test]" && python -m pytest')
    assert "pip install -e . && pytts search --demo" in _bash_lines()


def test_readme_builds_llama_cpp_portable_with_the_flags_the_error_names():
    from pytts.llm.local import PORTABLE_CMAKE_ARGS, REINSTALL_PORTABLE
    test_command = next(line for line in _bash_lines() if 'pip install -e ".[test]"' in line)
    assert test_command.startswith(f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install')
    assert "-DGGML_NATIVE=OFF" in PORTABLE_CMAKE_ARGS
    assert REINSTALL_PORTABLE in _bash_lines()


def test_kernel_example_runs():
    block = next(b for b in _python_blocks() if "grad_log_prob" in b)
    scope: dict = {}
    exec(compile(block, "README kernels example", "exec"), scope)
    assert len(scope["batch"]) == 100_000 and scope["winner"][0] >= 0


def test_ask_tell_example_runs():
    from pytts.evaluate import EvalResult
    block = next(b for b in _python_blocks() if "searcher.ask" in b)

    def my_evaluate(graph):
        acc, _ = scope["sim"].expected_accuracy(graph, n_samples=50)
        return EvalResult.from_scores([True] * round(acc * 40) + [False] * (40 - round(acc * 40)),
                                      mean_flops=scope["sim"].cost_model().graph_cost(graph)[0],
                                      mean_latency_s=1.0)

    scope: dict = {"my_evaluate": my_evaluate}
    exec(compile(block, "README ask/tell example", "exec"), scope)
    graph, result = scope["graph"], scope["result"]
    assert result.accuracy == max(r.value for r in scope["searcher"].history)
    from pytts.search import AgentReinforce
    sim = scope["sim"]
    fresh = AgentReinforce(sim.pool, sim.template, sim.cost_model(), "6x qwen2.5-1.5b", seed=0)
    fresh.load_state_dict(scope["state"])
    assert len(fresh.history) == len(scope["searcher"].history) and fresh.best()[0] == graph


def test_readme_warns_that_code_around_the_sandbox_guard_reads_the_parents_environment(tmp_path):
    # issue 10, item 16: the README must say it plainly, and this shows why it must
    import os
    import subprocess
    import sys
    secret = "pytts-readme-check-" + os.urandom(6).hex()
    script = ("from pytts.tasks.sandbox import _Limits, _run\n"
              "code = \"import os\\nprint(open(f'/proc/{os.getppid()}/environ').read())\"\n"
              "print(_run(code, _Limits(10.0, 5, 256, 1, 16), guards=False).stdout_tail)\n")
    env = {**os.environ, "PYTTS_README_SECRET": secret,
           "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60).stdout
    assert secret in out              # a guard-less child reads its parent's environment
    text = " ".join(README.split())
    assert "When pytts runs as root, such code can read the parent's environment" in text
    assert "API keys included" in text
    assert "keep them out of the environment of the process that runs HumanEval checks" in text
    assert "non-root user" in text
