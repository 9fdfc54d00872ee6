"""Notebook widgets: :class:`SendForm`, an ipywidgets form to preview, price and send a campaign.

>>> from plasgate_nb.widgets import SendForm  # doctest: +SKIP
>>> SendForm(customers, campaign="spring", ledger="campaign.db")  # doctest: +SKIP
"""

from __future__ import annotations

from ._form import SendForm, transport_options
from ._run import Plan

__all__ = ["Plan", "SendForm", "transport_options"]
