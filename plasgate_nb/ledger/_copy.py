"""Read message columns of a large campaign fast from PostgreSQL: ``COPY ... TO STDOUT`` parsed by Arrow.

The server writes the rows as CSV (``COPY (SELECT ...) TO STDOUT``: no per-row protocol messages, no
Python object per value), psycopg hands over the bytes, and Arrow's CSV reader (in C++, on several
threads) builds the columns with their types given up front. In PostgreSQL's CSV a NULL is an unquoted
empty field and an empty text a quoted one, so the two stay apart; no other spelling means NULL (a text
``NULL`` or ``NA`` stays a text). Times are written in UTC and ISO style whatever the server's defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from ._arrow import schema

MESSAGES = "plasgate_messages"


def read(conn: sa.Connection, cid: int, names: Sequence[str], *, state: str | None = None) -> pa.Table:
    """``names`` of campaign ``cid``'s messages (those in ``state`` when given) in id order, as a table."""
    wanted = schema(names)
    where, params = "campaign_id = %s", [int(cid)]
    if state is not None:
        where, params = where + " AND state = %s", [*params, state]
    select = f"SELECT {', '.join(names)} FROM {MESSAGES} WHERE {where} ORDER BY id"
    data = bytearray()
    with conn.connection.driver_connection.cursor() as cursor:
        cursor.execute("SET LOCAL TimeZone = 'UTC'")  # this read transaction only
        cursor.execute("SET LOCAL DateStyle = 'ISO'")
        with cursor.copy(f"COPY ({select}) TO STDOUT (FORMAT csv)", params) as copy:
            for block in copy:
                data += block
    if not data:
        return wanted.empty_table()
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pacsv.ReadOptions(column_names=list(names)),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=wanted,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
