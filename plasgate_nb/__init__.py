"""plasgate_nb: run Plasgate SMS campaigns from Jupyter notebooks and pandas pipelines, exactly once.

The stages, in data-flow order: :func:`prepare_audience` -> :func:`render_messages` ->
:class:`Campaign` (batching, transport, ledger) -> :class:`CallbackServer` -> :func:`collect` and the
charts. Importing the package registers the ``df.sms`` accessor.
"""

from __future__ import annotations

from . import accessor as _accessor  # noqa: F401  (registers df.sms)
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


def __getattr__(name: str) -> object:
    """Import the ipywidgets form only when it is asked for (``plasgate_nb.SendForm``)."""
    if name == "SendForm":
        from .widgets import SendForm

        return SendForm
    raise AttributeError(f"module 'plasgate_nb' has no attribute {name!r}")


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
