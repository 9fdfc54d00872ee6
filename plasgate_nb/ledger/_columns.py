"""Read message columns of a large campaign fast from SQLite: one aggregate byte string per column.

Fetching a million rows as Python tuples costs seconds. Here SQLite's ``group_concat`` returns each
column of a range of rows as one byte string (a ``BLOB``: no Python text object is built), and NumPy
turns it into an Arrow array without a Python object per value: texts by cutting on an ASCII unit
separator (the offsets of an Arrow string array, computed with NumPy), times as fixed-width
``YYYY-MM-DD HH:MM:SS.ffffff`` stamps parsed by NumPy, counts as decimal digits. The SQL stays as plain
as possible (measured: computing ``char()``, ``substr()`` or ``CASE`` per row costs more than the scan
itself). A NULL text is sent as the one byte ``\\x1e``, so an empty text stays empty. Any value the
encoding cannot carry (a text holding either separator, text that is not UTF-8, a malformed stamp, a
count that is not a small non-negative integer) makes the reader return None: the caller then uses the
general reader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from ._arrow import INT_COLUMNS, TEXT_COLUMNS, TIME_COLUMNS, TIMESTAMP, schema

FAST_COLUMNS = TIME_COLUMNS | INT_COLUMNS | TEXT_COLUMNS

_SEP = 0x1F  # ASCII unit separator, between values
_NULL = 0x1E  # ASCII record separator: the whole value of a NULL text
_MAX_DIGITS = 9  # counts up to 999,999,999 parse exactly through float64 place values
_MAX_BYTES = 2**31 - 1  # an Arrow string array's 32-bit offsets
_NO_TIME = "0001-01-01 00:00:00.000000"  # stands for NULL in the fixed-width time columns
_LAYOUT = np.frombuffer(b"0000-00-00 00:00:00.000000", dtype=np.uint8)
_DIGIT = np.equal(_LAYOUT, ord("0"))
_LOW = np.where(_DIGIT, ord("0"), _LAYOUT).astype(np.uint8)  # per position: a digit, or the layout's character
_SPAN = np.where(_DIGIT, 9, 0).astype(np.uint8)  # how far above _LOW each position may be


def _expression(column: str) -> str:
    """The aggregate that returns ``column`` of all selected rows as one byte string."""
    if column in TIME_COLUMNS:  # SQLAlchemy stores SQLite datetimes as 26 characters (UTC)
        joined = f"group_concat(coalesce({column}, '{_NO_TIME}'), '')"
    elif column in ("message_key", "state"):  # never NULL
        joined = f"group_concat({column}, '{chr(_SEP)}')"
    else:
        joined = f"group_concat(coalesce({column}, '{chr(_NULL)}'), '{chr(_SEP)}')"
    return f"CAST({joined} AS BLOB)"


def sql(columns: Sequence[str], *, state: bool = False) -> str:
    """One aggregate query over a campaign's rows with ids in a range: count, keys, then ``columns``.

    ``state``: only the rows in the state given as the fourth parameter. The separators are literals in
    the statement: measured, a bound parameter (or ``char(31)``) as ``group_concat``'s separator is
    evaluated per row and makes the query take half again as long.
    """
    parts = ["count(*)", _expression("message_key"), *(_expression(c) for c in columns)]
    where = "campaign_id = ? AND id >= ? AND id <= ?" + (" AND state = ?" if state else "")
    return f"SELECT {', '.join(parts)} FROM plasgate_messages WHERE {where}"


def _bytes(value: Any) -> np.ndarray:
    """An aggregate's bytes as a NumPy array (an empty group gives NULL)."""
    return np.frombuffer(value or b"", dtype=np.uint8)


def _times(value: Any, n: int) -> pa.Array | None:
    """Parse ``n`` concatenated stamps into timestamp[us, UTC] (None if any is malformed)."""
    raw = _bytes(value)
    if len(raw) != 26 * n:
        return None
    raw = raw.reshape(n, 26)
    # checked first: NumPy's parser must only ever see well-formed stamps. One pass over the bytes: below
    # _LOW wraps around (unsigned) to far above the span, so a single comparison checks both bounds
    if n and not np.all(raw - _LOW <= _SPAN):
        return None
    try:
        stamps = raw.view("S26").reshape(n).astype("datetime64[us]")
    except ValueError:  # a well-formed stamp of an impossible date (month 13, February 30)
        return None
    missing = stamps == np.datetime64(_NO_TIME.replace(" ", "T"), "us")
    return pa.array(stamps, type=TIMESTAMP, mask=missing if missing.any() else None)


def _validity(valid: np.ndarray) -> pa.Buffer | None:
    """An Arrow validity bitmap for ``valid`` (None when every value is there)."""
    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _texts(value: Any, n: int) -> pa.Array | None:
    """Cut ``n`` texts joined with the separator into a string array (None if that cannot be done)."""
    raw = _bytes(value)
    if n == 0 or len(raw) > _MAX_BYTES:
        return None if n else pa.array([], type=pa.string())
    separator = raw == _SEP
    cuts = np.flatnonzero(separator)
    if len(cuts) != n - 1:
        return None  # a text holds the separator
    data = raw[~separator] if len(cuts) else raw
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0], offsets[n] = 0, len(data)
    offsets[1:n] = cuts - np.arange(n - 1, dtype=np.int64)
    starts = offsets[:-1]
    null = (offsets[1:] - starts == 1) & (data[np.minimum(starts, max(len(data) - 1, 0))] == _NULL)
    if np.count_nonzero(data == _NULL) != np.count_nonzero(null):
        return None  # a text holds the NULL marker
    array = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), _validity(~null))
    if len(data) and data.max() >= 0x80:  # beyond ASCII: check the UTF-8
        try:
            array.validate(full=True)
        except pa.ArrowInvalid:
            return None
    return array


def _ints(value: Any, n: int) -> pa.Array | None:
    """Parse decimal counts joined with the separator (NULL as the marker) into int64 (None otherwise)."""
    raw = _bytes(value)
    if not n:
        return pa.array([], type=pa.int64())
    if len(raw) == 2 * n - 1:  # the common case: every value one digit
        digit = raw[::2] - np.uint8(ord("0"))
        if np.all(digit <= 9) and np.all(raw[1::2] == _SEP):
            return pa.array(digit.astype(np.int64))
    separator = raw == _SEP
    ends = np.append(np.flatnonzero(separator), len(raw))
    if len(ends) != n:
        return None
    starts = np.append(0, ends[:-1] + 1)
    lengths = ends - starts
    null = raw == _NULL
    missing = np.zeros(n, dtype=bool)
    if null.any():
        missing[(np.cumsum(separator) - separator)[null]] = True
        if np.any(lengths[missing] != 1):
            return None
    digit = raw - np.uint8(ord("0"))
    if np.any(digit[~(separator | null)] > 9) or np.any(lengths > _MAX_DIGITS) or np.any(lengths == 0):
        return None
    field = np.cumsum(separator) - separator  # the field of each byte
    where = np.flatnonzero(~(separator | null))
    places = np.power(10.0, ends[field[where]] - where - 1)
    values = np.bincount(field[where], weights=digit[where] * places, minlength=n)
    return pa.array(np.rint(values).astype(np.int64), mask=missing if missing.any() else None)


def _decode(row: Sequence[Any], columns: Sequence[str]) -> list[pa.Array] | None:
    """Turn one aggregate row into column arrays, keys first (None when a value could not be carried)."""
    n = int(row[0])
    out: list[pa.Array] = []
    for column, value in zip(("message_key", *columns), row[1:], strict=True):
        if column in TIME_COLUMNS:
            array = _times(value, n)
        elif column in INT_COLUMNS:
            array = _ints(value, n)
        else:
            array = _texts(value, n)
        if array is None:
            return None
        out.append(array)
    return out


PARALLEL_ROWS = 200_000  # from this many rows the id range is read in pieces
PIECES = 8  # pieces of a large campaign, read on READERS connections at once
READERS = 2  # threads reading pieces (SQLite releases the GIL while it runs a statement: both cores work)


def ranges(bounds: tuple[Any, Any, Any]) -> list[tuple[int, int]]:
    """The id ranges to read: the campaign's whole range, or ``PIECES`` consecutive ones when large."""
    low, high, count = int(bounds[0]), int(bounds[1]), int(bounds[2])
    if count < PARALLEL_ROWS:
        return [(low, high)]
    cuts = [low + (high - low + 1) * i // PIECES for i in range(PIECES + 1)]
    return [(cuts[i], cuts[i + 1] - 1) for i in range(PIECES) if cuts[i + 1] > cuts[i]]


Query = Callable[[str, tuple[Any, ...]], Sequence[Any]]


def read(
    here: Query,
    elsewhere: Query,
    cid: int,
    bounds: tuple[Any, Any, Any],
    columns: Sequence[str],
    *,
    state: str | None = None,
) -> pa.Table | None:
    """Read ``message_key`` and ``columns`` of campaign ``cid`` (in id order), or None to fall back.

    ``here(sql, params)`` runs one statement on the caller's connection and returns its single row;
    ``elsewhere`` does the same on a connection of its own and may be called from other threads: a
    large campaign is read and decoded in pieces of its id range on ``READERS`` threads (SQLite
    releases the GIL while it runs a statement). ``bounds`` is the
    (min id, max id, row count) of the rows wanted (those in ``state`` when given).
    """
    low, _, count = bounds
    names = ["message_key", *columns]
    if not count or low is None or any(c not in FAST_COLUMNS for c in columns):
        return None
    statement = sql(columns, state=state is not None)
    extra = () if state is None else (state,)
    pieces = ranges(bounds)
    if len(pieces) == 1:
        decoded = _decode(here(statement, (cid, *pieces[0], *extra)), columns)
        return None if decoded is None else pa.Table.from_arrays(decoded, schema=schema(names))

    def piece(first: int, last: int) -> list[pa.Array] | None:
        """Read and decode one piece (NumPy and Arrow mostly run without Python's lock too)."""
        return _decode(elsewhere(statement, (cid, first, last, *extra)), columns)

    parts: list[list[pa.Array]] = []
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="plasgate-nb-read") as pool:
        futures = [pool.submit(piece, first, last) for first, last in pieces]
        try:
            for future in futures:
                part = future.result()
                if part is None:
                    return None
                if len(part[0]):
                    parts.append(part)
        finally:
            for future in futures:
                future.cancel()
    if sum(len(p[0]) for p in parts) != int(count):
        return None  # rows came or went between the pieces' snapshots: the general reader decides
    chunks = [pa.chunked_array([p[i] for p in parts], type=field.type) for i, field in enumerate(schema(names))]
    return pa.Table.from_arrays(chunks, schema=schema(names))
