"""Shared fixtures: a leak guard that fails any test leaving server threads or processes behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from plasgate_nb.server import live_servers

SERVER_THREAD_PREFIX = "plasgate-nb"


def _leftovers() -> list[str]:
    """Name the server threads and child processes still alive."""
    threads = [t.name for t in threading.enumerate()
               if t.name.startswith(SERVER_THREAD_PREFIX) and t.is_alive()]
    children = [repr(server) for server in live_servers()]
    return threads + children


@pytest.fixture(autouse=True)
def leak_guard() -> Iterator[None]:
    """Fail a test that leaves a plasgate-nb server thread or a child process running."""
    before = set(_leftovers())
    yield
    deadline = time.monotonic() + 5
    left = [name for name in _leftovers() if name not in before]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [name for name in _leftovers() if name not in before]
    if left:
        pytest.fail(f"test left servers running: {left}")
