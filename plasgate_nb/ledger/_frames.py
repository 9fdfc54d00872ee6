"""Fast driver-level access to the ledger: frames from one SELECT, bulk inserts, keyed lookups and updates.

SQLAlchemy's per-value processing and its rendering of large ``IN`` lists cost milliseconds per thousand
values; the hot paths of sending (mark a batch ``submitting``, settle it) and of reading a campaign go
to the driver directly with plain SQL that SQLite and PostgreSQL both understand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

MESSAGE_COLUMNS = (
    "message_key",
    "msisdn",
    "content_hash",
    "content_report",
    "encoding",
    "segments",
    "batch_id",
    "queue_id",
    "message_id",
    "state",
    "reason",
    "attempts",
    "response_status",
    "response_body",
    "created_at",
    "updated_at",
    "submitted_at",
    "delivery_status",
    "delivery_level1_status",
    "delivered_at",
    "done_at",
    "error_code",
    "part_ids",
)
EVENT_COLUMNS = (
    "message_key",
    "message_id",
    "source",
    "level",
    "status",
    "err",
    "done_at",
    "received_at",
    "raw",
)
TIME_COLUMNS = frozenset({"created_at", "updated_at", "submitted_at", "delivered_at", "done_at", "received_at"})
INT_COLUMNS = frozenset({"segments", "attempts", "response_status", "level"})


def fetch_rows(conn: sa.Connection, stmt: sa.Select) -> list[tuple[Any, ...]]:
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
    frame = pd.DataFrame.from_records(fetch_rows(conn, stmt), columns=names, coerce_float=False)
    for name in names:
        if name in TIME_COLUMNS:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
        elif name in INT_COLUMNS:
            frame[name] = frame[name].astype("Int64")
        elif name == "raw":
            frame[name] = pd.Series(
                [v if isinstance(v, dict) else json.loads(v) if v else {} for v in frame[name]],
                index=frame.index,
                dtype=object,
            )
    return frame


CHUNK = 5000  # values per IN list (SQLite allows 32,766 host parameters per statement)
MESSAGES = "plasgate_messages"


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Yield ``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sql(conn: sa.Connection, text: str) -> str:
    """``text`` written with ``?`` markers, in the driver's paramstyle (``%s`` for psycopg)."""
    return text.replace("?", "%s") if conn.dialect.name == "postgresql" else text


def _in_list(conn: sa.Connection, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """An ``IN`` condition on ``column`` and its parameters (one array parameter on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY(?)", [list(values)]
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


def rows_by_key(conn: sa.Connection, cid: int, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Map each existing message key of campaign ``cid`` among ``keys`` to (row id, state).

    Looks keys up through the unique (campaign, key) index: a few milliseconds per thousand keys.
    """
    out: dict[str, tuple[int, str]] = {}
    for part in _chunks(keys):
        cond, params = _in_list(conn, "message_key", part)
        sql = _sql(conn, f"SELECT message_key, id, state FROM {MESSAGES} WHERE campaign_id = ? AND {cond}")
        for key, rid, state in conn.exec_driver_sql(sql, (cid, *params)).cursor.fetchall():
            out[key] = (rid, state)
    return out


def update_rows(
    conn: sa.Connection, ids: Sequence[int], assignments: str, params: Sequence[Any], *, states: Sequence[str] = ()
) -> int:
    """Run ``UPDATE messages SET <assignments> WHERE id IN ids [AND state IN states]``; return rows changed.

    ``assignments`` uses ``?`` markers for ``params`` (values already in driver form, see
    :func:`bind_value`). Rows are addressed by primary key, so the update never scans a campaign.
    """
    done = 0
    for part in _chunks(sorted(ids)):
        cond, id_params = _in_list(conn, "id", part)
        where = [cond]
        extra: list[Any] = []
        if states:
            state_cond, extra = _in_list(conn, "state", list(states))
            where.append(state_cond)
        sql = _sql(conn, f"UPDATE {MESSAGES} SET {assignments} WHERE {' AND '.join(where)}")
        done += conn.exec_driver_sql(sql, (*params, *id_params, *extra)).rowcount
    return done


def bind_value(conn: sa.Connection, column: sa.Column[Any], value: Any) -> Any:
    """``value`` as the driver wants it for ``column`` (to prepare a constant once for a bulk insert)."""
    process = column.type._cached_bind_processor(conn.dialect)
    return process(value) if process is not None else value


def bulk_insert(conn: sa.Connection, table: sa.Table, names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples ordered as ``names``, values in driver form) with one driver-level executemany."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":  # COPY is several times faster than INSERT for big plans
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    columns = ", ".join(names)
    markers = ", ".join("?" * len(names))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) VALUES ({markers})", list(rows))
