"""Mobile-originated messages (replies from handsets) in the ledger: checking items, rows, the frame.

A reply is the customer's own text, stored as received (cut to ``REPLY_TEXT_MAX`` characters); it is
not campaign data, so nothing in it is masked. Replies carry no id of their own: two identical texts
from one number are two replies, so nothing is deduplicated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from ..errors import LedgerError
from ._rows import as_utc

__all__ = ["REPLY_COLUMNS", "reply_frame", "reply_rows"]

REPLY_COLUMNS = ("campaign", "msisdn", "destination", "text", "data_coding", "received_at")
_ADDRESS_MAX = 32


def _address(item: Mapping[str, Any], names: tuple[str, ...], what: str, *, required: bool) -> str:
    """The first of ``names`` present in ``item`` as text (at most 32 characters)."""
    value = next((item[n] for n in names if item.get(n) not in (None, "")), None)
    if value is None:
        if required:
            raise LedgerError(f"a reply needs its {what} ({' or '.join(names)})")
        return ""
    text = str(value).strip()
    if len(text) > _ADDRESS_MAX:
        raise LedgerError(f"a reply's {what} is longer than {_ADDRESS_MAX} characters")
    return text


def reply_rows(
    items: Iterable[Mapping[str, Any]], *, campaign_id: int | None, now: datetime, text_max: int
) -> list[dict[str, Any]]:
    """Check reply dicts (``msisdn``, ``to``, ``text``, optional ``data_coding``, ``received_at``) and
    return table rows; any bad item refuses them all (LedgerError)."""
    rows = []
    for item in items:
        if not isinstance(item, Mapping):
            raise LedgerError(f"a reply must be a mapping, not {type(item).__name__}")
        text = item.get("text")
        if not isinstance(text, str):
            raise LedgerError("a reply needs its text as a string")
        coding = item.get("data_coding")
        if coding is not None and (isinstance(coding, bool) or not isinstance(coding, int) or not 0 <= coding <= 255):
            raise LedgerError(f"a reply's data_coding must be an integer 0-255, not {coding!r}")
        received = item.get("received_at")
        if received is not None and not isinstance(received, datetime):
            raise LedgerError("a reply's received_at must be a datetime")
        rows.append(
            {
                "campaign_id": campaign_id,
                "msisdn": _address(item, ("msisdn", "from"), "sender number", required=True),
                "destination": _address(item, ("to", "destination"), "destination", required=False),
                "text": text[:text_max],
                "data_coding": coding,
                "received_at": as_utc(received) if received is not None else now,
            }
        )
    return rows


def reply_frame(records: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Replies read from the ledger as a frame with REPLY_COLUMNS (times in UTC, data_coding Int64)."""
    frame = pd.DataFrame.from_records(records, columns=list(REPLY_COLUMNS), coerce_float=False)
    for name in ("campaign", "msisdn", "destination", "text"):
        frame[name] = frame[name].astype("string")
    frame["data_coding"] = frame["data_coding"].astype("Int64")
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True).astype("datetime64[us, UTC]")
    return frame
