"""A session-wide embedded-model server for tests marked ``server``; import the fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytts.llm.local import LocalServer


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    """One llama-cpp-python server with SmolLM2-135M for the whole test session."""
    with LocalServer(n_threads=2) as server:
        yield server
