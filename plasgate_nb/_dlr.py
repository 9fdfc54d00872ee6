"""Parse delivery reports and batch callbacks as Jasmin's DLRThrower and batch sender emit them.

Pure functions from request fields to event dicts for ``Ledger.record_events``; they raise
``CallbackError`` with a short reason on anything malformed, and never trust sizes or encodings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ._states import LEVEL2_STATUSES
from .errors import CallbackError

__all__ = [
    "LEVEL1_STATUS",
    "MAX_FIELD",
    "parse_batch_callback",
    "parse_dlr",
    "parse_jasmin_date",
]

PHNOM_PENH = ZoneInfo("Asia/Phnom_Penh")
LEVEL1_STATUS = re.compile(r"^ESME_R[A-Z0-9_]{1,24}$")
MAX_FIELD = 256
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_MSISDN = re.compile(r"^\+?[0-9]{6,20}$")
_SUCCESS = re.compile(r'^Success "(?P<id>[^"]{1,100})"$')
# `text` (the first 20 characters of the message) is deliberately not kept: it can hold masked values
_DLR_FIELDS = ("id", "message_status", "level", "connector", "id_smsc", "sub", "dlvrd", "subdate", "donedate", "err")


def _field(fields: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    """Return a bounded field value, or raise CallbackError when required and absent."""
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise CallbackError(f"missing field {name!r}")
        return None
    if len(value) > MAX_FIELD:
        raise CallbackError(f"field {name!r} is too long")
    return value


def parse_jasmin_date(value: str | None) -> datetime | None:
    """Parse Jasmin's ``YYMMDDhhmm`` (gateway-local, Asia/Phnom_Penh) into an aware UTC datetime."""
    if not value:
        return None
    return _jasmin_date(value.strip())


@functools.lru_cache(maxsize=4096)  # reports of one burst share a few minutes; strptime costs microseconds
def _jasmin_date(digits: str) -> datetime | None:
    """Parse stripped ``YYMMDDhhmm[ss]`` digits (None when malformed)."""
    fmt = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S"}.get(len(digits))
    if fmt is None or not digits.isdigit():
        return None
    try:
        local = datetime.strptime(digits, fmt).replace(tzinfo=PHNOM_PENH)
    except ValueError:
        return None
    return local.astimezone(UTC)


def parse_dlr(fields: Mapping[str, str], *, campaign: str, message_key: str | None) -> dict[str, Any]:
    """Turn a DLR's fields (query, form or JSON) into a ledger event; raise CallbackError if malformed."""
    message_id = _field(fields, "id", required=True)
    if not _ID.match(message_id or ""):
        raise CallbackError("field 'id' is not a message id")
    level_text = _field(fields, "level", required=True) or ""
    if level_text not in ("1", "2"):
        raise CallbackError("field 'level' must be 1 or 2")
    level = int(level_text)
    status = (_field(fields, "message_status", required=True) or "").strip()
    if level == 1 and not LEVEL1_STATUS.match(status):
        raise CallbackError("level 1 'message_status' must be an ESME status")
    if level == 2 and status not in LEVEL2_STATUSES:
        raise CallbackError("level 2 'message_status' is not a delivery status")
    raw = {name: value for name in _DLR_FIELDS if (value := _field(fields, name)) is not None}
    return {
        "campaign": campaign,
        "message_key": message_key,
        "message_id": message_id,
        "level": level,
        "status": status,
        "err": raw.get("err"),
        "submitted_at": parse_jasmin_date(raw.get("subdate")),
        "done_at": parse_jasmin_date(raw.get("donedate")),
        "raw": raw,
        "source": "dlr",
    }


def parse_batch_callback(fields: Mapping[str, str], *, campaign: str, errback: bool) -> dict[str, Any]:
    """Turn a batch callback (``batchId, to, status, statusText``) into a ledger event."""
    batch_id = _field(fields, "batchId", required=True) or ""
    if not _ID.match(batch_id):
        raise CallbackError("field 'batchId' is not a batch id")
    to = (_field(fields, "to", required=True) or "").strip()
    if not _MSISDN.match(to):
        raise CallbackError("field 'to' is not a phone number")
    status = _field(fields, "status", required=True)
    if status not in ("0", "1"):
        raise CallbackError("field 'status' must be 0 or 1")
    text = _field(fields, "statusText") or ""
    message_id = None
    if status == "1":
        match = _SUCCESS.match(text.strip())
        if match is None:
            raise CallbackError("success callback without 'Success \"<id>\"' status text")
        message_id = match["id"]
        if not _ID.match(message_id):
            raise CallbackError("statusText carries no valid message id")
    return {
        "campaign": campaign,
        "queue_id": batch_id,
        "msisdn": to.lstrip("+"),
        "message_id": message_id,
        "ok": status == "1" and not errback,
        "error": None if status == "1" else text[:MAX_FIELD],
        "raw": {"batchId": batch_id, "to": to, "status": status, "statusText": text},
        "source": "errback" if errback else "batch",
    }
