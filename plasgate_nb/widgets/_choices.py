"""The send form's choices: transport options (with the SMPP hook), column defaults, sender default."""

from __future__ import annotations

import typing

import ipywidgets as w

from .. import campaign as campaign_module
from ..errors import ConfigError
from ..gateway import Gateway

__all__ = ["DEFAULT_LEDGER", "INDEX", "OVERALL", "close_tree", "default_sender", "guess_phone", "transport_options"]

_TRANSPORT_LABELS = {
    "batch": "REST batch-send",
    "single": "REST send (one per request)",
    "http": "HTTP API",
    "smpp": "SMPP",
}
INDEX = "(row index)"
OVERALL = "(overall)"
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
