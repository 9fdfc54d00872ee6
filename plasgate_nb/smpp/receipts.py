"""Delivery receipts and mobile-originated messages carried by deliver_sm.

A receipt (esm_class 0x04) has the text ``id:... sub:... dlvrd:... submit date:... done date:...
stat:... err:... text:...``; Jasmin omits ``sub``, ``dlvrd`` and ``text`` and adds the TLVs
receipted_message_id (0x001E) and message_state (0x0427). Both sources are read; the TLVs win when
they disagree with the text. Anything else arriving as deliver_sm is a mobile-originated message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .._states import is_final
from . import pdu as _pdu
from .message import decode_short_message

__all__ = [
    "MobileOriginated",
    "Receipt",
    "event_from_deliver",
    "mo_event",
    "parse_deliver_sm",
    "parse_receipt_text",
    "receipt_date",
    "receipt_event",
]

GATEWAY_TZ = timezone(timedelta(hours=7))
ESM_RECEIPT_MASK = 0x3C
ESM_SMSC_RECEIPT = 0x04
_STATE_WORDS = {code: word for word, code in _pdu.MESSAGE_STATES.items()}
_KEYS = re.compile(r"(?:^|\s)(id|sub|dlvrd|submit date|done date|stat|err|text|Text):", re.IGNORECASE)


def parse_receipt_text(text: str) -> dict[str, str]:
    """Parse receipt text into ``{"id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err",
    "text"}``, keeping only the fields present; ``text`` runs to the end of the string.

    >>> parse_receipt_text("id:ab submit date:2611250934 done date:2611250934 stat:DELIVRD err:000")
    {'id': 'ab', 'submit_date': '2611250934', 'done_date': '2611250934', 'stat': 'DELIVRD', 'err': '000'}
    """
    matches = list(_KEYS.finditer(text))
    out: dict[str, str] = {}
    for i, match in enumerate(matches):
        key = match.group(1).lower().replace(" ", "_")
        if key == "text":
            out[key] = text[match.end() :]
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        out[key] = text[match.end() : end].strip()
    return out


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt: which message, its final (or intermediate) state, and the raw text."""

    message_id: str
    stat: str
    err: str | None
    submit_date: str | None
    done_date: str | None
    sub: str | None
    dlvrd: str | None
    text: str | None
    message_state: int | None
    recipient: str
    sender: str
    raw: str

    @property
    def final(self) -> bool:
        """Whether the state is final (DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED; see ``plasgate_nb._states``).

        UNKNOWN, ENROUTE and ACCEPTD are intermediate: the final receipt is still to come.
        """
        return is_final(self.stat)


@dataclass(frozen=True, slots=True)
class MobileOriginated:
    """A message sent by a handset to one of our numbers (a reply)."""

    sender: str
    destination: str
    text: str
    data_coding: int


def parse_deliver_sm(message: _pdu.Pdu) -> Receipt | MobileOriginated:
    """Read a deliver_sm as a Receipt (esm_class 0x04 or receipt TLVs present) or an MO message."""
    is_receipt = (message.get("esm_class", 0) & ESM_RECEIPT_MASK) == ESM_SMSC_RECEIPT or (
        _pdu.TAG_RECEIPTED_MESSAGE_ID in message.tlvs
    )
    if not is_receipt:
        decoded = decode_short_message(message)
        return MobileOriginated(
            message.get("source_addr", ""),
            message.get("destination_addr", ""),
            decoded.text,
            message.get("data_coding", 0),
        )
    raw = bytes(message.get("short_message", b"")).decode("latin-1")
    fields = parse_receipt_text(raw)
    state = message.tlv_int(_pdu.TAG_MESSAGE_STATE)
    stat = _STATE_WORDS.get(state, "") if state is not None else ""
    stat = stat or fields.get("stat", "").upper() or "UNKNOWN"
    message_id = message.tlv_str(_pdu.TAG_RECEIPTED_MESSAGE_ID) or fields.get("id", "")
    return Receipt(
        message_id=message_id,
        stat=stat,
        err=fields.get("err"),
        submit_date=fields.get("submit_date"),
        done_date=fields.get("done_date"),
        sub=fields.get("sub"),
        dlvrd=fields.get("dlvrd"),
        text=fields.get("text"),
        message_state=state,
        recipient=message.get("source_addr", ""),
        sender=message.get("destination_addr", ""),
        raw=raw,
    )


def receipt_date(value: str | None) -> datetime | None:
    """Read a receipt date (``YYMMDDhhmm`` or ``YYMMDDhhmmss``, gateway local time, UTC+7) as aware UTC."""
    if not value or not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        local = datetime.strptime(value, "%y%m%d%H%M%S" if len(value) == 12 else "%y%m%d%H%M")
    except ValueError:
        return None
    return local.replace(tzinfo=GATEWAY_TZ).astimezone(UTC)


def receipt_event(receipt: Receipt) -> dict[str, Any]:
    """Convert a receipt into a ledger delivery event (same shape as an HTTP level-2 DLR).

    ``raw`` holds the receipt's fields as Jasmin's DLR would name them, ``done_at`` the done date. The
    receipt's ``text`` (the message's first characters) is left out: it can hold masked values, and the
    ledger never stores those.
    """
    raw = {
        "id": receipt.message_id,
        "message_status": receipt.stat,
        "level": "2",
        "to": receipt.recipient,
        "subdate": receipt.submit_date,
        "donedate": receipt.done_date,
        "err": receipt.err,
        "sub": receipt.sub,
        "dlvrd": receipt.dlvrd,
        "message_state": receipt.message_state,
    }
    return {
        "message_id": receipt.message_id,
        "level": 2,
        "status": receipt.stat,
        "err": receipt.err,
        "raw": {k: v for k, v in raw.items() if v is not None},
        "source": "smpp",
        "done_at": receipt_date(receipt.done_date),
    }


def mo_event(mo: MobileOriginated) -> dict[str, Any]:
    """Convert a mobile-originated message into a reply dict (``kind="mo"``; not a ledger event)."""
    return {
        "kind": "mo",
        "source": "smpp",
        "msisdn": mo.sender,
        "to": mo.destination,
        "text": mo.text,
        "data_coding": mo.data_coding,
    }


def event_from_deliver(item: Receipt | MobileOriginated) -> dict[str, Any]:
    """Convert a receipt into a ledger event dict, or an MO message into a reply dict (``kind="mo"``)."""
    return receipt_event(item) if isinstance(item, Receipt) else mo_event(item)
