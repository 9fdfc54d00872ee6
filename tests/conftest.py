"""Shared fixtures: a leak guard that fails any test leaving server threads or processes behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from plasgate_nb.gateway import Gateway
from plasgate_nb.server import live_servers
from plasgate_nb.simulator import Simulator
from tests.dask_helpers import dask_client  # noqa: F401 (one LocalCluster for the whole session)

SERVER_THREAD_PREFIX = "plasgate-nb"


def _leftovers() -> list[str]:
    """Name the server threads and child processes still alive."""
    threads = [t.name for t in threading.enumerate() if t.name.startswith(SERVER_THREAD_PREFIX) and t.is_alive()]
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


def gateway_for(sim: Simulator, **overrides: Any) -> Gateway:
    """A Gateway for the simulator's demo account with the client rate limits off (tests override the rest)."""
    creds = sim.credentials
    settings: dict[str, Any] = {
        "base_url": sim.url,
        "private_key": creds.private_key,
        "secret": creds.secret,
        "username": creds.username,
        "password": creds.password,
        "sender": creds.sender,
        "rate_limits": {"batch": None, "single": None, "http": None},
    }
    return Gateway(**{**settings, **overrides})


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds (raise AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
