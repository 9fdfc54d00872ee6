"""plasgate_nb: run Plasgate SMS campaigns from Jupyter notebooks and pandas pipelines, exactly once."""

from __future__ import annotations

from .errors import (
    AudienceError,
    CallbackError,
    ConfigError,
    GatewayError,
    LedgerError,
    PlasgateError,
    Rejected,
    TemplateError,
    TransportError,
)
from .segments import SegmentCount, count_segments, split_parts

__version__ = "0.1.0"

__all__ = [
    "AudienceError",
    "CallbackError",
    "ConfigError",
    "GatewayError",
    "LedgerError",
    "PlasgateError",
    "Rejected",
    "SegmentCount",
    "TemplateError",
    "TransportError",
    "count_segments",
    "split_parts",
]
