"""Tests of the ledger, the same suite over SQLite (a temp file) and PostgreSQL (a schema per test)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from plasgate_nb._masking import content_digest
from plasgate_nb.errors import LedgerError
from plasgate_nb.ledger import INTERRUPTED, SCHEMA_VERSION, Ledger, PlanResult

PG_URL = os.environ.get("PLASGATE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_problem() -> str | None:
    """Why the PostgreSQL half cannot run, or None when a server answers."""
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:  # any failure means: no usable server here
        return f"no PostgreSQL at PLASGATE_TEST_DATABASE_URL ({type(exc).__name__})"
    return None


_PG_PROBLEM = _pg_problem()


def fresh_pg_schema() -> Iterator[str]:
    """Yield the URL of a fresh PostgreSQL schema, dropped afterwards (the test skips without a server)."""
    if _PG_PROBLEM:
        pytest.skip(_PG_PROBLEM)
    schema = f"plasgate_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    base = sa.make_url(PG_URL)
    yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger location: an SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.db")
        return
    yield from fresh_pg_schema()


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    """A ledger over ``url``, closed after the test."""
    with Ledger(url) as led:
        yield led


def frame(n: int, *, start: int = 0, text: str = "Hello {i}, code #ma#{i:06d}#ma#") -> pd.DataFrame:
    """Rows to plan: keys k00000.., numbers 8551200000.., content with a masked code."""
    ids = range(start, start + n)
    return pd.DataFrame(
        {
            "message_key": [f"k{i:05d}" for i in ids],
            "msisdn": [f"85512{i:07d}" for i in ids],
            "content": [text.format(i=i) for i in ids],
            "content_report": [text.format(i=i).split("#ma#")[0] + "******" for i in ids],
            "encoding": ["GSM-7"] * n,
            "segments": [1] * n,
        }
    )


def row(led: Ledger, campaign: str, key: str) -> pd.Series:
    """The current ledger row of ``key``."""
    m = led.messages(campaign)
    return m.set_index("message_key").loc[key]


def dlr(mid: str, level: int, status: str, **extra: object) -> dict[str, object]:
    """A DLR event as the callback receiver builds it."""
    return {
        "source": "dlr",
        "message_id": mid,
        "level": level,
        "status": status,
        "raw": {"id": mid, "level": str(level), "message_status": status},
        **extra,
    }


def sent(led: Ledger, campaign: str, keys: list[str], *, ids: dict[str, str] | None = None) -> None:
    """Mark ``keys`` submitting and settle them accepted (with gateway ids when given)."""
    led.mark_submitting(campaign, keys, batch_id="b1")
    led.settle(campaign, keys, state="accepted", queue_id="q1", message_ids=ids, status=200, body='{"queue_id": "q1"}')


# -- planning ----------------------------------------------------------------------------------------


def test_plan_is_idempotent(ledger: Ledger) -> None:
    df = frame(3)
    before = df.copy()
    first = ledger.plan("c", df)
    again = ledger.plan("c", df)
    more = ledger.plan("c", frame(4))
    assert (first.added, first.kept, first.changed) == (3, 0, ())
    assert (again.added, again.kept, again.changed) == (0, 3, ())
    assert (more.added, more.kept) == (1, 3)
    pd.testing.assert_frame_equal(df, before)
    assert ledger.pending("c")["message_key"].tolist() == ["k00000", "k00001", "k00002", "k00003"]
    assert ledger.summary("c") == {
        "planned": 4,
        "submitting": 0,
        "accepted": 0,
        "rejected": 0,
        "uncertain": 0,
        "holdout": 0,
        "suppressed": 0,
        "capped": 0,
        "total": 4,
    }


def test_changed_rows_are_reported_once_sent_and_replanned_before(ledger: Ledger) -> None:
    ledger.plan("c", frame(3))
    sent(ledger, "c", ["k00000"])
    hashes = ledger.messages("c")["content_hash"].tolist()
    edited = frame(3)
    edited.loc[0, "content"] = "Different text"  # already sent: reported, kept as it was
    edited.loc[1, "msisdn"] = "85599999999"  # never sent: replanned with the new number
    edited.loc[2, "content"] = "A fixed typo"  # never sent: replanned with the new text
    result = ledger.plan("c", edited)
    assert result.changed == ("k00000",)
    assert result.replanned == ("k00001", "k00002")
    assert (result.added, result.kept) == (0, 0)
    after = ledger.messages("c")
    assert after["content_hash"].tolist()[:2] == hashes[:2]
    assert after["content_hash"].tolist()[2] == content_digest("A fixed typo") != hashes[2]
    assert after["msisdn"].tolist() == ["85512" + "0000000", "85599999999", "85512" + "0000002"]
    assert after["state"].tolist() == ["accepted", "planned", "planned"]
    assert ledger.plan("c", edited) == PlanResult("c", added=0, kept=2, changed=("k00000",))


def test_digest_of_masked_text_tells_nothing_of_the_masked_values(ledger: Ledger) -> None:
    texts = ["Your code is #ma#481516#ma#, hi #ma#Dara#ma#", "Your code is #ma#000000#ma#, hi #ma#Sok#ma#"]
    assert content_digest(texts[0]) == content_digest(texts[1])
    assert content_digest(texts[0]) == hashlib.sha256(b"Your code is ******, hi ******").hexdigest()
    assert content_digest("plain text") == hashlib.sha256(b"plain text").hexdigest()
    df = pd.DataFrame({"message_key": ["a", "b"], "msisdn": ["85512000001", "85512000002"], "content": texts})
    ledger.plan("c", df)
    stored = ledger.messages("c")
    for text, digest in zip(texts, stored["content_hash"], strict=True):
        assert digest != hashlib.sha256(text.encode()).hexdigest()
        assert digest == content_digest(text)
    again = ledger.plan("c", df.assign(content=texts[::-1]))  # another OTP: same report view, nothing replanned
    assert (again.kept, again.replanned) == (2, ())


def test_plan_refuses_bad_rows(ledger: Ledger) -> None:
    df = frame(3)
    df.loc[2, "message_key"] = "k00000"
    with pytest.raises(LedgerError, match="k00000"):
        ledger.plan("c", df)
    with pytest.raises(LedgerError, match="content"):
        ledger.plan("c", frame(2).drop(columns="content"))
    assert ledger.summary("c")["total"] == 0


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("content", "Hello\x00there", "U+0000"),
        ("content", "bell\x07", "U+0007"),
        ("content", "next line\x85", "U+0085"),
        ("content_report", "Hello\x00******", "U+0000"),
        ("msisdn", "85512000001\x00", "U+0000"),
        ("message_key", "k\x00", "U+0000"),
        ("message_key", "unit\x1fseparator", "U+001F"),
    ],
)
def test_control_characters_are_refused_naming_the_row_before_anything_is_planned(
    ledger: Ledger, column: str, value: str, shown: str
) -> None:
    """NUL broke PostgreSQL with a raw DataError (and SQLite stored it); now a LedgerError names the row."""
    df = frame(3)
    df.loc[1, column] = value
    with pytest.raises(LedgerError, match=rf"control characters in rows .*{re.escape(shown)}") as info:
        ledger.plan("c", df)
    assert ("k00001" in str(info.value)) or column == "message_key"
    assert "DataError" not in str(info.value)
    assert ledger.summary("c")["total"] == 0
    assert ledger.campaign_token("c") is None  # nothing written, not even the campaign


def test_tab_newline_and_form_feed_are_message_content(ledger: Ledger) -> None:
    df = frame(2)
    df["content"] = ["Line one\nline two\r\n\tindented", "page\fbreak"]
    df["content_report"] = df["content"]
    assert ledger.plan("c", df).added == 2
    stored = ledger.messages("c")
    assert stored["content_report"].tolist() == df["content"].tolist()
    assert stored["content_hash"].tolist() == [content_digest(t) for t in df["content"]]


def test_keys_are_canonical_whatever_their_dtype(ledger: Ledger) -> None:
    ints = frame(3).assign(message_key=[101, 102, 103])
    assert ledger.plan("c", ints).added == 3
    for keys in ([101.0, 102.0, 103.0], ["101", " 102", "103.0"], pd.array([101, 102, 103], dtype="Int64")):
        again = ledger.plan("c", ints.assign(message_key=keys))
        assert (again.added, again.kept) == (0, 3)
    assert ledger.messages("c")["message_key"].tolist() == ["101", "102", "103"]
    assert ledger.mark_submitting("c", [101.0, "102"], batch_id="b") == 2
    assert ledger.settle("c", [" 101 ", 102], state="uncertain") == 2
    assert ledger.requeue_uncertain("c", [101.0]) == 1
    assert ledger.summary("c")["planned"] == 2
    with pytest.raises(LedgerError, match="duplicate message keys"):
        ledger.plan("c", frame(2).assign(message_key=[7, "7.0"]))


def test_plan_reports_repeats_of_number_and_text_under_other_keys(ledger: Ledger) -> None:
    ledger.plan("c", frame(4))
    sent(ledger, "c", ["k00000"])
    ledger.mark_submitting("c", ["k00001"], batch_id="in-flight")
    rekeyed = frame(4).assign(message_key=["x0", "x1", "x2", "x3"])
    twin = frame(1, start=2).assign(message_key="x2-twin")  # repeats x2 within the same rows
    rows = pd.concat([rekeyed, twin], ignore_index=True)
    preview = ledger.plan("c", rows, dry_run=True)
    assert preview.same_as == {"x0": "k00000", "x1": "k00001", "x2-twin": "x2"}
    assert (preview.added, ledger.summary("c")["total"]) == (5, 4)  # a dry run writes nothing
    result = ledger.plan("c", rows)
    assert result == preview
    reasons = ledger.messages("c").set_index("message_key")["reason"]
    assert "same number and text as message 'k00000'" in reasons["x0"]
    assert reasons.isna()[["x2", "x3", "k00002"]].all()  # k00002 is planned, not sent: x2 is not its repeat
    assert ledger.plan("c", rows).same_as == result.same_as  # idempotent
    allowed = ledger.plan("c", rows, allow_repeat=True)
    assert allowed.same_as == {}
    assert ledger.messages("c").set_index("message_key")["reason"][["x0", "x1", "x2-twin"]].isna().all()
    other = ledger.plan("c", frame(1).assign(content="Another text", message_key="x9"))
    assert other.same_as == {}  # the same number with another text is not a repeat


def test_plan_in_parts_reports_the_repeats_one_plan_of_all_rows_reports(ledger: Ledger) -> None:
    ledger.plan("c", frame(4))
    sent(ledger, "c", ["k00000"])
    rows = pd.concat(
        [frame(4).assign(message_key=["x0", "x1", "x2", "x3"]), frame(2, start=1).assign(message_key=["y1", "y2"])],
        ignore_index=True,
    )
    whole = ledger.plan("c", rows, dry_run=True)
    assert whole.same_as == {"x0": "k00000", "y1": "x1", "y2": "x2"}
    first = ledger.plan("c", rows.iloc[:4], earlier={})
    assert first.same_as == {"x0": "k00000"}
    digest = {k: d for k, d in ledger.messages("c", columns=["content_hash"]).itertuples(index=False)}
    earlier = {(m, digest[k]): k for k, m in zip(rows["message_key"][1:4], rows["msisdn"][1:4], strict=True)}
    second = ledger.plan("c", rows.iloc[4:], earlier=earlier)
    assert second.same_as == {"y1": "x1", "y2": "x2"}
    assert (first.added + second.added, ledger.summary("c")["total"]) == (6, 10)
    reasons = ledger.messages("c").set_index("message_key")["reason"]
    assert "same number and text as message 'x1'" in reasons["y1"]
    assert reasons.isna()[["x1", "x2", "k00001"]].all()  # the first part's rows keep their verdict


def test_a_plan_written_in_chunks_stores_what_one_chunk_would(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    from plasgate_nb.ledger import _rows

    rows = frame(10)
    rows.loc[7, ["msisdn", "content"]] = rows.loc[2, ["msisdn", "content"]].to_numpy()  # k00007 repeats k00002
    rows.loc[3, "content_report"] = None
    rows["msisdn"] = rows["msisdn"].astype("str")  # pyarrow strings, as Campaign hands them over
    ledger.plan("whole", rows)
    monkeypatch.setattr(_rows, "PLAN_CHUNK", 3)
    result = ledger.plan("chunked", rows)
    assert (result.added, result.same_as) == (10, {"k00007": "k00002"})
    columns = ["msisdn", "content_hash", "content_report", "encoding", "segments", "reason", "state"]
    whole, chunked = ledger.messages("whole", columns=columns), ledger.messages("chunked", columns=columns)
    pd.testing.assert_frame_equal(chunked, whole)
    assert chunked["content_hash"].tolist() == [content_digest(t) for t in rows["content"]]
    changed = rows.assign(content=[f"New text {i}" for i in range(10)])
    again = ledger.plan("chunked", changed)
    assert again.replanned == tuple(rows["message_key"]) and again.same_as == {}
    stored = ledger.messages("chunked", columns=["content_hash", "reason"])
    assert stored["content_hash"].tolist() == [content_digest(t) for t in changed["content"]]
    assert stored["reason"].isna().all()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plans compared with the stored rows two rows at a time, two keys (or numbers) per statement."""
    from plasgate_nb.ledger import _frames, _rows

    monkeypatch.setattr(_rows, "PLAN_CHUNK", 2)
    monkeypatch.setattr(_frames, "CHUNK", 2)


@pytest.mark.usefixtures("small_chunks")
def test_repeats_are_found_the_same_a_few_rows_at_a_time(ledger: Ledger) -> None:
    test_plan_reports_repeats_of_number_and_text_under_other_keys(ledger)


@pytest.mark.usefixtures("small_chunks")
def test_changes_are_found_the_same_a_few_rows_at_a_time(ledger: Ledger) -> None:
    test_changed_rows_are_reported_once_sent_and_replanned_before(ledger)


def test_unmasked_content_is_never_stored(ledger: Ledger, url: str) -> None:
    ledger.plan("c", frame(5, text="Your code is #ma#ZQ{i}-X7#ma#"))
    stored = ledger.messages("c")
    assert stored["content_report"].str.endswith("******").all()
    dump = _dump(url)
    assert "Your code is ******" in dump
    assert not [f"ZQ{i}-X7" for i in range(5) if f"ZQ{i}-X7" in dump]
    texts = [f"Your code is #ma#ZQ{i}-X7#ma#" for i in range(5)]
    assert not [t for t in texts if hashlib.sha256(t.encode()).hexdigest() in dump]  # no digest to try OTPs against


def _dump(url: str) -> str:
    """Every value of every ledger table as one text."""
    engine = sa.create_engine(url if "://" in url else f"sqlite:///{url}")
    parts = []
    with engine.connect() as conn:
        for table in ("plasgate_campaigns", "plasgate_messages", "plasgate_events", "plasgate_meta"):
            for values in conn.exec_driver_sql(f"SELECT * FROM {table}"):
                parts.extend(str(v) for v in values)
    engine.dispose()
    return "\n".join(parts)


# -- sending states -----------------------------------------------------------------------------------


def test_state_machine(ledger: Ledger) -> None:
    ledger.plan("c", frame(4))
    assert ledger.mark_submitting("c", ["k00000", "k00001"], batch_id="b1") == 2
    with pytest.raises(LedgerError, match=r"k00001 \(submitting\)"):
        ledger.mark_submitting("c", ["k00001", "k00002"], batch_id="b2")
    assert row(ledger, "c", "k00002")["state"] == "planned"  # the refused call changed nothing
    with pytest.raises(LedgerError, match="k00003"):
        ledger.settle("c", ["k00003"], state="accepted")
    ledger.settle(
        "c", ["k00000"], state="accepted", queue_id="q9", message_ids={"k00000": "m0"}, status=200, body="x" * 10_000
    )
    ledger.settle("c", ["k00001"], state="planned", status=429, reason="rate limited", part_ids={"k00009": ["x"]})
    r0, r1 = row(ledger, "c", "k00000"), row(ledger, "c", "k00001")
    assert r0["part_ids"] is None and r1["part_ids"] is None  # unknown keys' parts are ignored
    assert (r0["state"], r0["queue_id"], r0["message_id"], r0["response_status"]) == ("accepted", "q9", "m0", 200)
    assert len(r0["response_body"]) == 4000 and r0["attempts"] == 1 and r0["batch_id"] == "b1"
    assert r0["submitted_at"] <= r0["updated_at"]
    assert (r1["state"], r1["reason"], r1["response_status"]) == ("planned", "rate limited", 429)
    ledger.mark_submitting("c", ["k00001"], batch_id="b3")
    assert row(ledger, "c", "k00001")["attempts"] == 2
    with pytest.raises(LedgerError, match="cannot settle"):
        ledger.settle("c", ["k00001"], state="delivered")
    ledger.settle("c", ["k00001"], state="rejected", status=400, body='{"message": "bad"}')
    assert ledger.pending("c")["message_key"].tolist() == ["k00002", "k00003"]
    ledger.mark_submitting("c", ["k00002"], batch_id="b4")
    ledger.settle("c", ["k00002"], state="accepted", message_ids={"k00002": "p2"}, part_ids={"k00002": ["p1", "p2"]})
    assert (row(ledger, "c", "k00002")["message_id"], row(ledger, "c", "k00002")["part_ids"]) == ("p2", "p1,p2")
    assert ledger.summary("c")["rejected"] == 1


def test_resume_turns_interrupted_rows_uncertain(url: str) -> None:
    with Ledger(url) as first:
        first.plan("c", frame(3))
        first.mark_submitting("c", ["k00000", "k00001"], batch_id="b1")
    with Ledger(url) as second:  # a new process after a crash
        assert second.resume("c") == 2
        assert second.resume("c") == 0
        uncertain = second.messages("c").query("state == 'uncertain'")
        assert uncertain["message_key"].tolist() == ["k00000", "k00001"]
        assert set(uncertain["reason"]) == {INTERRUPTED}
        assert second.pending("c")["message_key"].tolist() == ["k00002"]
        assert second.requeue_uncertain("c", ["k00001"]) == 1
        assert second.pending("c")["message_key"].tolist() == ["k00001", "k00002"]
        assert second.requeue_uncertain("c") == 1
        assert second.summary("c")["planned"] == 3


# -- delivery events ----------------------------------------------------------------------------------


def test_duplicates_and_late_events_never_overwrite_a_final_status(ledger: Ledger) -> None:
    ledger.plan("c", frame(2))
    sent(ledger, "c", ["k00000", "k00001"], ids={"k00000": "m0", "k00001": "m1"})
    done = pd.Timestamp("2026-11-25 02:34", tz="UTC").to_pydatetime()
    assert (
        ledger.record_events(
            [dlr("m0", 2, "DELIVRD", err="000", done_at=done), dlr("m0", 2, "DELIVRD", err="000", done_at=done)]
        )
        == 1
    )
    assert ledger.record_events([dlr("m0", 2, "DELIVRD", err="000")]) == 0
    assert (
        ledger.record_events([dlr("m0", 2, "ENROUTE"), dlr("m0", 1, "ESME_ROK"), dlr("m0", 2, "UNDELIV", err="001")])
        == 3
    )
    ledger.record_events([dlr("m1", 2, "ACCEPTD"), dlr("m1", 2, "ENROUTE")])
    r0, r1 = row(ledger, "c", "k00000"), row(ledger, "c", "k00001")
    assert (r0["delivery_status"], r0["delivery_level1_status"]) == ("DELIVRD", "ESME_ROK")
    # a whole-minute done date received much later: delivered by the end of that minute
    assert r0["delivered_at"] == pd.Timestamp(done) + pd.Timedelta(minutes=1) and pd.isna(r0["error_code"])
    assert r1["delivery_status"] == "ENROUTE" and pd.isna(r1["delivery_level1_status"])
    ledger.record_events([dlr("m1", 2, "UNDELIV", err="001"), dlr("m1", 2, "ACCEPTD")])
    r1 = row(ledger, "c", "k00001")
    assert (r1["delivery_status"], r1["error_code"]) == ("UNDELIV", "001") and pd.isna(r1["delivered_at"])
    ev = ledger.events("c")
    assert len(ev) == 7 and set(ev["message_key"]) == {"k00000", "k00001"}


def test_level1_error_without_handset_report(ledger: Ledger) -> None:
    ledger.plan("c", frame(1))
    sent(ledger, "c", ["k00000"], ids={"k00000": "m0"})
    ledger.record_events([dlr("m0", 1, "ESME_RINVDSTADR")])
    r = row(ledger, "c", "k00000")
    assert (r["delivery_level1_status"], r["error_code"]) == ("ESME_RINVDSTADR", "ESME_RINVDSTADR")
    assert pd.isna(r["delivery_status"])


def test_early_report_is_kept_and_applied_when_paired(ledger: Ledger) -> None:
    ledger.plan("c", frame(2))
    ledger.mark_submitting("c", ["k00000", "k00001"], batch_id="b1")
    assert ledger.record_events([dlr("m1", 1, "ESME_ROK"), dlr("m1", 2, "DELIVRD", err="000")]) == 2
    assert ledger.events("c").empty  # not yet tied to the campaign
    assert row(ledger, "c", "k00001")["state"] == "submitting"
    ledger.settle("c", ["k00000", "k00001"], state="accepted", message_ids={"k00000": "m0", "k00001": "m1"})
    r1 = row(ledger, "c", "k00001")
    assert (r1["state"], r1["delivery_status"], r1["delivery_level1_status"]) == ("accepted", "DELIVRD", "ESME_ROK")
    assert ledger.events("c")["message_key"].tolist() == ["k00001", "k00001"]


def test_report_carrying_its_key_pairs_and_settles_an_uncertain_row(ledger: Ledger) -> None:
    ledger.plan("c", frame(2))
    ledger.mark_submitting("c", ["k00000", "k00001"], batch_id="b1")
    ledger.settle("c", ["k00000", "k00001"], state="uncertain", reason="read timeout")
    ledger.record_events([dlr("m0", 2, "DELIVRD", campaign="c", message_key="k00000")])
    r0, r1 = row(ledger, "c", "k00000"), row(ledger, "c", "k00001")
    assert (r0["state"], r0["message_id"], r0["delivery_status"]) == ("accepted", "m0", "DELIVRD")
    assert pd.isna(r0["reason"])
    assert (r1["state"], r1["reason"]) == ("uncertain", "read timeout")


def test_batch_callbacks_pair_ids_and_settle_uncertain_rows(ledger: Ledger) -> None:
    ledger.plan("c", frame(3))
    ledger.mark_submitting("c", ["k00000", "k00001", "k00002"], batch_id="b1")
    assert ledger.resume("c") == 3  # crashed before the response: queue id unknown
    ledger.record_events([dlr("gw-1", 2, "DELIVRD")])  # the DLR beats the batch callback
    events = [
        {
            "source": "batch",
            "campaign": "c",
            "batch_id": "Q-77",
            "msisdn": "855120000001",
            "message_id": "gw-1",
            "ok": True,
            "raw": {"batchId": "Q-77", "to": "855120000001", "status": "1"},
        },
        {
            "source": "batch",
            "campaign": "c",
            "batch_id": "Q-77",
            "msisdn": "855120000000",
            "message_id": "gw-0",
            "ok": True,
            "raw": {"batchId": "Q-77", "to": "855120000000", "status": "1"},
        },
        {
            "source": "errback",
            "campaign": "c",
            "batch_id": "Q-77",
            "msisdn": "855120000002",
            "message_id": None,
            "ok": False,
            "error": "No route found",
            "raw": {"batchId": "Q-77", "to": "855120000002", "status": "0"},
        },
    ]
    assert ledger.record_events(events) == 3
    assert ledger.record_events(events) == 0
    m = ledger.messages("c").set_index("message_key")
    assert m["state"].to_dict() == {"k00000": "accepted", "k00001": "accepted", "k00002": "rejected"}
    assert m.loc["k00002", "reason"] == "No route found"
    assert m["message_id"].tolist()[:2] == ["gw-0", "gw-1"]
    assert set(m["queue_id"].dropna()) == {"Q-77"}
    assert m.loc["k00001", "delivery_status"] == "DELIVRD"
    ledger.settle("c", ["k00000"], state="uncertain", status=504)  # a late ambiguous answer
    assert row(ledger, "c", "k00000")["state"] == "accepted"


def test_invalid_events_are_refused_whole(ledger: Ledger) -> None:
    ledger.plan("c", frame(1))
    sent(ledger, "c", ["k00000"], ids={"k00000": "m0"})
    with pytest.raises(LedgerError, match="level"):
        ledger.record_events([dlr("m0", 2, "DELIVRD"), dlr("m0", 7, "DELIVRD")])
    with pytest.raises(LedgerError, match="message_id"):
        ledger.record_events([{"source": "dlr", "level": 2, "status": "DELIVRD"}])
    assert ledger.events("c").empty


def test_events_committed_without_sync_are_stored_and_the_next_sync_makes_them_durable(
    ledger: Ledger, url: str
) -> None:
    ledger.plan("c", frame(2))
    sent(ledger, "c", ["k00000", "k00001"], ids={"k00000": "m0", "k00001": "m1"})
    assert ledger.record_events([dlr("m0", 2, "DELIVRD")], sync=False) == 1
    assert ledger.record_events([dlr("m1", 2, "UNDELIV", err="001")], sync=False) == 1
    ledger.sync_events()  # one sync for both transactions
    with Ledger(url) as other:  # another connection sees both, applied
        assert list(other.messages("c")["delivery_status"]) == ["DELIVRD", "UNDELIV"]
    with pytest.raises(LedgerError, match="level"):  # a refusal rolls back and leaves the setting as it was
        ledger.record_events([dlr("m0", 7, "DELIVRD")], sync=False)
    if url.startswith("sqlite"):  # the connection commits with a full sync again for everything else
        with ledger._ready().connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    ledger.sync_events()  # nothing new: harmless


def test_sync_of_an_sqlite_ledger_follows_its_write_ahead_log(tmp_path: Path) -> None:
    from plasgate_nb.ledger._wal import WalFile

    wal = WalFile(tmp_path / "gone.db")
    wal.sync()  # no log file (never written, or checkpointed away by the last connection): nothing to do
    assert wal.fd is None
    (tmp_path / "gone.db-wal").write_bytes(b"frames")
    wal.sync()
    first = wal.inode
    (tmp_path / "new-wal").write_bytes(b"a new log")
    (tmp_path / "new-wal").replace(tmp_path / "gone.db-wal")  # (the old one, still open, keeps its inode)
    wal.sync()  # a log made anew is reopened, not the old file synced
    assert wal.inode != first and wal.inode == (tmp_path / "gone.db-wal").stat().st_ino
    wal.close()
    assert wal.fd is None


def test_deferred_sync_writers_of_one_file_take_turns(tmp_path: Path) -> None:
    import threading
    import time

    from plasgate_nb.ledger._wal import WalFile

    (tmp_path / "l.db-wal").write_bytes(b"")
    first, second = WalFile(tmp_path / "l.db"), WalFile(tmp_path / "l.db")
    order: list[str] = []

    def wait_for_turn() -> None:
        with second.turn():
            order.append("second")

    with first.turn():
        waiter = threading.Thread(target=wait_for_turn)
        waiter.start()
        time.sleep(0.2)  # the other writer is waiting meanwhile
        order.append("first done")
    waiter.join(10)
    assert order == ["first done", "second"]
    first.close()
    second.close()


# -- sharing and safety -------------------------------------------------------------------------------


def _sender(url: str, n: int) -> None:
    """Child process: send ``n`` rows in batches of 10 (mark submitting, then settle with ids)."""
    with Ledger(url) as led:
        for start in range(0, n, 10):
            keys = [f"k{i:05d}" for i in range(start, start + 10)]
            led.mark_submitting("c", keys, batch_id=f"b{start}")
            led.settle("c", keys, state="accepted", message_ids={k: f"m-{k}" for k in keys})


def _receiver(url: str, n: int) -> None:
    """Child process: record level-1 and level-2 reports for ``n`` rows in small groups, newest first."""
    with Ledger(url) as led:
        for start in reversed(range(0, n, 5)):
            keys = [f"k{i:05d}" for i in range(start, start + 5)]
            led.record_events([dlr(f"m-{k}", lvl, st) for k in keys for lvl, st in ((2, "DELIVRD"), (1, "ESME_ROK"))])


def test_concurrent_sender_and_receiver_processes(url: str) -> None:
    n = 300
    with Ledger(url) as led:
        led.plan("c", frame(n))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_sender, args=(url, n)), ctx.Process(target=_receiver, args=(url, n))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with Ledger(url) as led:
        m = led.messages("c")
        assert (m["state"] == "accepted").all()
        assert (m["delivery_status"] == "DELIVRD").all() and (m["delivery_level1_status"] == "ESME_ROK").all()
        assert len(led.events("c")) == 2 * n


def test_newer_schema_is_refused(url: str) -> None:
    with Ledger(url) as led:
        led.plan("c", frame(1))
        engine = sa.create_engine(led.url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE plasgate_meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    engine.dispose()
    with Ledger(url) as led, pytest.raises(LedgerError, match="newer"):
        led.summary("c")


def test_repr_and_errors_hide_the_password(tmp_path: Path) -> None:
    led = Ledger("postgresql://alice:pa55-w0rd$x@127.0.0.1:1/db")
    assert "pa55" not in repr(led) and "***" in repr(led) and "psycopg" in repr(led)
    with pytest.raises(LedgerError) as info:
        led.summary("c")
    assert "pa55" not in str(info.value) and "pa55" not in repr(info.value.__cause__)
    assert "plasgate_nb.db" in repr(Ledger())
    assert repr(Ledger(tmp_path / "x.db")) == f"Ledger('sqlite:///{tmp_path / 'x.db'}')"
    with pytest.raises(LedgerError, match="unsupported"):
        Ledger("mysql://root@localhost/db")


def test_campaign_settings_drop_credentials(ledger: Ledger) -> None:
    info = ledger.open_campaign(
        "c",
        settings={
            "sender": "SMS Info",
            "secret": "s$3cr3t",
            "gateway": {"private_key": "PK-123", "base_url": "https://x"},
        },
    )
    assert info.settings == {"sender": "SMS Info", "gateway": {"base_url": "https://x"}}
    assert info.token and info.token not in repr(info)
    assert ledger.campaign_token("c") == info.token
    assert ledger.campaign_token("other") is None
    assert ledger.open_campaign("c").token == info.token


def test_pickles_as_its_url(ledger: Ledger) -> None:
    ledger.plan("c", frame(2))
    copy = pickle.loads(pickle.dumps(ledger))
    assert copy.url == ledger.url
    assert copy.summary("c")["planned"] == 2
    copy.close()


def test_large_plan(ledger: Ledger) -> None:
    n = 100_000
    result = ledger.plan("big", frame(n))
    assert (result.added, result.kept) == (n, 0)
    assert ledger.plan("big", frame(n)).kept == n
    pending = ledger.pending("big")
    assert len(pending) == n and pending["message_key"].is_monotonic_increasing
    m = ledger.messages("big", columns=["state", "segments"])
    assert list(m.columns) == ["message_key", "state", "segments"] and m["segments"].sum() == n


# -- fast paths --------------------------------------------------------------------------------------

READ = [
    "state",
    "message_id",
    "delivery_status",
    "delivered_at",
    "error_code",
    "segments",
    "attempts",
    "reason",
    "submitted_at",
    "done_at",
    "response_status",
    "batch_id",
]


def _same(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    """Assert two reads hold the same values, column by column (times compared as instants)."""
    assert list(fast.columns) == list(slow.columns)
    assert fast["message_key"].tolist() == slow["message_key"].tolist()
    for column in fast.columns[1:]:
        left, right = fast[column], slow[column]
        assert left.dtype == right.dtype or pd.api.types.is_string_dtype(left), column
        assert (
            left.astype(object).where(left.notna(), None).tolist()
            == right.astype(object).where(right.notna(), None).tolist()
        ), column


def test_read_columns_matches_messages(ledger: Ledger) -> None:
    ledger.plan("c", frame(6))
    sent(ledger, "c", ["k00000", "k00001", "k00002"], ids={"k00000": "m0", "k00001": "m1"})
    ledger.mark_submitting("c", ["k00003"], batch_id="b2")
    ledger.settle("c", ["k00003"], state="rejected", status=400, reason="HTTP 400: bad number")
    ledger.record_events(
        [
            dlr("m0", 2, "DELIVRD", done_at=datetime(2026, 1, 5, 2, 0, 7, 123456, tzinfo=UTC)),
            dlr("m1", 2, "UNDELIV", err="001"),
        ]
    )
    fast = ledger.read_columns("c", READ)
    _same(fast, ledger.messages("c", columns=READ))
    assert fast["state"].tolist() == ["accepted"] * 3 + ["rejected", "planned", "planned"]
    assert fast["delivered_at"].iloc[0] == pd.Timestamp("2026-01-05 02:00:07.123456", tz="UTC")
    assert ledger.read_columns("unknown", READ).empty
    with pytest.raises(LedgerError, match="unknown message columns"):
        ledger.read_columns("c", ["nope"])


def test_status_counts_are_the_rows_grouped(ledger: Ledger) -> None:
    """One row per (state, delivery_status, error_code) with its number of messages, as the rows show."""
    ledger.plan("c", frame(7))
    ledger.plan("other", frame(3, start=50))  # another campaign's rows are not counted
    sent(ledger, "c", ["k00000", "k00001", "k00002", "k00003"], ids={f"k0000{i}": f"m{i}" for i in range(4)})
    ledger.mark_submitting("c", ["k00004"], batch_id="b2")
    ledger.record_events(
        [dlr("m0", 2, "DELIVRD"), dlr("m1", 2, "DELIVRD"), dlr("m2", 2, "UNDELIV", err="001"), dlr("m3", 1, "ESME_ROK")]
    )
    counts = ledger.status_counts("c")
    assert list(counts.columns) == ["state", "delivery_status", "error_code", "messages"]
    rows = ledger.messages("c", columns=["state", "delivery_status", "error_code"])
    expected = (
        rows.astype(object)
        .where(rows.notna(), None)
        .groupby(["state", "delivery_status", "error_code"], dropna=False)
        .size()
        .to_dict()
    )
    got = {(r.state, r.delivery_status, r.error_code): r.messages for r in counts.itertuples(index=False)}
    norm = {tuple(None if pd.isna(v) else v for v in k): n for k, n in expected.items()}
    assert got == norm and counts["messages"].sum() == 7
    assert got[("accepted", "DELIVRD", None)] == 2 and got[("planned", None, None)] == 2
    assert ledger.status_counts("unknown").empty


def test_read_columns_falls_back_for_values_it_cannot_carry(ledger: Ledger) -> None:
    rows = frame(3)
    rows.loc[2, "segments"] = 70_000  # beyond the one-character encoding of counts
    ledger.plan("c", rows)
    with ledger._ready().begin() as conn:  # the fast reader's separator inside a text: plan() refuses it now,
        conn.execute(  # a ledger written before that rule may hold it
            sa.text("UPDATE plasgate_messages SET content_report = :text WHERE message_key = 'k00001'"),
            {"text": "a\x1fb"},
        )
    fast = ledger.read_columns("c", ["content_report", "segments"])
    assert fast["content_report"].tolist()[1] == "a\x1fb" and fast["segments"].tolist() == [1, 1, 70_000]
    _same(fast, ledger.messages("c", columns=["content_report", "segments"]))


def test_mark_and_settle_large_batches_touch_only_their_rows(ledger: Ledger) -> None:
    ledger.plan("c", frame(5000))
    keys = [f"k{i:05d}" for i in range(1000, 3000)]
    assert ledger.mark_submitting("c", keys, batch_id="big") == len(keys)
    assert ledger.settle("c", keys[:1500], state="accepted", queue_id="q", status=200) == 1500
    assert ledger.settle("c", keys[1500:], state="uncertain", reason="read timeout") == 500
    counts = ledger.summary("c")
    assert (counts["planned"], counts["accepted"], counts["uncertain"], counts["submitting"]) == (3000, 1500, 500, 0)
    m = ledger.messages("c", columns=["state", "batch_id", "attempts", "queue_id"]).set_index("message_key")
    assert (m.loc[keys, "batch_id"] == "big").all() and (m.loc[keys, "attempts"] == 1).all()
    assert m.drop(index=keys)["batch_id"].isna().all() and (m.drop(index=keys)["attempts"] == 0).all()
    assert m.loc[keys[:1500], "queue_id"].eq("q").all() and m.loc[keys[1500:], "queue_id"].isna().all()


def test_replies_are_stored_and_read_back(ledger: Ledger) -> None:
    """Replies filed under a campaign or none; long texts cut to 1600 characters; Khmer kept as is."""
    ledger.plan("c", frame(2))
    ledger.plan("other", frame(1, start=50))
    when = datetime(2026, 1, 5, 3, 4, 5, tzinfo=UTC)
    khmer = "សូមអរគុណ! បាទ ខ្ញុំចង់បាន"
    stored = ledger.record_replies(
        "c",
        [
            {"msisdn": "85512000001", "to": "SMS Info", "text": "STOP", "data_coding": 0, "received_at": when},
            {"msisdn": "85512000002", "to": "SMS Info", "text": khmer, "data_coding": 8},
            {"msisdn": "85512000001", "to": "SMS Info", "text": "STOP"},  # the same text again is another reply
            {"msisdn": "85512000003", "to": "1234", "text": "x" * 2000},
        ],
    )
    assert stored == 4
    assert ledger.record_replies(None, [{"msisdn": "85599000000", "to": "SMS Info", "text": "who is this?"}]) == 1
    assert ledger.record_replies("other", []) == 0
    got = ledger.replies("c")
    assert list(got.columns) == ["campaign", "msisdn", "destination", "text", "data_coding", "received_at"]
    assert got["msisdn"].tolist() == ["85512000001", "85512000002", "85512000001", "85512000003"]
    assert got["text"].tolist()[:3] == ["STOP", khmer, "STOP"] and got["text"].iloc[3] == "x" * 1600
    assert got["data_coding"].tolist()[:2] == [0, 8] and pd.isna(got["data_coding"].iloc[2])
    assert (got["campaign"] == "c").all() and got["destination"].iloc[3] == "1234"
    assert got["received_at"].iloc[0] == pd.Timestamp(when)
    assert (got["received_at"].iloc[1:] > pd.Timestamp(when)).all()
    assert ledger.replies("other").empty and ledger.replies("nobody").empty
    every = ledger.replies()
    assert len(every) == 5 and pd.isna(every["campaign"].iloc[4]) and every["text"].iloc[4] == "who is this?"


def test_bad_replies_are_refused_whole(ledger: Ledger) -> None:
    ledger.plan("c", frame(1))
    good = {"msisdn": "85512000001", "to": "SMS Info", "text": "yes"}
    with pytest.raises(LedgerError, match="unknown campaign"):
        ledger.record_replies("nope", [good])
    for bad in (
        {"to": "SMS Info", "text": "no number"},
        {"msisdn": "85512000001", "text": None},
        {"msisdn": "8" * 40, "text": "long number"},
        {**good, "data_coding": 300},
        {**good, "received_at": "yesterday"},
    ):
        with pytest.raises(LedgerError):
            ledger.record_replies("c", [good, bad])
    assert ledger.replies().empty


def _downgrade(engine: sa.Engine, version: int) -> None:
    """Make a current ledger look like one of schema ``version`` (what the upgrades add removed)."""
    with engine.begin() as conn:
        if version < 6:
            conn.exec_driver_sql("DROP TABLE plasgate_leases")
        if version < 5:
            conn.exec_driver_sql("DROP INDEX ix_plasgate_messages_key_digest")
            conn.exec_driver_sql("ALTER TABLE plasgate_messages DROP COLUMN key_digest")
        if version < 4:
            conn.exec_driver_sql("DROP TABLE plasgate_suppressions")
            conn.exec_driver_sql("DROP TABLE plasgate_settings")
        if version < 3:
            conn.exec_driver_sql("ALTER TABLE plasgate_messages DROP COLUMN part_ids")
        if version < 2:
            conn.exec_driver_sql("DROP TABLE plasgate_replies")
        conn.exec_driver_sql(f"UPDATE plasgate_meta SET value = '{version}' WHERE key = 'schema_version'")


def _version(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT value FROM plasgate_meta WHERE key = 'schema_version'").scalar()


def test_version_1_ledger_is_upgraded_on_open(url: str) -> None:
    """A ledger written before replies existed (schema 1) gains the table on open and keeps its rows."""
    with Ledger(url) as led:
        led.plan("c", frame(3))
        engine = sa.create_engine(led.url)
    _downgrade(engine, 1)
    assert "plasgate_replies" not in sa.inspect(engine).get_table_names()
    with Ledger(url) as led:
        assert led.summary("c")["planned"] == 3
        assert led.record_replies("c", [{"msisdn": "85512000001", "to": "SMS Info", "text": "ok"}]) == 1
        assert led.replies("c")["text"].tolist() == ["ok"]
    assert _version(engine) == str(SCHEMA_VERSION) and "plasgate_replies" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_version_2_ledger_forgets_digests_of_masked_values(url: str) -> None:
    """Version 2 kept SHA-256 of the unmasked text; the upgrade re-digests masked rows from their report view."""
    texts = ["Code #ma#481516#ma# inside", "No mask here"]
    df = pd.DataFrame(
        {
            "message_key": ["m", "p"],
            "msisdn": ["85512000001", "85512000002"],
            "content": texts,
            "content_report": ["Code ****** inside", "No mask here"],
        }
    )
    with Ledger(url) as led:
        led.plan("c", df)
        engine = sa.create_engine(led.url)
    _downgrade(engine, 2)
    old = {key: hashlib.sha256(text.encode()).hexdigest() for key, text in zip(df["message_key"], texts, strict=True)}
    with engine.begin() as conn:  # what version 2 stored
        for key, digest in old.items():
            conn.exec_driver_sql(f"UPDATE plasgate_messages SET content_hash = '{digest}' WHERE message_key = '{key}'")
    with Ledger(url) as led:
        stored = led.messages("c").set_index("message_key")["content_hash"]
        assert stored["m"] == content_digest(texts[0]) != old["m"]
        assert stored["p"] == old["p"]  # an unmasked text's digest is unchanged
        again = led.plan("c", df)
        assert (again.kept, again.replanned, again.changed) == (2, (), ())
        assert led.messages("c")["part_ids"].isna().all()
    assert _version(engine) == str(SCHEMA_VERSION)
    engine.dispose()


def test_version_4_ledger_gains_key_digests_for_callback_routing(url: str) -> None:
    """Rows planned before version 5 get the digest their callback URLs carry, and are found by it."""
    from plasgate_nb._keys import key_digest

    keys = ["a/b", "50% ?#", "ស្វាគមន៍", "k" * 1000]
    df = pd.DataFrame({"message_key": keys, "msisdn": ["85512000001"] * 4, "content": ["t1", "t2", "t3", "t4"]})
    with Ledger(url) as led:
        led.plan("c", df)
        engine = sa.create_engine(led.url)
    _downgrade(engine, 4)
    with Ledger(url) as led:
        assert led.summary("c")["planned"] == 4
        led.mark_submitting("c", keys, batch_id="b")
        led.settle("c", keys, state="accepted")
        event = {
            "campaign": "c",
            "key_digest": key_digest(keys[3]),
            "message_id": "m4",
            "level": 2,
            "status": "DELIVRD",
        }
        assert led.record_events([event]) == 1
        rows = led.messages("c").set_index("message_key")
        assert (rows.loc[keys[3], "message_id"], rows.loc[keys[3], "delivery_status"]) == ("m4", "DELIVRD")
    assert _version(engine) == str(SCHEMA_VERSION)
    engine.dispose()


def test_version_without_an_upgrade_path_is_refused(url: str) -> None:
    with Ledger(url) as led:
        led.plan("c", frame(1))
        engine = sa.create_engine(led.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE plasgate_meta SET value = '0' WHERE key = 'schema_version'")
    engine.dispose()
    with Ledger(url) as led, pytest.raises(LedgerError, match="cannot upgrade"):
        led.summary("c")
