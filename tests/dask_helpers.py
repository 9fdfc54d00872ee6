"""A session-wide ``dask.distributed.LocalCluster`` with 2 worker processes for the Dask tests (offered by conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A distributed Client on a LocalCluster of 2 single-threaded worker processes (closed at session end).

    The dashboard (the scheduler's HTTP server) takes a free port: ``None`` would mean 8787, and a cluster
    another test run holds there makes "Port 8787 is already in use" a warning, which fails the fixture.
    """
    distributed = pytest.importorskip("distributed", reason="Dask tests need the [dask] extra")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="2GiB"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
