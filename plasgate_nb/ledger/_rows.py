"""Small helpers of the ledger: validating rows to plan, message keys, repeats, settings and error texts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from .._controls import describe as describe_char
from .._controls import refused
from .._keys import canonical_keys, key_digest
from .._masking import content_digest
from ..errors import AudienceError, LedgerError

logger = logging.getLogger("plasgate_nb")

_SECRET_WORDS = ("key", "secret", "password", "passwd", "token", "credential", "auth")


def scrub(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Drop credential-like keys (recursively) from campaign settings before storing them."""
    clean: dict[str, Any] = {}
    for name, value in settings.items():
        if any(word in str(name).lower() for word in _SECRET_WORDS):
            logger.warning("not storing campaign setting %r: it looks like a credential", name)
            continue
        clean[str(name)] = scrub(value) if isinstance(value, Mapping) else value
    return clean


def describe(exc: sa.exc.SQLAlchemyError) -> str:
    """A one-line description of a database error, without SQL parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first[:200]}"


def as_utc(value: datetime) -> datetime:
    """Stored datetimes come back naive from SQLite (they are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def keys_of(keys: Iterable[Any]) -> list[str]:
    """Message keys as unique canonical strings (``101``, ``101.0`` and ``"101"`` are one), in the given order."""
    if isinstance(keys, str):
        keys = [keys]
    try:
        return list(dict.fromkeys(canonical_keys(list(keys))))
    except AudienceError as exc:
        raise LedgerError(str(exc)) from None


PLAN_COLUMNS = ("message_key", "msisdn", "content_hash", "content_report", "encoding", "segments", "key_digest")
TAKEN_STATES = frozenset({"submitting", "accepted", "uncertain"})  # sent, or maybe sent: a repeat is not resent
REPEAT_REASON = "same number and text as message"


def repeat_reason(earlier: str) -> str:
    """The ``reason`` stored on a row not sent because message ``earlier`` carries its number and text."""
    return f"{REPEAT_REASON} {earlier!r}: not sent again (send with allow_repeat=True to send it)"


def plan_rows(rows: pd.DataFrame) -> dict[str, list[Any]]:
    """Validate the rows to plan and return their stored columns (content hashed, not kept), column-wise.

    The result maps each name of :data:`PLAN_COLUMNS` to one list of values in row order. Keys are
    canonical (:func:`~plasgate_nb._keys.canonical_keys`); keys, numbers and texts holding a control
    character (texts may hold tab, newline, carriage return and form feed) raise LedgerError naming
    the rows, before anything is written.
    """
    if not isinstance(rows, pd.DataFrame):
        raise LedgerError("plan() needs a DataFrame")
    missing = [c for c in ("message_key", "msisdn", "content") if c not in rows.columns]
    if missing:
        raise LedgerError(f"plan() rows lack columns {missing}")
    try:
        keys = canonical_keys(rows["message_key"])
    except AudienceError as exc:
        raise LedgerError(f"plan() rows: {exc}") from None
    if len(set(keys)) != len(keys):
        dupes = pd.Series(keys).loc[lambda s: s.duplicated()].unique().tolist()
        raise LedgerError(f"duplicate message keys: {dupes[:10]}")
    n = len(rows)

    def column(name: str) -> list[Any]:
        """The values of column ``name`` with every kind of missing value as None."""
        if name not in rows.columns:
            return [None] * n
        values = rows[name]
        if not values.hasnans:
            return values.tolist()
        return [None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else v for v in values.tolist()]

    msisdns, contents = column("msisdn"), column("content")
    bad = [k for k, m, c in zip(keys, msisdns, contents, strict=True) if m is None or not isinstance(c, str)]
    if bad:
        raise LedgerError(f"rows without a number or text content: {bad[:10]}")
    msisdns = [m if isinstance(m, str) else str(m) for m in msisdns]
    reports = column("content_report")
    _refuse_controls(keys, msisdns, "numbers")
    _refuse_controls(keys, contents, "texts")
    _refuse_controls(keys, [r if isinstance(r, str) else "" for r in reports], "report texts")
    return {
        "message_key": keys,
        "msisdn": msisdns,
        "content_hash": [content_digest(c) for c in contents],
        "content_report": reports,
        "encoding": column("encoding"),
        "segments": [None if s is None else int(s) for s in column("segments")],
        "key_digest": [key_digest(k) for k in keys],
    }


def _refuse_controls(keys: list[str], values: list[str], what: str) -> None:
    """Raise LedgerError naming the rows whose ``values`` hold a refused control character."""
    bad = refused(values)
    if bad:
        shown = ", ".join(f"{keys[i]!r} ({describe_char(values[i])})" for i in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise LedgerError(f"{what} hold control characters in rows {shown}{more}; nothing was planned")


def repeats(
    keys: Sequence[str],
    msisdns: Sequence[str],
    digests: Sequence[str],
    candidates: Sequence[int],
    known: Mapping[str, tuple[Any, ...]],
) -> dict[str, str]:
    """Map the key of each row that repeats an earlier message to that message's key.

    ``candidates`` are the positions of the rows still to send, in frame order; ``known`` maps the
    campaign's stored keys to ``(msisdn, digest, state, ...)``. A candidate repeats a stored message
    submitted, accepted or uncertain under another key with the same number and text digest, or an
    earlier candidate with the same number and digest.
    """
    if not candidates:
        return {}
    numbers = set(msisdns) if len(candidates) == len(msisdns) else {msisdns[i] for i in candidates}
    taken: dict[tuple[str, str], str] = {}
    for key, (msisdn, digest, state, *_) in known.items():
        if state in TAKEN_STATES and msisdn in numbers:
            taken.setdefault((msisdn, digest), key)
    if not taken and len(numbers) == len(candidates):  # every number once, none sent before: no repeat
        return {}
    out: dict[str, str] = {}
    for i in candidates:
        pair = (msisdns[i], digests[i])
        earlier = taken.setdefault(pair, keys[i])
        if earlier != keys[i]:
            out[keys[i]] = earlier
    return out
