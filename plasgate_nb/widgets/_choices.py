"""The send form's choices: transport options (with the SMPP hook), column defaults, sender default."""

from __future__ import annotations

import typing
from typing import Any

import ipywidgets as w
import pandas as pd

from .. import campaign as campaign_module
from ..errors import ConfigError
from ..gateway import Gateway
from ..pacing import FrequencyCap, QuietHours

__all__ = [
    "CONSENT_HINTS",
    "DEFAULT_LEDGER",
    "INDEX",
    "NO_CONSENT",
    "OVERALL",
    "cap_text",
    "close_tree",
    "default_sender",
    "guess_consent",
    "guess_phone",
    "guess_template_by",
    "quiet_text",
    "transport_options",
]

_TRANSPORT_LABELS = {
    "batch": "REST batch-send",
    "single": "REST send (one per request)",
    "http": "HTTP API",
    "smpp": "SMPP",
}
INDEX = "(row index)"
OVERALL = "(overall)"
NO_CONSENT = "(none: everyone consents)"
# Column names the consent picker chooses by default (compared in lower case), the first present wins.
CONSENT_HINTS = ("opt_in", "optin", "opted_in", "consent", "sms_consent", "marketing_consent")
DEFAULT_LEDGER = "plasgate_nb.db"


def transport_options(*, smpp: bool = False) -> list[tuple[str, str]]:
    """The send paths ``Campaign`` accepts, labelled for the transport dropdown.

    The options are read from ``campaign.TransportName``; SMPP is offered only when ``smpp`` is true
    (the form was given an :class:`~plasgate_nb.smpp.SmppConfig`: a session needs its own address and
    login, which the REST/HTTP gateway settings do not hold).
    """
    names = typing.get_args(campaign_module.TransportName)
    return [(_TRANSPORT_LABELS.get(name, name), name) for name in names if smpp or name != "smpp"]


def guess_phone(columns: list[str]) -> str | None:
    """The column most likely to hold phone numbers (the default of the phone picker)."""
    for hint in ("phone", "msisdn", "mobile", "tel", "number"):
        for column in columns:
            if hint in column.lower():
                return column
    return columns[0] if columns else None


def guess_consent(columns: list[str]) -> str:
    """The consent picker's default: a column named like ``opt_in`` or ``consent``, else no consent column."""
    lowered = {column.lower(): column for column in reversed(columns)}
    for hint in CONSENT_HINTS:
        if hint in lowered:
            return lowered[hint]
    return NO_CONSENT


def guess_template_by(columns: list[str]) -> str | None:
    """The "one template per value of" picker's default: a language column, else the first column."""
    for column in columns:
        if column.lower() in ("language", "lang", "locale"):
            return column
    return columns[0] if columns else None


def close_tree(widget: w.Widget) -> None:
    """Close a widget and every widget inside it."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def default_sender(gateway: Gateway | None) -> str:
    """The sender field's default: the gateway's, else ``PLASGATE_SENDER``, else the shared ``SMS Info``."""
    if gateway is not None:
        return gateway.sender
    try:
        return Gateway.from_env().sender
    except ConfigError:
        return "SMS Info"


def quiet_text(value: Any) -> str:
    """Quiet hours (a QuietHours, a pair or ``"21:00-08:00"``) as the field shows them."""
    quiet = QuietHours.parse(value)
    return "" if quiet is None else f"{quiet.start:%H:%M}-{quiet.end:%H:%M}"


def cap_text(value: Any) -> str:
    """A frequency cap (a FrequencyCap, a pair or ``"2/7D"``) as the field shows it: ``2/7D``, ``3/36h``."""
    cap = FrequencyCap.parse(value)
    if cap is None:
        return ""
    seconds = int(pd.Timedelta(cap.window).total_seconds())
    for unit, size in (("D", 86_400), ("h", 3_600), ("min", 60)):
        if seconds % size == 0:
            return f"{cap.messages}/{seconds // size}{unit}"
    return f"{cap.messages}/{seconds}s"
