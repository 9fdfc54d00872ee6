"""The durable campaign ledger: what was planned, sent, settled and delivered, exactly once.

An SQLite file by default (WAL, shared safely by several processes), PostgreSQL by URL. Each message
moves ``planned -> submitting -> accepted | rejected | uncertain``; delivery events (DLRs, batch
callbacks) are appended, deduplicated and applied so that a final delivery status is never overwritten
by an earlier one arriving late. The ledger never stores credentials nor the unmasked message text
(only its SHA-256 and the caller's report view).

One sender per campaign: a sender holds the campaign's lease (``Ledger.lease``; host, pid, heartbeat,
expiry), and writes to a campaign's rows are refused while another live sender holds it.
"""

from __future__ import annotations

from .._states import FINAL_STATUSES
from ._lease import Lease, LeaseHolder
from ._schema import SCHEMA_VERSION
from ._store import INTERRUPTED, SKIP_STATES, STATES, CampaignInfo, Ledger, PlanResult

__all__ = [
    "FINAL_STATUSES",
    "INTERRUPTED",
    "SCHEMA_VERSION",
    "SKIP_STATES",
    "STATES",
    "CampaignInfo",
    "Lease",
    "LeaseHolder",
    "Ledger",
    "PlanResult",
]
