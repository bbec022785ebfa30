"""The two kernel backends are twins in what they export: the same constants (read from
`pytts.constants`, where C++ has compile-time copies) and the same names."""

from __future__ import annotations

import pytest

from pytts import _reference, constants

from conftest import require_core

SHARED = ("MAX_DEPTH", "MAX_WIDTH", "MAX_MODELS", "MAX_ROLES", "FNV_OFFSET", "FNV_PRIME")


@pytest.mark.parametrize("name", SHARED)
def test_compiled_constants_equal_the_shared_ones(name):
    core = require_core()
    assert getattr(core, name) == getattr(constants, name)
    assert getattr(_reference, name) is getattr(constants, name)
