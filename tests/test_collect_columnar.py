"""The columnar read of the ledger (``Ledger.read_arrow``) and ``collect`` on it: one frame, whatever the backend.

SQLite is read through ``group_concat`` byte strings, PostgreSQL through ``COPY ... TO STDOUT`` parsed
by Arrow: both must give the same types, the same NULLs (apart from empty texts), the same instants.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from plasgate_nb.errors import AudienceError, LedgerError
from plasgate_nb.ledger import Ledger
from plasgate_nb.ledger._schema import messages
from plasgate_nb.report import COLLECT_COLUMNS, collect
from tests.test_ledger import fresh_pg_schema, url  # noqa: F401

NAME = "columnar"
COLUMNS = ["state", "message_id", "delivery_status", "delivered_at", "error_code", "segments", "attempts", "reason"]
COLUMNS += ["submitted_at", "done_at", "response_status", "content_report", "msisdn"]
ODD_TEXTS = ["", "NULL", "NA", 'a "quoted", text', "two\nlines", "ខ្មែរ ☹", "\\N", " padded "]
SUBMITTED = datetime(2026, 1, 5, 2, 0, 0, 500000, tzinfo=UTC)
DONE = datetime(2026, 1, 5, 2, 0, 7, 123456, tzinfo=UTC)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (skipped without a server)."""
    yield from fresh_pg_schema()


def audience(n: int) -> pd.DataFrame:
    """``n`` customers keyed by ``id`` (the last one skipped by the audience stage, never planned)."""
    return pd.DataFrame(
        {
            "id": [f"cust-{i}" for i in range(n)],
            "msisdn": [f"85512{i:07d}" for i in range(n)],
            "content": [f"Hello {i}" for i in range(n)],
            "audience_status": ["ok"] * (n - 1) + ["invalid"],
            "audience_reason": [None] * (n - 1) + ["not a mobile number"],
        }
    )


def fill(ledger: Ledger, df: pd.DataFrame) -> None:
    """Plan all but the last row and move them through every state, with odd texts and exact times."""
    rows = df.iloc[:-1]
    plan = pd.DataFrame({"message_key": rows["id"], "msisdn": rows["msisdn"], "content": rows["content"]})
    ledger.plan(NAME, plan.assign(segments=[1 + i % 3 for i in range(len(rows))]))
    keys = rows["id"].tolist()
    ledger.mark_submitting(NAME, keys[:8], batch_id="b1")
    ids = {k: f"gw-{i}" for i, k in enumerate(keys[:5])}
    ledger.settle(NAME, keys[:5], state="accepted", message_ids=ids, status=200)
    ledger.settle(NAME, [keys[5]], state="rejected", status=400, reason='HTTP 400: bad\nnumber, "really"')
    ledger.settle(NAME, [keys[6]], state="uncertain", reason="read timeout")  # keys[7] stays submitting
    ledger.record_events(
        [
            {"source": "dlr", "message_id": "gw-0", "level": 2, "status": "DELIVRD", "done_at": DONE, "raw": {}},
            {"source": "dlr", "message_id": "gw-1", "level": 2, "status": "UNDELIV", "err": "001", "raw": {}},
        ]
    )
    with ledger._ready().begin() as conn:  # texts only a hand (or an older version) could have stored
        conn.execute(  # one submission time on both backends (the wall clock moves between them)
            messages.update().where(messages.c.submitted_at.is_not(None)).values(submitted_at=SUBMITTED)
        )
        for i, text in enumerate(ODD_TEXTS):
            conn.execute(
                sa.text("UPDATE plasgate_messages SET content_report = :t WHERE message_key = :k"),
                {"t": text, "k": keys[8 + i]},
            )


@pytest.mark.parametrize("pieces", [False, True])
def test_read_arrow_types_nulls_texts_and_times(url: str, pieces: bool, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import plasgate_nb.ledger._columns as columns

    if pieces:  # SQLite reads and decodes the id range in pieces on reader threads
        monkeypatch.setattr(columns, "PARALLEL_ROWS", 2)
    df = audience(20)
    with Ledger(url) as ledger:
        fill(ledger, df)
        table = ledger.read_arrow(NAME, COLUMNS)
        frame = ledger.read_columns(NAME, COLUMNS)
        general = ledger.messages(NAME, columns=COLUMNS)
        planned = ledger.read_arrow(NAME, ["msisdn"], state="planned")
    assert table.schema.field("message_key").type == pa.string()
    assert table.schema.field("delivered_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("segments").type == pa.int64() and table.schema.field("reason").type == pa.string()
    assert table.column("message_key").to_pylist() == df["id"].iloc[:-1].tolist()
    assert table.column("delivered_at").to_pylist()[0] == DONE and table.column("delivered_at").null_count == 18
    assert table.column("content_report").to_pylist()[8:16] == ODD_TEXTS  # "" stays "", "NULL" stays a text
    assert table.column("error_code").to_pylist()[:3] == [None, "001", None]
    assert table.column("response_status").to_pylist()[:6] == [200] * 5 + [400]
    assert table.column("response_status").null_count == 13
    assert str(frame["state"].dtype) == "string" and frame["state"].dtype.storage == "pyarrow"
    assert str(frame["segments"].dtype) == "Int64" and str(frame["done_at"].dtype) == "datetime64[us, UTC]"
    for column in COLUMNS:  # the same values as the general reader
        left, right = frame[column], general[column]
        assert (
            left.astype(object).where(left.notna(), None).tolist()
            == right.astype(object).where(right.notna(), None).tolist()
        ), column
    assert planned.column("message_key").to_pylist() == df["id"].iloc[8:-1].tolist()


def test_both_backends_collect_exactly_the_same_frame(tmp_path: Path, pg_url: str) -> None:
    df = audience(20)
    frames = []
    for where in (str(tmp_path / "ledger.db"), pg_url):
        with Ledger(where) as ledger:
            fill(ledger, df)
            frames.append(collect(df, (ledger, NAME), key="id", price_per_segment=0.25))
    sqlite, postgres = frames
    pd.testing.assert_frame_equal(sqlite, postgres)
    assert sqlite["send_state"].tolist()[:9] == ["accepted"] * 5 + ["rejected", "uncertain", "submitting", "planned"]
    assert sqlite["send_state"].iloc[-1] == "not_sent" and sqlite["reason"].iloc[-1].startswith("skipped by audience")
    assert sqlite["delivered_at"].iloc[0] == pd.Timestamp(DONE) and sqlite["submitted_at"].notna().sum() == 8
    assert sqlite["cost"].tolist()[:6] == [0.25, 0.5, 0.75, 0.25, 0.5, 0.0]
    assert {str(sqlite[c].dtype) for c in ("send_state", "message_id", "reason")} == {"string"}


def test_empty_and_unknown_campaigns_read_empty_typed_tables(url: str) -> None:  # noqa: F811
    df = audience(3)
    with Ledger(url) as ledger:
        ledger.open_campaign("empty")
        empty = ledger.read_arrow("empty", COLUMNS)
        unknown = ledger.read_arrow("never", COLUMNS)
        none_planned = ledger.read_arrow("empty", ["msisdn"], state="planned")
        out = collect(df, (ledger, "empty"), key="id")
        assert ledger.read_columns("never", COLUMNS).empty
        with pytest.raises(LedgerError, match="unknown message columns"):
            ledger.read_arrow("empty", ["nope"])
        with pytest.raises(LedgerError, match="unknown message state"):
            ledger.read_arrow("empty", ["msisdn"], state="sent")
    assert empty.num_rows == unknown.num_rows == none_planned.num_rows == 0
    assert empty.schema == unknown.schema and empty.schema.field("done_at").type == pa.timestamp("us", tz="UTC")
    assert (out["send_state"] == "not_sent").all() and list(out.columns[-len(COLLECT_COLUMNS) :]) == list(
        COLLECT_COLUMNS
    )
    assert str(out["segments"].dtype) == "Int64" and out["delivered_at"].isna().all()


def test_keys_in_other_spellings_and_dtypes_join_as_when_sending(tmp_path: Path) -> None:
    df = pd.DataFrame({"msisdn": ["85512000001", "85512000002", "85512000003"], "content": ["a", "b", "c"]})
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.plan(NAME, df.assign(message_key=["101", "102", "103"]))
        as_ints = collect(df.assign(id=[101, 102, 103]), (ledger, NAME), key="id")
        as_floats = collect(df.assign(id=["101.0", " 102 ", "103"]), (ledger, NAME), key="id")
        on_index = collect(df.set_axis(pd.Index([101, 102, 103])), (ledger, NAME))
        with pytest.raises(AudienceError, match="duplicate"):
            collect(df.assign(id=["101", "101.0", "103"]), (ledger, NAME), key="id")
        with pytest.raises(AudienceError, match="duplicate"):
            collect(df.assign(id=["x-1", "x-1", "x-2"]), (ledger, NAME), key="id")
        with pytest.raises(AudienceError, match="not found"):
            collect(df, (ledger, NAME), key="nope")
        planned = df.assign(id=["101", "102", "103"], audience_status="ok")
        for extra in (["101"], ["x-9", "x-9"]):  # rows never planned repeat a planned key, or each other
            skipped = pd.DataFrame({"id": extra, "msisdn": "85512", "content": "d", "audience_status": "invalid"})
            with pytest.raises(AudienceError, match="duplicate"):
                collect(pd.concat([planned, skipped], ignore_index=True), (ledger, NAME), key="id")
        shuffled = collect(planned.iloc[::-1], (ledger, NAME), key="id")  # not in plan order: hashed
    assert shuffled["send_state"].tolist() == ["planned"] * 3
    for out in (as_ints, as_floats, on_index):
        assert out["send_state"].tolist() == ["planned"] * 3 and out["reason"].isna().all()


@pytest.mark.parametrize(
    "bad",
    [
        "2026-01-05 02:00:07/123456",  # a wrong separator
        "2026-01-05 02:00:0:.123456",  # ':' just above '9' in a digit's place
        "2026-01-05 02:00:0/.123456",  # '/' just below '0'
        "2026-02-30 02:00:07.123456",  # well formed, no such day
        "2026-01-05 02:00:07.12345",  # one character short
    ],
)
def test_the_sqlite_time_decoder_refuses_what_it_cannot_parse_exactly(bad: str) -> None:
    """A stamp the fixed-width decoder cannot read exactly makes it give up (the general reader then reads)."""
    from plasgate_nb.ledger._columns import _NO_TIME, _times

    good = "2026-01-05 02:00:07.123456"
    parsed = _times((good + _NO_TIME).encode(), 2)
    assert parsed is not None and parsed.to_pylist() == [DONE, None]
    assert _times((good + bad + good).encode(), 3) is None
