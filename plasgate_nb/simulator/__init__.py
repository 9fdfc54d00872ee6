"""A Plasgate-compatible gateway on loopback: REST, HTTP API, DLR and batch callbacks, faults, a record.

``with Simulator(SimulatorConfig(seed=1)) as sim:`` serves on ``sim.url`` (a child process by
default, ``mode="thread"`` for tests) with ``sim.credentials``; ``sim.records()`` proves what was
accepted, ``sim.set_faults(...)`` injects failures, ``sim.advance(s)`` moves the clock.
"""

from __future__ import annotations

from .config import (
    DEFAULT_CARRIERS,
    FAULT_KINDS,
    SPECIAL_NUMBERS,
    Account,
    Carrier,
    DeliveryModel,
    Fault,
    RateLimits,
    SimulatorConfig,
)
from .runner import Credentials, Simulator

__all__ = [
    "DEFAULT_CARRIERS",
    "FAULT_KINDS",
    "SPECIAL_NUMBERS",
    "Account",
    "Carrier",
    "Credentials",
    "DeliveryModel",
    "Fault",
    "RateLimits",
    "Simulator",
    "SimulatorConfig",
]
