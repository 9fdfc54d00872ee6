"""Delivery events: validate and normalize incoming event dicts, and derive a message's current state.

An event dict (as built by the callback receiver) has:

- ``source``: ``"dlr"`` (a delivery report), ``"smpp"`` (a deliver_sm receipt), ``"batch"`` (a batch
  callback: the gateway handed one recipient to the SMSC) or ``"errback"`` (a batch errback);
- ``message_id``: the gateway's message id (absent for an errback);
- ``level`` (1 or 2) and ``status`` for DLR/SMPP events (``ESME_ROK``..., ``DELIVRD``, ``UNDELIV``...);
- optional ``campaign`` and ``message_key`` (from the callback URL), ``err``, ``done_at`` (aware
  datetime), ``received_at``, ``raw`` (the fields as received);
- batch callbacks: ``msisdn`` (the callback's ``to``), ``batch_id`` or ``queue_id`` (the callback's
  ``batchId``), ``ok``/``error`` (an errback's text becomes the row's reason).

Derivation is a pure function of a message's events in arrival order, with the final and intermediate
states of :mod:`plasgate_nb._states`: level 1 (SMSC acceptance) and level 2 (handset) are kept apart;
the first final level-2 status wins and is never replaced by a non-final one arriving late; without a
final status the latest non-final one shows. An SMSC refusal (a level-1 ``ESME_*`` error) is final: it
stays the row's ``error_code`` whatever intermediate report follows it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .._states import ERRBACK, FINAL_STATUSES, is_refusal
from ..errors import LedgerError
from ._rows import as_utc

SOURCES = frozenset({"dlr", "smpp", "batch", "errback"})
MAX_TEXT = 256
BATCH_OK = "SENT"
BATCH_FAILED = "FAILED"


def _text(value: Any, name: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    """Return ``value`` as bounded text (None when empty), or raise LedgerError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise LedgerError(f"event without {name!r}")
        return None
    text = str(value).strip()
    if len(text) > limit:
        raise LedgerError(f"event field {name!r} is too long")
    return text


def _when(value: Any, name: str) -> datetime | None:
    """Return an aware UTC datetime, or None; naive datetimes are taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise LedgerError(f"event field {name!r} must be a datetime")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event, ready to store and apply."""

    source: str
    dedupe_key: str
    message_id: str | None
    level: int | None
    status: str
    err: str | None
    done_at: datetime | None
    received_at: datetime
    raw: dict[str, Any]
    campaign: str | None
    message_key: str | None
    msisdn: str | None
    batch: str | None
    reason: str | None
    raw_json: str  # ``raw`` as stored


def normalize(event: Mapping[str, Any], *, now: datetime) -> Event:
    """Validate one event dict and compute its dedupe key; raise LedgerError naming what is wrong."""
    if not isinstance(event, Mapping):
        raise LedgerError("an event must be a mapping")
    source = _text(event.get("source", "dlr"), "source", required=True)
    if source not in SOURCES:
        raise LedgerError(f"unknown event source {source!r}")
    campaign = _text(event.get("campaign"), "campaign")
    message_key = _text(event.get("message_key"), "message_key")
    message_id = _text(event.get("message_id"), "message_id")
    raw = dict(event.get("raw") or {})
    received_at = _when(event.get("received_at"), "received_at") or now
    msisdn = batch = reason = None
    level: int | None = None
    err = _text(event.get("err"), "err", limit=64)
    if source in ("dlr", "smpp"):
        if message_id is None:
            raise LedgerError("a delivery report needs a 'message_id'")
        try:
            level = int(event.get("level", 0))
        except (TypeError, ValueError) as exc:
            raise LedgerError("event 'level' must be 1 or 2") from exc
        if level not in (1, 2):
            raise LedgerError("event 'level' must be 1 or 2")
        status = (_text(event.get("status"), "status", required=True, limit=40) or "").upper()
        # a report authenticated for one campaign is a copy only of that campaign's reports: a forged copy
        # stored under another campaign's token must not shadow the genuine one
        dedupe = (
            f"dlr|{message_id}|{level}|{status}"
            if campaign is None
            else f"dlr|{campaign}|{message_id}|{level}|{status}"
        )
    else:
        msisdn = _text(event.get("msisdn"), "msisdn", required=True, limit=32)
        batch = _text(event.get("queue_id") or event.get("batch_id"), "batch_id")
        failed = source == "errback" or event.get("ok") is False
        if failed:
            source, status = "errback", BATCH_FAILED
            reason = _text(event.get("error"), "error") or "refused by the gateway (batch errback)"
            raw.setdefault("statusText", reason)
            dedupe = f"errback|{campaign}|{batch}|{msisdn}"
        else:
            if message_id is None:
                raise LedgerError("a batch callback needs a 'message_id'")
            status = BATCH_OK
            dedupe = f"batch|{message_id}" if campaign is None else f"batch|{campaign}|{message_id}"
    try:
        raw_json = json.dumps(raw)
    except (TypeError, ValueError):
        raise LedgerError("event field 'raw' must hold JSON values") from None
    return Event(
        source=source,
        dedupe_key=dedupe,
        message_id=message_id,
        level=level,
        status=status,
        err=err,
        done_at=_when(event.get("done_at"), "done_at"),
        received_at=received_at,
        raw=raw,
        campaign=campaign,
        message_key=message_key,
        msisdn=msisdn,
        batch=batch,
        reason=reason,
        raw_json=raw_json,
    )


DONE_DATE_STEP = timedelta(minutes=1)  # Jasmin's donedate is YYMMDDhhmm: the minute it was delivered in


def _utc(value: datetime | str) -> datetime:
    """An aware UTC datetime from a datetime or the text SQLite stores (UTC, no offset)."""
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def delivered_time(done_at: datetime | str | None, received_at: datetime | str) -> datetime:
    """When a DELIVRD message reached the handset, as closely as its report tells.

    Jasmin's done date gives the minute (a date with seconds is taken as exact); the handset had it no
    later than the report reached us. So: the time we received the report, unless that is past the
    done minute (a late or retried report), then the end of that minute. A gateway clock ahead of ours
    (or a simulator running its clock fast) never puts a delivery after its report.
    """
    received = _utc(received_at)
    if done_at is None:
        return received
    done = _utc(done_at)
    step = DONE_DATE_STEP if done.second == 0 and done.microsecond == 0 else timedelta(0)
    return min(received, done + step)


def _code(err: str | None) -> str | None:
    """A report's error code, or None for none (``000``) or no code."""
    return err if err and err.strip("0") else None


def _error_code(level1: str | None, final: Any, latest: Any) -> str | None:
    """A row's error code: the final report's, else an SMSC refusal's (final), else the latest report's."""
    if final is not None:
        return _code(final.err)
    if is_refusal(level1):
        return level1
    return _code(latest.err) if latest is not None else None


def derive(rows: Iterable[Any], *, state: str) -> dict[str, Any]:
    """Derive a message's delivery columns and state from its events (rows in arrival order).

    ``rows`` carry ``source, level, status, err, done_at, received_at, raw``; ``state`` is the row's
    current send state. The kinds of states are those of :mod:`plasgate_nb._states`: the first final
    level-2 status stays; an SMSC refusal (a level-1 ``ESME_*`` error, after which Jasmin sends no
    level 2) is final too, kept as the row's ``error_code``; intermediate statuses only show until a
    final one comes. Any report from the gateway proves the message was accepted (so it is never
    resent); a batch errback with no such proof refuses the row whatever came before it (a 200 comes
    before the errback on a real gateway): ``rejected``, with the gateway's text as its reason and
    the error code ``ERRBACK``.
    """
    level1 = final = latest = None
    accepted = False
    refusal = None
    for row in rows:
        if row.source == "errback":
            refusal = refusal or row
            continue
        accepted = True
        if row.source == "batch":
            continue
        if row.level == 1:
            level1 = level1 or row
        elif row.status in FINAL_STATUSES:
            final = final or row
        else:
            latest = row
    chosen = final or latest
    out: dict[str, Any] = {
        "delivery_level1_status": level1.status if level1 else None,
        "delivery_status": chosen.status if chosen else None,
        "done_at": chosen.done_at if chosen else None,
        "delivered_at": None,
        "error_code": _error_code(level1.status if level1 else None, final, latest),
    }
    if chosen is not None and chosen.status == "DELIVRD":
        out["delivered_at"] = delivered_time(chosen.done_at, chosen.received_at)
    if accepted and state != "accepted":
        out["state"], out["reason"] = "accepted", None
    elif refusal is not None and not accepted:
        out["error_code"] = ERRBACK
        if state in ("submitting", "uncertain", "accepted"):
            text = str((refusal.raw or {}).get("statusText") or "refused by the gateway (batch errback)")
            out["state"], out["reason"] = "rejected", text[:MAX_TEXT]
    return out


DELIVERY_COLUMNS = ("delivery_status", "delivery_level1_status", "done_at", "delivered_at", "error_code")


def advance(current: Mapping[str, Any], rows: Iterable[Any], *, state: str) -> dict[str, Any] | None:
    """Apply events arriving after those already applied to a row's stored delivery columns.

    Gives the same result as ``derive`` over all the row's events (old then ``rows``, in arrival order)
    without reading the old ones: the first level-1 status and the first final level-2 status stay, a
    later non-final level-2 status replaces a non-final one. Returns None when ``rows`` hold an errback
    (whose effect depends on the older events): the caller then derives from all events.
    """
    level1 = current.get("delivery_level1_status")
    status = current.get("delivery_status")
    chosen = None
    accepted = False
    for row in rows:
        if row.source == "errback":
            return None
        accepted = True
        if row.source == "batch":
            continue
        if row.level == 1:
            level1 = level1 if level1 is not None else row.status
        elif status not in FINAL_STATUSES:
            status, chosen = row.status, row
    out = {c: current.get(c) for c in DELIVERY_COLUMNS}
    out["delivery_level1_status"] = level1
    if chosen is not None:
        out["delivery_status"], out["done_at"] = chosen.status, chosen.done_at
        out["delivered_at"] = delivered_time(chosen.done_at, chosen.received_at) if chosen.status == "DELIVRD" else None
    if status in FINAL_STATUSES:
        if chosen is not None:
            out["error_code"] = _code(chosen.err)
    elif is_refusal(level1):
        out["error_code"] = level1
    elif chosen is not None:
        out["error_code"] = _code(chosen.err)
    elif status is None:
        out["error_code"] = None
    if accepted and state != "accepted":
        out["state"], out["reason"] = "accepted", None
    return out
