"""`pytts doctor`: one line per check, OK or why not, and a failing exit code if any failed."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_core
from fake_openai import FakeOpenAI

from pytts.cli import EXIT_FAILED, main
from pytts.doctor import check_extension_build

LINE = re.compile(r"^(OK  |FAIL) \S.*?: \S")


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def _pool_file(path: Path, models: dict[str, tuple[str, str]]) -> Path:
    path.write_text("".join(
        f'[[models]]\nname = "{name}"\nfamily = "f"\nparams_b = 1.0\nendpoint = "{url}"\n'
        f'api_model = "{api}"\n' for name, (url, api) in models.items()))
    return path


@pytest.mark.server
async def test_doctor_probes_each_endpoint_and_fails_on_a_dead_one(tmp_path, capsys):
    dead = _dead_url()
    async with FakeOpenAI() as fake:
        pool = _pool_file(tmp_path / "pool.toml", {"a": (fake.base_url, "ok"),
                                                   "b": (fake.base_url, "ok"),
                                                   "c": (dead, "ok")})
        code = await asyncio.to_thread(main, ["doctor", "--no-local", "--pool", str(pool)])
        lines = capsys.readouterr().out.splitlines()
        assert fake.hits["ok"] == 1                  # a and b share endpoint and served model
    assert code == EXIT_FAILED
    assert all(LINE.match(line) for line in lines) and len(lines) == 4, lines
    assert lines[0].startswith("OK   backend: ") and lines[1].startswith("OK   extension build")
    ok, bad = (next(line for line in lines if url in line) for url in (fake.base_url, dead))
    assert ok.startswith("OK ") and "answered in" in ok
    assert bad.startswith("FAIL") and "Cannot connect" in bad


@pytest.mark.server
async def test_doctor_exits_0_when_every_check_passes(tmp_path, capsys):
    async with FakeOpenAI() as fake:
        pool = _pool_file(tmp_path / "pool.toml", {"a": (fake.base_url, "ok")})
        code = await asyncio.to_thread(main, ["doctor", "--no-local", "--pool", str(pool)])
    assert code == 0 and "FAIL" not in capsys.readouterr().out


def test_doctor_reports_an_unreadable_pool_file_as_a_failed_check(tmp_path, capsys):
    code = main(["doctor", "--no-local", "--pool", str(tmp_path / "missing.toml")])
    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_FAILED and lines[-1].startswith("FAIL pool ")


def test_extension_build_names_native_and_portable_builds(monkeypatch):
    core = require_core()
    assert "-O3" in core.BUILD_FLAGS.split()        # setup.py's flags were compiled in
    check = check_extension_build()
    native = any(f in core.BUILD_FLAGS for f in ("-march=native", "-mtune=native"))
    assert check.ok and check.detail.startswith("native" if native else "portable")
    monkeypatch.setattr(core, "BUILD_FLAGS", "-O3 -march=native")
    assert check_extension_build().detail.startswith("native (-O3 -march=native)")


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_doctor_runs_and_times_the_embedded_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytts.cli", "doctor"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=280,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert [line.split(":")[0] for line in lines] == [
        "OK   backend", "OK   extension build", "OK   llama.cpp build", "OK   embedded model"]
    speed = re.search(r"(\d+) tokens in ([\d.]+) s = (\d+) tokens/s", lines[-1])
    assert speed is not None and int(speed[1]) > 0 and int(speed[3]) > 0, lines[-1]
