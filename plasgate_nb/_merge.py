"""The columnar join behind ``collect``: the caller's rows matched to the ledger's, in Arrow.

The ledger hands its columns over as a pyarrow Table (:meth:`~plasgate_nb.ledger.Ledger.read_arrow`);
the frame's keys become an Arrow string array (a text key column of printable ASCII needs no Python
object per key; anything else goes through :func:`plasgate_nb._keys.key_index`, which names bad rows);
each row finds its ledger row by position (no hashing when the ledger holds the rows in frame order, as
sending plans them) and every column is taken, masked and compared with Arrow's kernels. Texts reach
pandas as ``string`` with pyarrow storage, without a copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._keys import key_index
from ._masking import content_digest

STRING = pd.StringDtype("pyarrow")
_WHOLE_TEXT = r"^[+-]?[0-9]+\.0+$"  # what _keys turns into a whole number


def text(values: pd.Series | pd.Index) -> pa.Array:
    """``values`` as one Arrow string array (missing values as nulls)."""
    if not (isinstance(values.dtype, pd.StringDtype) or values.dtype == object):
        values = values.astype(STRING)
    array = pa.array(values, type=pa.string(), from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _plain(array: pa.Array) -> bool:
    """Whether every key of a text array is already canonical (then it is used as it is).

    Canonical as it is: not empty, printable ASCII without spaces (checked on the array's bytes at
    once), and not an Excel whole number such as ``101.0``.
    """
    if array.null_count or not pa.types.is_string(array.type):
        return False
    _, offsets, data = array.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    raw = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]] if data is not None else np.zeros(0, np.uint8)
    if np.any(np.diff(bounds) <= 0) or np.any((raw < 0x21) | (raw > 0x7E)):
        return False
    return not (np.any(raw == ord(".")) and pc.any(pc.match_substring_regex(array, _WHOLE_TEXT)).as_py())


def frame_keys(df: pd.DataFrame, key: str | None) -> tuple[pa.Array, bool]:
    """Each row's canonical message key as an Arrow string array, and whether uniqueness was checked yet.

    Text keys already canonical and integer keys are taken as they are, their uniqueness left to
    :func:`positions` (cheap once they match the ledger's keys, unique there); anything else goes
    through :func:`~plasgate_nb._keys.key_index`, which checks everything and names the rows at fault.
    """
    if key is not None and key not in df.columns:
        return _general(df, key), True  # key_index names the columns
    values = df.index if key is None else df[key]
    if len(values) and (isinstance(values.dtype, pd.StringDtype) or values.dtype == object):
        try:
            array = text(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text: the general path
            array = None
        if array is not None and _plain(array):
            return array, False
    elif len(values) and pd.api.types.is_integer_dtype(values.dtype) and not values.hasnans:
        return pc.cast(pa.array(values.to_numpy()), pa.string()), False
    return _general(df, key), True


def _general(df: pd.DataFrame, key: str | None) -> pa.Array:
    """Keys through :func:`~plasgate_nb._keys.key_index` (canonical, checked; errors name the rows)."""
    return pa.array(key_index(df, key).to_numpy(dtype=object), type=pa.string())


def positions(
    df: pd.DataFrame, key: str | None, found: tuple[pa.Array, bool], stored: pa.ChunkedArray, planned: np.ndarray
) -> pa.Array:
    """For each row of ``df`` the position of its key in the ledger's keys ``stored``, or null.

    ``found`` is :func:`frame_keys` of ``df`` and ``key``. The common case needs no hashing of the
    whole frame: the ledger holds the frame's rows (``planned``: those the audience stage passed, or
    all) in frame order, as sending plans them; checked element by element, and those keys are unique
    since the ledger's are. Keys that are not unique raise :class:`~plasgate_nb.errors.AudienceError`
    (from ``key_index``, naming the rows).
    """
    keys, checked = found
    flat = stored.combine_chunks() if isinstance(stored, pa.ChunkedArray) else stored
    for rows in (planned, np.ones(len(keys), dtype=bool))[: 1 if planned.all() else 2]:
        if int(np.count_nonzero(rows)) == len(flat) and keys.filter(pa.array(rows)).equals(flat):
            if not checked and not rows.all():  # the ledger's keys are unique: the others must be too
                others = keys.filter(pa.array(~rows))
                if len(pc.unique(others)) < len(others) or pc.any(pc.is_in(flat, value_set=others)).as_py():
                    key_index(df, key)  # raises, naming the duplicates
            return pa.array(np.cumsum(rows, dtype=np.int64) - 1, mask=~rows)
    if not checked and len(pc.unique(keys)) < len(keys):
        key_index(df, key)  # raises, naming the duplicates
    return pc.index_in(keys, value_set=flat)


def not_sent_reasons(df: pd.DataFrame) -> pa.Array:
    """Why each row would not be sent by the audience stage (null where it would be sent)."""
    if "audience_status" not in df.columns:
        return pa.nulls(len(df), pa.string())
    status = text(df["audience_status"])
    skipped = pc.fill_null(pc.not_equal(status, "ok"), True)  # missing counts as skipped
    if not pc.any(skipped).as_py():
        return pa.nulls(len(df), pa.string())
    said = text(df["audience_reason"]) if "audience_reason" in df.columns else pa.nulls(len(df), pa.string())
    why = pc.binary_join_element_wise("skipped by audience: ", pc.coalesce(said, status, "not checked"), "")
    return pc.if_else(skipped, why, pa.scalar(None, pa.string()))


def changed(df: pd.DataFrame, keys: Any, pending: pa.Table | None, candidates: Any) -> pa.Array:
    """Which ``candidates`` (still-planned rows) differ, in number or text digest, from what was planned.

    ``keys`` is each row's ledger key (null where none); ``pending`` is the ledger's planned rows
    (``message_key, msisdn, content_hash``), None when ``df`` has no number and text to compare.
    """
    out = np.zeros(len(df), dtype=bool)
    rows = np.flatnonzero(candidates.to_numpy(zero_copy_only=False))
    if not len(rows) or pending is None or not pending.num_rows:
        return pa.array(out)
    found = pc.index_in(keys.take(rows), value_set=pending.column("message_key"))
    hit = found.is_valid().to_numpy(zero_copy_only=False)
    rows, at = rows[hit], found.fill_null(0).to_numpy()[hit]
    texts = df["content"].iloc[rows].astype(STRING).fillna("").to_numpy(dtype=object)
    digests = {t: content_digest(t) for t in pd.unique(texts)}  # a grouped campaign repeats one text
    numbers = df["msisdn"].iloc[rows].astype(STRING).fillna("").to_numpy(dtype=object)
    stored_numbers = pending.column("msisdn").to_numpy()[at]
    stored_hashes = pending.column("content_hash").to_numpy()[at]
    out[rows] = (stored_numbers != numbers) | (stored_hashes != np.array([digests[t] for t in texts], dtype=object))
    return pa.array(out)


def not_before(times: Any, start: Any) -> Any:
    """``times``, but never earlier than ``start`` (a gateway's minute-precision dates, another clock)."""
    early = pc.fill_null(pc.less(times, start), False)
    return pc.if_else(early, start, times) if pc.any(early).as_py() else times


def series(values: Any, index: pd.Index) -> pd.Series:
    """An Arrow column as a pandas Series on ``index``: texts ``string`` (pyarrow), counts ``Int64``, UTC times."""
    chunked = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    kind = chunked.type
    if pa.types.is_string(kind):
        array: Any = pd.arrays.ArrowStringArray(chunked)
    elif pa.types.is_timestamp(kind):
        array = chunked.to_pandas().array
    else:
        mask = chunked.is_null().to_numpy(zero_copy_only=False)
        filled = chunked.fill_null(0).to_numpy()
        array = (
            pd.arrays.FloatingArray(filled.astype(np.float64), mask)
            if pa.types.is_floating(kind)
            else pd.arrays.IntegerArray(filled.astype(np.int64), mask)
        )
    return pd.Series(array, index=index, copy=False)
