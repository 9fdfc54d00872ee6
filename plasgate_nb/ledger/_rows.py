"""Small helpers of the ledger: validating rows to plan, message keys, settings and error texts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from .._keys import key_digest
from .._masking import content_digest
from ..errors import LedgerError

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
    """Message keys as unique strings, in the given order."""
    if isinstance(keys, str):
        keys = [keys]
    return list(dict.fromkeys(str(k) for k in keys))


PLAN_COLUMNS = ("message_key", "msisdn", "content_hash", "content_report", "encoding", "segments", "key_digest")


def plan_rows(rows: pd.DataFrame) -> dict[str, list[Any]]:
    """Validate the rows to plan and return their stored columns (content hashed, not kept), column-wise.

    The result maps each name of :data:`PLAN_COLUMNS` to one list of values in row order.
    """
    if not isinstance(rows, pd.DataFrame):
        raise LedgerError("plan() needs a DataFrame")
    missing = [c for c in ("message_key", "msisdn", "content") if c not in rows.columns]
    if missing:
        raise LedgerError(f"plan() rows lack columns {missing}")
    keys = [str(k) for k in rows["message_key"].tolist()]
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
    return {
        "message_key": keys,
        "msisdn": [m if isinstance(m, str) else str(m) for m in msisdns],
        "content_hash": [content_digest(c) for c in contents],
        "content_report": column("content_report"),
        "encoding": column("encoding"),
        "segments": [None if s is None else int(s) for s in column("segments")],
        "key_digest": [key_digest(k) for k in keys],
    }
