"""The Arrow types of message columns, shared by the columnar readers of SQLite and PostgreSQL.

Both backends hand over the same table: ``message_key`` and texts as Arrow strings, counts as int64,
times as timestamp[us, UTC]. :func:`to_frame` turns it into pandas without copying the texts (pandas'
``string`` dtype with pyarrow storage), counts as ``Int64`` and times as ``datetime64[us, UTC]``;
:func:`from_frame` turns the general reader's frame into the same table (the fallback).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
TIME_COLUMNS = frozenset({"created_at", "updated_at", "submitted_at", "delivered_at", "done_at"})
INT_COLUMNS = frozenset({"segments", "attempts", "response_status"})
TEXT_COLUMNS = frozenset(
    {
        "message_key",
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
        "part_ids",
    }
)


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of message column ``name``."""
    if name in TIME_COLUMNS:
        return TIMESTAMP
    if name in INT_COLUMNS:
        return pa.int64()
    return pa.string()


def schema(names: Sequence[str]) -> pa.Schema:
    """The schema of a table of message columns ``names``."""
    return pa.schema([pa.field(name, arrow_type(name)) for name in names])


def _column(values: pa.ChunkedArray) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """One Arrow column as the pandas array the ledger's frames use."""
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pd.arrays.ArrowStringArray(values)
    if pa.types.is_timestamp(kind):
        return values.to_pandas().array
    if pa.types.is_integer(kind):
        mask = values.is_null().to_numpy(zero_copy_only=False)
        filled = values.fill_null(0).to_numpy().astype(np.int64, copy=False)
        return pd.arrays.IntegerArray(filled, mask)
    return values.to_pandas().array


def to_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as a pandas frame: texts ``string`` (pyarrow storage), counts ``Int64``, times UTC."""
    return pd.DataFrame({name: _column(table.column(name)) for name in table.column_names})


def from_frame(frame: pd.DataFrame, names: Sequence[str]) -> pa.Table:
    """The general reader's ``frame`` as a table of ``names`` with the message columns' Arrow types."""
    arrays = []
    for name in names:
        column = frame[name]
        if name in TIME_COLUMNS:
            arrays.append(pa.array(column.dt.tz_convert("UTC").array, type=TIMESTAMP))
        else:
            values = column.astype(object).where(column.notna(), None).to_numpy(dtype=object)
            arrays.append(pa.array(values, type=arrow_type(name), from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema(names))
