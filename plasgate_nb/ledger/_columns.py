"""Read a few message columns of a large campaign fast from SQLite: one aggregate string per column.

Fetching a million rows as Python tuples costs seconds. Here SQLite's ``group_concat`` returns each
column of a range of rows as one string: times as fixed-width ``YYYY-MM-DD HH:MM:SS.ffffff`` stamps
parsed by NumPy, counts as decimal digits parsed with NumPy, texts split on an ASCII unit
separator: a handful of Python objects instead of millions. The SQL stays as plain as possible
(measured: computing ``char()``, ``substr()`` or ``CASE`` per row costs more than the scan itself).
Any value the encoding cannot carry (a text holding the separator, a malformed stamp, a count that is
not a small non-negative integer) makes the reader return None: the caller then uses the general reader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

TIME_COLUMNS = frozenset({"created_at", "updated_at", "submitted_at", "delivered_at", "done_at"})
INT_COLUMNS = frozenset({"segments", "attempts", "response_status"})
TEXT_COLUMNS = frozenset(
    {
        "msisdn",
        "content_hash",
        "encoding",
        "batch_id",
        "queue_id",
        "message_id",
        "reason",
        "delivery_status",
        "delivery_level1_status",
        "error_code",
        "content_report",
        "response_body",
        "state",
    }
)
FAST_COLUMNS = TIME_COLUMNS | INT_COLUMNS | TEXT_COLUMNS

_SEP = "\x1f"  # ASCII unit separator
_MAX_DIGITS = 9  # counts up to 999,999,999 parse exactly through float64 place values
_NO_TIME = "0001-01-01 00:00:00.000000"  # stands for NULL in the fixed-width time columns
_LAYOUT = np.frombuffer(b"0000-00-00 00:00:00.000000", dtype=np.uint8)
_DIGIT = np.equal(_LAYOUT, ord("0"))
_LOW = np.where(_DIGIT, ord("0"), _LAYOUT)  # per position: a digit, or exactly the layout's character
_HIGH = np.where(_DIGIT, ord("9"), _LAYOUT)


# the storage these arrays really have: without it, pandas (with pyarrow installed) labels them "pyarrow"
# and later fails when a pyarrow-backed value is written into one (Series.mask, where, ...)
_PYTHON_STRING = pd.StringDtype("python")


def _expression(column: str) -> str:
    """The aggregate that returns ``column`` of all selected rows as one string."""
    if column in TIME_COLUMNS:  # SQLAlchemy stores SQLite datetimes as 26 characters (UTC)
        return f"group_concat(coalesce({column}, '{_NO_TIME}'), '')"
    if column == "state":  # never NULL
        return f"group_concat(state, '{_SEP}')"
    return f"group_concat(coalesce({column}, ''), '{_SEP}')"


def sql(columns: Sequence[str]) -> str:
    """One aggregate query over a campaign's rows with ids in a range: count, keys, then ``columns``.

    The separator is a literal in the statement: measured, a bound parameter (or ``char(31)``) as
    ``group_concat``'s separator is evaluated per row and makes the query take half again as long.
    """
    parts = ["count(*)", f"group_concat(message_key, '{_SEP}')", *(_expression(c) for c in columns)]
    return f"SELECT {', '.join(parts)} FROM plasgate_messages WHERE campaign_id = ? AND id >= ? AND id <= ?"


def _times(joined: str, n: int) -> np.ndarray | None:
    """Parse ``n`` concatenated stamps into datetime64[us] (None if any is malformed)."""
    if len(joined) != 26 * n or not joined.isascii():
        return None
    raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(n, 26)
    # checked first: NumPy's parser must only ever see well-formed stamps (each position's range over all rows)
    if not (np.all(raw.min(axis=0) >= _LOW) and np.all(raw.max(axis=0) <= _HIGH)):
        return None
    try:
        stamps = raw.view("S26").reshape(n).astype("datetime64[us]")
    except ValueError:  # a well-formed stamp of an impossible date (month 13, February 30)
        return None
    stamps[stamps == np.datetime64(_NO_TIME.replace(" ", "T"), "us")] = np.datetime64("NaT", "us")
    return stamps


def _split(joined: str | None, n: int) -> list[str] | None:
    """The ``n`` texts joined with the separator (None on a count mismatch)."""
    values = (joined or "").split(_SEP) if n else []
    return values if len(values) == n else None


def _texts(joined: str | None, n: int) -> pd.api.extensions.ExtensionArray | None:
    """Split a joined text column into a string array, empty text as missing (None on a count mismatch)."""
    parts = _split(joined, n)
    if parts is None:
        return None
    values = np.array(parts, dtype=object)
    values[values == ""] = pd.NA
    return pd.arrays.StringArray(values, dtype=_PYTHON_STRING)


def _ints(joined: str | None, n: int) -> pd.api.extensions.ExtensionArray | None:
    """Parse decimal counts joined with the separator into an Int64 array (None for anything else)."""
    text = joined or ""
    if not n or not text.isascii():
        return None if n else pd.arrays.IntegerArray(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    if len(raw) == 2 * n - 1:  # the common case: every value one digit
        digit = raw[::2] - np.uint8(ord("0"))
        if np.all(digit <= 9) and np.all(raw[1::2] == ord(_SEP)):
            return pd.arrays.IntegerArray(digit.astype(np.int64), np.zeros(n, dtype=bool))
    separator = raw == ord(_SEP)
    ends = np.append(np.flatnonzero(separator), len(raw))
    if len(ends) != n:
        return None
    starts = np.append(0, ends[:-1] + 1)
    lengths = ends - starts
    digit = raw - np.uint8(ord("0"))
    if np.any(digit[~separator] > 9) or np.any(lengths > _MAX_DIGITS):
        return None
    field = np.cumsum(separator) - separator  # the field of each byte
    where = np.flatnonzero(~separator)
    places = np.power(10.0, ends[field[where]] - where - 1)
    values = np.bincount(field[where], weights=digit[where] * places, minlength=n)
    return pd.arrays.IntegerArray(np.rint(values).astype(np.int64), lengths == 0)


def _decode(row: Sequence[Any], columns: Sequence[str]) -> dict[str, Any] | None:
    """Turn one aggregate row into column arrays (None when a value could not be carried)."""
    n = int(row[0])
    keys = _split(row[1], n)
    if keys is None:
        return None
    out: dict[str, Any] = {"message_key": np.array(keys, dtype=object)}
    for column, joined in zip(columns, row[2:], strict=True):
        value: Any
        if column in TIME_COLUMNS:
            value = _times(joined or "", n)
        elif column in INT_COLUMNS:
            value = _ints(joined, n)
        else:
            value = _texts(joined, n)
        if value is None:
            return None
        out[column] = value
    return out


PARALLEL_ROWS = 200_000  # from this many rows the id range is read in pieces
PIECES = 8  # pieces of a large campaign: SQLite reads the next ones while this thread decodes the last
READERS = 1  # threads reading pieces (measured on 2 cores: 1 reader + the decoder beats 2 readers)


def ranges(bounds: tuple[Any, Any, Any]) -> list[tuple[int, int]]:
    """The id ranges to read: the campaign's whole range, or ``PIECES`` consecutive ones when large."""
    low, high, count = int(bounds[0]), int(bounds[1]), int(bounds[2])
    if count < PARALLEL_ROWS:
        return [(low, high)]
    cuts = [low + (high - low + 1) * i // PIECES for i in range(PIECES + 1)]
    return [(cuts[i], cuts[i + 1] - 1) for i in range(PIECES) if cuts[i + 1] > cuts[i]]


def _join(parts: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Concatenate the decoded columns of consecutive pieces."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {}
    for name in names:
        values = [p[name] for p in parts]
        out[name] = (
            np.concatenate(values) if isinstance(values[0], np.ndarray) else type(values[0])._concat_same_type(values)
        )
    return out


Query = Callable[[str, tuple[Any, ...]], Sequence[Any]]


def read(
    here: Query, elsewhere: Query, cid: int, bounds: tuple[Any, Any, Any], columns: Sequence[str]
) -> pd.DataFrame | None:
    """Read ``message_key`` and ``columns`` of campaign ``cid`` (in id order), or None to fall back.

    ``here(sql, params)`` runs one statement on the caller's connection and returns its single row;
    ``elsewhere`` does the same on a connection of its own and may be called from another thread: a
    large campaign is read in pieces on a reader thread (SQLite releases the GIL while it runs a
    statement) while this thread decodes the pieces already read. ``bounds`` is the campaign's
    (min id, max id, row count).
    """
    low, _, count = bounds
    names = ["message_key", *columns]
    if not count or low is None or any(c not in FAST_COLUMNS for c in columns):
        return None
    statement = sql(columns)
    pieces = ranges(bounds)
    if len(pieces) == 1:
        decoded = _decode(here(statement, (cid, *pieces[0])), columns)
        return None if decoded is None else _frame(decoded, names)
    parts: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="plasgate-nb-read") as pool:
        futures = [pool.submit(elsewhere, statement, (cid, first, last)) for first, last in pieces]
        try:
            for future in futures:
                row = future.result()
                if not int(row[0]):
                    continue
                part = _decode(row, columns)
                if part is None:
                    return None
                parts.append(part)
        finally:
            for future in futures:
                future.cancel()
    if sum(len(p["message_key"]) for p in parts) != int(count):
        return None  # rows came or went between the pieces' snapshots: the general reader decides
    return _frame(_join(parts, names), names) if parts else None


def _frame(columns: dict[str, Any], names: list[str]) -> pd.DataFrame:
    """Assemble the frame: keys as text, times as UTC, counts as Int64."""
    out: dict[str, Any] = {}
    for name in names:
        value = columns[name]
        out[name] = pd.Series(value).dt.tz_localize("UTC") if name in TIME_COLUMNS else value
    return pd.DataFrame(out)
