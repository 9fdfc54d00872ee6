"""Read a few message columns of a large campaign fast from SQLite: one aggregate string per column.

Fetching a million rows as Python tuples costs seconds. Here SQLite's ``group_concat`` returns each
column of a range of rows as one string: states as one character each, times as fixed-width
``YYYY-MM-DD HH:MM:SS.ffffff`` stamps parsed by NumPy, small counts as one character each, texts split
on an ASCII unit separator: a handful of Python objects instead of millions. Any value the encoding
cannot carry (a text holding the separator, a malformed stamp, a count out of range) makes the reader
return None: the caller then uses the general reader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

STATE_CODES = {"p": "planned", "s": "submitting", "a": "accepted", "r": "rejected", "u": "uncertain"}
TIME_COLUMNS = frozenset({"created_at", "updated_at", "submitted_at", "delivered_at", "done_at"})
INT_COLUMNS = frozenset({"segments", "attempts", "response_status"})
TEXT_COLUMNS = frozenset({"msisdn", "content_hash", "encoding", "batch_id", "queue_id", "message_id", "reason",
                          "delivery_status", "delivery_level1_status", "error_code", "content_report",
                          "response_body"})
FAST_COLUMNS = TIME_COLUMNS | INT_COLUMNS | TEXT_COLUMNS | {"state"}

_SEP = "\x1f"  # ASCII unit separator
_MAX_INT = 50_000  # small counts travel as one character (below the UTF-16 surrogates)
_NO_TIME = "0001-01-01 00:00:00.000000"  # stands for NULL in the fixed-width time columns
_TIME_LAYOUT = np.frombuffer(b"0000-00-00 00:00:00.000000", dtype=np.uint8)
_STATES = np.array([None] * 128, dtype=object)
for _code, _state in STATE_CODES.items():
    _STATES[ord(_code)] = _state


def _expression(column: str) -> str:
    """The aggregate that returns ``column`` of all selected rows as one string."""
    if column == "state":
        return "group_concat(substr(state, 1, 1), '')"
    if column in TIME_COLUMNS:  # SQLAlchemy stores SQLite datetimes as 26 characters (UTC)
        return f"group_concat(coalesce({column}, '{_NO_TIME}'), '')"
    if column in INT_COLUMNS:  # one character per value: code 1 is NULL, 0 out of range, v + 2 the value v
        return (f"group_concat(char(CASE WHEN {column} IS NULL THEN 1 WHEN {column} BETWEEN 0 AND {_MAX_INT} "
                f"THEN {column} + 2 ELSE 0 END), '')")
    return f"group_concat(coalesce({column}, ''), char(31))"


def sql(columns: Sequence[str]) -> str:
    """One aggregate query over a campaign's rows with ids in a range: count, keys, then ``columns``."""
    parts = ["count(*)", "group_concat(message_key, char(31))", *(_expression(c) for c in columns)]
    return (f"SELECT {', '.join(parts)} FROM plasgate_messages "
            "WHERE campaign_id = ? AND id >= ? AND id <= ?")


def _times(joined: str, n: int) -> np.ndarray | None:
    """Parse ``n`` concatenated stamps into datetime64[us] (None if any is malformed)."""
    if len(joined) != 26 * n or not joined.isascii():
        return None
    raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(n, 26)
    digit = np.equal(_TIME_LAYOUT, ord("0"))
    if not (np.all((raw[:, digit] >= ord("0")) & (raw[:, digit] <= ord("9")))
            and np.all(raw[:, ~digit] == _TIME_LAYOUT[~digit])):
        return None  # checked first: NumPy's parser must only ever see well-formed stamps
    stamps = raw.view("S26").reshape(n).astype("datetime64[us]")
    stamps[stamps == np.datetime64(_NO_TIME.replace(" ", "T"), "us")] = np.datetime64("NaT", "us")
    return stamps


def _texts(joined: str | None, n: int) -> pd.api.extensions.ExtensionArray | None:
    """Split a joined text column into a string array, empty text as missing (None on a count mismatch)."""
    values = np.array((joined or "").split(_SEP) if n else [], dtype=object)
    if len(values) != n:
        return None
    values[values == ""] = pd.NA
    return pd.arrays.StringArray(values)


def _ints(joined: str | None, n: int) -> pd.api.extensions.ExtensionArray | None:
    """Decode a column of one character per value into an Int64 array (None if a value was out of range)."""
    codes = np.frombuffer((joined or "").encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    if len(codes) != n or (codes == 0).any():
        return None
    return pd.arrays.IntegerArray(codes - 2, codes == 1)


def _decode(row: Sequence[Any], columns: Sequence[str]) -> dict[str, Any] | None:
    """Turn one aggregate row into column arrays (None when a value could not be carried)."""
    n = int(row[0])
    keys = (row[1] or "").split(_SEP) if n else []
    if len(keys) != n:
        return None
    out: dict[str, Any] = {"message_key": np.array(keys, dtype=object)}
    for column, joined in zip(columns, row[2:], strict=True):
        value: Any
        if column == "state":
            raw = (joined or "").encode("ascii", errors="replace")
            if len(raw) != n:
                return None
            value = _STATES[np.frombuffer(raw, dtype=np.uint8) & 0x7F]
            if n and pd.isna(value).any():
                return None
        elif column in TIME_COLUMNS:
            value = _times(joined or "", n)
        elif column in INT_COLUMNS:
            value = _ints(joined, n)
        else:
            value = _texts(joined, n)
        if value is None:
            return None
        out[column] = value
    return out


def read(query: Callable[[str, tuple[Any, ...]], Sequence[Any]], cid: int, bounds: tuple[Any, Any, Any],
         columns: Sequence[str]) -> pd.DataFrame | None:
    """Read ``message_key`` and ``columns`` of campaign ``cid`` (in id order), or None to fall back.

    ``query(sql, params)`` runs one statement and returns its single row; ``bounds`` is the campaign's
    (min id, max id, row count).
    """
    low, high, count = bounds
    names = ["message_key", *columns]
    if not count or any(c not in FAST_COLUMNS for c in columns):
        return None
    statement = sql(columns)
    decoded = _decode(query(statement, (cid, int(low), int(high))), columns)
    return None if decoded is None else _frame(decoded, names)


def _frame(columns: dict[str, Any], names: list[str]) -> pd.DataFrame:
    """Assemble the frame: keys as text, states as strings, times as UTC, counts as Int64."""
    out: dict[str, Any] = {}
    for name in names:
        value = columns[name]
        if name == "state":
            out[name] = pd.array(value, dtype="string")
        elif name in TIME_COLUMNS:
            out[name] = pd.Series(value).dt.tz_localize("UTC")
        else:
            out[name] = value
    return pd.DataFrame(out)
