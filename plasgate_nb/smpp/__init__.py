"""SMPP v3.4 transport: an asyncio ESME (bind, windowed submit_sm, receipts) and a blocking client.

Layers as in python-smpplib: ``pdu`` (codec) -> ``message`` (parts) -> ``session`` (asyncio ESME)
-> ``client`` (blocking wrapper); ``receipts`` reads deliver_sm; ``campaign.send_smpp`` sends a
campaign's rows with the ledger's exactly-once protocol.
"""

from __future__ import annotations

from .campaign import send_smpp
from .client import SmppClient
from .config import SmppConfig, SmppMessage, SubmitResult
from .message import build_parts
from .receipts import MobileOriginated, Receipt, event_from_deliver, parse_receipt_text, receipt_event
from .session import SmppSession

__all__ = [
    "MobileOriginated",
    "Receipt",
    "SmppClient",
    "SmppConfig",
    "SmppMessage",
    "SmppSession",
    "SubmitResult",
    "build_parts",
    "event_from_deliver",
    "parse_receipt_text",
    "receipt_event",
    "send_smpp",
    "submit_many",
]


async def submit_many(
    messages: list[SmppMessage | dict], *, config: SmppConfig, on_result=None, on_deliver=None
) -> list[SubmitResult]:  # type: ignore[no-untyped-def]
    """Bind one session with ``config``, send ``messages`` windowed, unbind; mirror of the HTTP transport."""
    async with SmppSession(config, on_deliver=on_deliver) as session:
        return await session.submit_many(messages, on_result=on_result)
