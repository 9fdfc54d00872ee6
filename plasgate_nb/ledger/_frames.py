"""Read ledger queries into pandas frames quickly (one SELECT, raw driver rows, vectorized conversions)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import sqlalchemy as sa

MESSAGE_COLUMNS = (
    "message_key", "msisdn", "content_hash", "content_report", "encoding", "segments", "batch_id",
    "queue_id", "message_id", "state", "reason", "attempts", "response_status", "response_body",
    "created_at", "updated_at", "submitted_at", "delivery_status", "delivery_level1_status",
    "delivered_at", "done_at", "error_code",
)
EVENT_COLUMNS = (
    "message_key", "message_id", "source", "level", "status", "err", "done_at", "received_at", "raw",
)
TIME_COLUMNS = frozenset({"created_at", "updated_at", "submitted_at", "delivered_at", "done_at", "received_at"})
INT_COLUMNS = frozenset({"segments", "attempts", "response_status", "level"})


def _fetch(conn: sa.Connection, stmt: sa.Select) -> list[tuple[Any, ...]]:
    """Run ``stmt`` through the driver directly (no per-value SQLAlchemy processing) and fetch all rows."""
    compiled = stmt.compile(dialect=conn.dialect)
    params: Any = compiled.params
    if compiled.positiontup is not None:
        params = tuple(compiled.params[name] for name in compiled.positiontup)
    result = conn.exec_driver_sql(str(compiled), params)
    try:
        return result.cursor.fetchall()  # plain driver tuples: pandas probes SQLAlchemy rows slowly
    finally:
        result.close()


def read_frame(conn: sa.Connection, stmt: sa.Select, names: list[str]) -> pd.DataFrame:
    """Run ``stmt`` and return its rows as a frame with ``names``: times as UTC, counts as Int64."""
    frame = pd.DataFrame.from_records(_fetch(conn, stmt), columns=names, coerce_float=False)
    for name in names:
        if name in TIME_COLUMNS:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
        elif name in INT_COLUMNS:
            frame[name] = frame[name].astype("Int64")
        elif name == "raw":
            frame[name] = pd.Series([v if isinstance(v, dict) else json.loads(v) if v else {}
                                     for v in frame[name]], index=frame.index, dtype=object)
    return frame


def bind_value(conn: sa.Connection, column: sa.Column[Any], value: Any) -> Any:
    """``value`` as the driver wants it for ``column`` (to prepare a constant once for a bulk insert)."""
    process = column.type._cached_bind_processor(conn.dialect)
    return process(value) if process is not None else value


def bulk_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (same keys, values already in driver form) with one driver-level executemany."""
    if not rows:
        return
    names = list(rows[0])
    if conn.dialect.name == "postgresql":  # COPY is several times faster than INSERT for big plans
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row[name] for name in names))
        return
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
    params: Any = rows
    if compiled.positiontup is not None:
        order = list(compiled.positiontup)
        params = [tuple(row[name] for name in order) for row in rows]
    conn.exec_driver_sql(str(compiled), params)
