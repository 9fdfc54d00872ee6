"""plasgate_nb: run Plasgate SMS campaigns from Jupyter notebooks and pandas pipelines, exactly once.

The stages, in data-flow order: :func:`prepare_audience` -> :func:`render_messages` ->
:class:`Campaign` (batching, transport, ledger) -> :class:`CallbackServer` -> :func:`collect` and the
charts. Importing the package registers the ``df.sms`` accessor.

Importing the package is light: the names below are imported on first use (PEP 562), so a process that
needs one part (the simulator's or a callback receiver's child process, a Dask worker) does not load
the rest (matplotlib for the charts, SQLAlchemy for the ledger, Jinja for templates).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from . import accessor as _accessor  # noqa: F401  (registers df.sms; light: see the module docstring)
from .errors import (
    AudienceError,
    CallbackError,
    CampaignBusy,
    ConfigError,
    GatewayError,
    LedgerError,
    OptionError,
    PlasgateError,
    Rejected,
    TemplateError,
    TransportError,
)

if TYPE_CHECKING:
    from .audience import normalize_msisdn, prepare_audience
    from .batch import Batch, build_batches, build_requests
    from .callbacks import CallbackServer
    from .campaign import Campaign, SendSummary
    from .compose import (
        CostEstimate,
        EmptyMessageWarning,
        LongMessageWarning,
        MessagePreview,
        estimate_cost,
        preview,
        render_messages,
    )
    from .experiments import VariantComparison, assign_variants, compare_variants, plot_variants
    from .gateway import Gateway, redact
    from .io import NumericTextWarning, read_customers
    from .ledger import Ledger
    from .report import collect, delivery_summary, export_report, wait_for_reports
    from .segments import SegmentCount, count_segments, split_parts
    from .simulator import Fault, Simulator, SimulatorConfig
    from .smpp import SmppClient, SmppConfig, SmppSession, send_smpp
    from .transport import GatewayClient, SendResult

__version__ = "0.1.0"

_LAZY = {  # public name -> the module that defines it
    **dict.fromkeys(["normalize_msisdn", "prepare_audience"], "audience"),
    **dict.fromkeys(["Batch", "build_batches", "build_requests"], "batch"),
    "CallbackServer": "callbacks",
    **dict.fromkeys(["Campaign", "SendSummary"], "campaign"),
    **dict.fromkeys(
        [
            "CostEstimate",
            "EmptyMessageWarning",
            "LongMessageWarning",
            "MessagePreview",
            "estimate_cost",
            "preview",
            "render_messages",
        ],
        "compose",
    ),
    **dict.fromkeys(["VariantComparison", "assign_variants", "compare_variants", "plot_variants"], "experiments"),
    **dict.fromkeys(["Gateway", "redact"], "gateway"),
    **dict.fromkeys(["NumericTextWarning", "read_customers"], "io"),
    "Ledger": "ledger",
    **dict.fromkeys(["collect", "delivery_summary", "export_report", "wait_for_reports"], "report"),
    **dict.fromkeys(["SegmentCount", "count_segments", "split_parts"], "segments"),
    **dict.fromkeys(["Fault", "Simulator", "SimulatorConfig"], "simulator"),
    **dict.fromkeys(["SmppClient", "SmppConfig", "SmppSession", "send_smpp"], "smpp"),
    **dict.fromkeys(["GatewayClient", "SendResult"], "transport"),
    "SendForm": "widgets",
}


def __getattr__(name: str) -> object:
    """Import a public name's module on first use (``plasgate_nb.Campaign``), or a submodule by name."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)  # plasgate_nb.callbacks, plasgate_nb.charts...
    raise AttributeError(f"module 'plasgate_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, imported or not."""
    return sorted({*globals(), *__all__})


__all__ = [
    "AudienceError",
    "Batch",
    "CallbackError",
    "CallbackServer",
    "Campaign",
    "CampaignBusy",
    "ConfigError",
    "CostEstimate",
    "EmptyMessageWarning",
    "Fault",
    "Gateway",
    "GatewayClient",
    "GatewayError",
    "Ledger",
    "LedgerError",
    "LongMessageWarning",
    "MessagePreview",
    "NumericTextWarning",
    "OptionError",
    "PlasgateError",
    "Rejected",
    "SegmentCount",
    "SendForm",
    "SendResult",
    "SendSummary",
    "Simulator",
    "SimulatorConfig",
    "SmppClient",
    "SmppConfig",
    "SmppSession",
    "TemplateError",
    "TransportError",
    "VariantComparison",
    "assign_variants",
    "build_batches",
    "build_requests",
    "collect",
    "compare_variants",
    "count_segments",
    "delivery_summary",
    "estimate_cost",
    "export_report",
    "normalize_msisdn",
    "plot_variants",
    "prepare_audience",
    "preview",
    "read_customers",
    "redact",
    "render_messages",
    "send_smpp",
    "split_parts",
    "wait_for_reports",
]
