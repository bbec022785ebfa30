"""The package type-checks: ``mypy pytts``, with the configuration in pyproject.toml. The search
package, which other systems embed through its ask/tell API, is checked with the rest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_package_is_mypy_clean(tmp_path: Path):
    # a fresh cache: a stale incremental one can hide errors in modules it deems unchanged
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy"),
                          "pytts"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
