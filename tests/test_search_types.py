"""The search package, which other systems embed through its ask/tell API, type-checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_search_package_is_mypy_clean():
    # imported modules outside pytts/search are not this test's business (follow silently)
    out = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent",
                          "--no-incremental", "pytts/search"], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
