"""Tests for plasgate_nb.report: collect, delivery_summary, wait_for_reports and export_report."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from plasgate_nb.errors import AudienceError, ConfigError
from plasgate_nb.ledger import Ledger
from plasgate_nb.report import (
    CHANGED,
    NOT_PLANNED,
    collect,
    delivery_summary,
    export_report,
    wait_for_reports,
    wilson_interval,
)

NAME = "spring"


def frame() -> pd.DataFrame:
    """Six audience rows: four sendable, one invalid, one opted out; keyed by the index."""
    return pd.DataFrame(
        {
            "msisdn": ["85512000001", "85512000002", "85512000003", "85512000004", "85512", "85512000006"],
            "content": ["hi a", "hi b", "hi c", "hi d", "hi e", "hi f"],
            "city": ["ភ្នំពេញ", "ភ្នំពេញ", "Kampot", "Kampot", "Kampot", "ភ្នំពេញ"],
            "audience_status": ["ok", "ok", "ok", "ok", "invalid", "suppressed"],
            "audience_reason": [None, None, None, None, "too short", "opted out"],
        },
        index=pd.Index(["a", "b", "c", "d", "e", "f"], name="customer"),
    )


def ledger_for(tmp_path: Path, df: pd.DataFrame, *, keys: tuple[str, ...] = ("a", "b", "c", "d")) -> Ledger:
    """Plan ``keys`` of ``df`` in a fresh SQLite ledger."""
    ledger = Ledger(tmp_path / "ledger.db")
    rows = df.loc[list(keys)]
    ledger.plan(
        NAME,
        pd.DataFrame(
            {
                "message_key": rows.index,
                "msisdn": rows["msisdn"],
                "content": rows["content"],
                "segments": [1, 2, 1, 1][: len(keys)],
            }
        ),
    )
    return ledger


def dlr(key: str, status: str, *, level: int = 2, done: datetime | None = None, err: str | None = None) -> dict:
    """A delivery report event for message ``gw-<key>``."""
    return {
        "source": "dlr",
        "message_id": f"gw-{key}",
        "level": level,
        "status": status,
        "done_at": done,
        "err": err,
        "campaign": NAME,
        "message_key": key,
    }


@pytest.fixture
def sent(tmp_path: Path) -> tuple[pd.DataFrame, Ledger]:
    """a, b accepted (a delivered), c rejected, d still planned; e, f skipped by the audience stage."""
    df = frame()
    ledger = ledger_for(tmp_path, df)
    ledger.mark_submitting(NAME, ["a", "b", "c"], batch_id="b1")
    ledger.settle(NAME, ["a", "b"], state="accepted", message_ids={"a": "gw-a", "b": "gw-b"})
    ledger.settle(NAME, ["c"], state="rejected", status=400, reason="HTTP 400: invalid sender")
    yield df, ledger
    ledger.close()


def test_collect_joins_states_and_says_why_rows_were_not_sent(sent: tuple[pd.DataFrame, Ledger]) -> None:
    df, ledger = sent
    done = datetime.now(UTC)  # a done date with seconds is exact, and after the submission
    ledger.record_events([dlr("a", "DELIVRD", done=done, err="000")])
    before = df.copy()
    out = collect(df, (ledger, NAME), price_per_segment=0.02)
    pd.testing.assert_frame_equal(df, before)  # the caller's frame is untouched
    assert out is not df and list(out.index) == list(df.index)
    assert out["send_state"].tolist() == ["accepted", "accepted", "rejected", "planned", "not_sent", "not_sent"]
    assert out.loc["a", "message_id"] == "gw-a" and out.loc["a", "delivery_status"] == "DELIVRD"
    assert out.loc["a", "delivered_at"] == pd.Timestamp(done)
    assert str(out["delivered_at"].dt.tz) == "UTC"
    assert pd.isna(out.loc["b", "delivery_status"]) and pd.isna(out.loc["b", "delivered_at"])
    assert out.loc["c", "reason"] == "HTTP 400: invalid sender"
    assert out.loc["e", "reason"] == "skipped by audience: too short"
    assert out.loc["f", "reason"] == "skipped by audience: opted out"
    assert out.loc["b", "segments"] == 2 and out.loc["b", "attempts"] == 1
    assert out.loc["b", "cost"] == pytest.approx(0.04)
    assert out.loc["c", "cost"] == 0.0 and out.loc["e", "cost"] == 0.0
    assert out.loc["a", "submitted_at"] <= pd.Timestamp.now(tz="UTC")
    assert pd.isna(out.loc["e", "segments"])


def test_collect_without_price_has_missing_cost_and_replaces_old_columns(sent: tuple[pd.DataFrame, Ledger]) -> None:
    df, ledger = sent
    first = collect(df, (ledger, NAME))
    assert first["cost"].isna().all()
    again = collect(first, (ledger, NAME))  # collecting a collected frame replaces, never duplicates
    assert list(again.columns) == list(first.columns)
    pd.testing.assert_frame_equal(again, first)


def test_late_and_duplicate_reports_are_reflected_once(sent: tuple[pd.DataFrame, Ledger]) -> None:
    df, ledger = sent
    ledger.record_events([dlr("b", "ESME_ROK", level=1), dlr("b", "UNDELIV", err="001")])
    ledger.record_events([dlr("b", "UNDELIV", err="001"), dlr("b", "ACCEPTD")])  # duplicate, then late
    out = collect(df, (ledger, NAME))
    assert out.loc["b", "delivery_status"] == "UNDELIV"
    assert out.loc["b", "error_code"] == "001"
    assert pd.isna(out.loc["b", "delivered_at"])


def test_rows_not_in_the_ledger_or_changed_since_planned(tmp_path: Path) -> None:
    df = frame()
    ledger = ledger_for(tmp_path, df, keys=("a", "b"))
    changed = df.copy()
    changed.loc["b", "content"] = "a new text"
    out = collect(changed, (ledger, NAME))
    ledger.close()
    assert out.loc["a", "send_state"] == "planned" and pd.isna(out.loc["a", "reason"])
    assert out.loc["b", "send_state"] == "not_sent" and out.loc["b", "reason"] == CHANGED
    assert out.loc["c", "send_state"] == "not_sent" and out.loc["c", "reason"] == NOT_PLANNED


def test_collect_on_a_key_column_and_a_campaign_object(sent: tuple[pd.DataFrame, Ledger]) -> None:
    df, ledger = sent
    keyed = df.reset_index()
    campaign = SimpleNamespace(ledger=ledger, name=NAME, key="customer", price_per_segment=0.5)
    out = collect(keyed, campaign)
    assert out["send_state"].tolist()[:4] == ["accepted", "accepted", "rejected", "planned"]
    assert out.loc[1, "cost"] == pytest.approx(1.0)
    with pytest.raises(AudienceError, match="duplicate"):
        collect(pd.concat([keyed, keyed]), campaign)
    with pytest.raises(ConfigError):
        collect(keyed, "not a campaign")


def test_unknown_campaign_means_nothing_was_planned(tmp_path: Path) -> None:
    df = frame()
    with Ledger(tmp_path / "empty.db") as ledger:
        out = collect(df, (ledger, "never"))
    assert (out["send_state"] == "not_sent").all()
    assert out.loc["a", "reason"] == NOT_PLANNED and out.loc["e", "reason"].startswith("skipped by audience")


def test_fast_sqlite_read_matches_the_ledgers_reader(sent: tuple[pd.DataFrame, Ledger]) -> None:
    _, ledger = sent
    ledger.record_events([dlr("a", "DELIVRD", done=datetime(2026, 1, 5, 2, 0, 7, 123456, tzinfo=UTC))])
    fast = ledger.read_columns(
        NAME,
        [
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
        ],
    )
    slow = ledger.messages(NAME, columns=list(fast.columns[1:]))
    fast, slow = fast.set_index("message_key").sort_index(), slow.set_index("message_key").sort_index()
    for column in fast.columns:
        left, right = fast[column], slow[column]
        if column.endswith("_at"):
            assert (left.isna() == right.isna()).all(), column
            assert (left.dropna() == right.dropna()).all(), column
        else:
            assert (
                left.astype(object).where(left.notna(), None).tolist()
                == right.astype(object).where(right.notna(), None).tolist()
            ), column


def test_wilson_interval_contains_the_rate_and_stays_in_unit_range() -> None:
    k = np.array([0, 1, 5, 10, 999])
    n = np.array([10, 1, 10, 10, 1000])
    low, high = wilson_interval(k, n)
    rate = k / n
    assert np.all((low >= 0) & (high <= 1) & (low <= rate) & (rate <= high))
    assert high[0] > 0 and low[3] < 1  # never degenerate at 0% or 100%
    low, high = wilson_interval([0], [0])
    assert np.isnan(low[0]) and np.isnan(high[0])


def test_delivery_summary_overall_and_by_group(sent: tuple[pd.DataFrame, Ledger]) -> None:
    df, ledger = sent
    ledger.record_events([dlr("a", "DELIVRD"), dlr("b", "EXPIRED")])
    out = collect(df, (ledger, NAME))
    overall = delivery_summary(out)
    row = overall.loc["all"]
    assert (row["rows"], row["sent"], row["delivered"], row["failed"], row["pending"]) == (6, 2, 1, 1, 0)
    assert (row["rejected"], row["not_sent"]) == (1, 3)
    assert (row["status_DELIVRD"], row["status_EXPIRED"]) == (1, 1)
    assert [c for c in overall.columns if c.startswith("status_")] == ["status_DELIVRD", "status_EXPIRED"]
    assert row["delivered_rate"] == pytest.approx(0.5)
    assert row["ci_low"] < 0.5 < row["ci_high"]
    by_city = delivery_summary(out, "city")
    assert set(by_city.index) == {"ភ្នំពេញ", "Kampot"}
    assert by_city.loc["ភ្នំពេញ", "delivered_rate"] == pytest.approx(0.5)
    assert np.isnan(by_city.loc["Kampot", "delivered_rate"])  # nothing sent there
    assert by_city["rows"].sum() == len(out)
    with pytest.raises(ConfigError):
        delivery_summary(df)  # not a collected frame


SUMMARY_COLUMNS = [
    "rows",
    "not_sent",
    "rejected",
    "uncertain",
    "sent",
    "delivered",
    "failed",
    "pending",
    "delivered_rate",
    "failed_rate",
    "ci_low",
    "ci_high",
    "not_requested",
    "delivery",
]


def collected_statuses() -> pd.DataFrame:
    """A collected frame (its two outcome columns) with every kind of final and interim status."""
    rows = [
        ("Smart", "accepted", "DELIVRD"),
        ("Smart", "accepted", "DELIVRD"),
        ("Smart", "accepted", "UNDELIV"),
        ("Smart", "accepted", "REJECTD"),  # refused by the network after acceptance: sent, failed
        ("Smart", "accepted", "ACCEPTD"),  # interim report: still pending
        ("Smart", "rejected", None),  # refused at send: not in sent
        ("Metfone", "accepted", "EXPIRED"),
        ("Metfone", "accepted", "DELETED"),
        ("Metfone", "accepted", "UNKNOWN"),  # not final: pending
        ("Metfone", "accepted", None),
        ("Metfone", "uncertain", None),
        ("Cellcard", "not_sent", None),
    ]
    return pd.DataFrame(rows, columns=["carrier", "send_state", "delivery_status"])


def test_delivery_summary_counts_each_final_status() -> None:
    df = collected_statuses()
    before = df.copy()
    by = delivery_summary(df, "carrier")
    pd.testing.assert_frame_equal(df, before)  # the caller's frame is not changed
    statuses = ["status_DELIVRD", "status_UNDELIV", "status_EXPIRED", "status_REJECTD", "status_DELETED"]
    assert list(by.columns) == SUMMARY_COLUMNS + statuses  # the old columns first, unchanged
    assert by.loc["Smart", statuses].tolist() == [2, 1, 0, 1, 0]
    assert by.loc["Metfone", statuses].tolist() == [0, 0, 1, 0, 1]
    assert by.loc["Cellcard", statuses].tolist() == [0, 0, 0, 0, 0]
    assert (by[statuses].sum(axis=1) == by["delivered"] + by["failed"]).all()
    assert (by["status_DELIVRD"] == by["delivered"]).all()
    assert by.loc["Smart", ["sent", "failed", "pending", "rejected"]].tolist() == [5, 2, 1, 1]
    assert by.loc["Metfone", ["sent", "failed", "pending", "uncertain"]].tolist() == [4, 2, 2, 1]
    overall = delivery_summary(df).loc["all"]
    assert overall[statuses].tolist() == [2, 1, 1, 1, 1] and overall["rows"] == len(df)
    only_delivered = delivery_summary(df[df["delivery_status"].isin(["DELIVRD", "ACCEPTD"])])
    assert [c for c in only_delivered.columns if c.startswith("status_")] == ["status_DELIVRD"]  # those that occur
    nothing = delivery_summary(df[df["send_state"] == "not_sent"])
    assert list(nothing.columns) == SUMMARY_COLUMNS and nothing.loc["all", "rows"] == 1


def test_delivery_summary_tidy_has_a_row_per_group_and_status() -> None:
    df = collected_statuses()
    wide = delivery_summary(df, "carrier")
    tidy = delivery_summary(df, "carrier", tidy=True)
    assert list(tidy.columns) == ["carrier", "status", "count", "rate", "ci_low", "ci_high"]
    names = ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "pending"]
    assert list(tidy["status"].cat.categories) == names
    assert len(tidy) == len(wide) * len(names)
    for carrier, group in tidy.groupby("carrier"):
        counts = dict(zip(group["status"].astype(str), group["count"], strict=True))
        assert counts["pending"] == wide.loc[carrier, "pending"]
        assert all(counts[n] == wide.loc[carrier, f"status_{n}"] for n in names[:-1])
        sent = wide.loc[carrier, "sent"]
        if sent:
            assert group["rate"].sum() == pytest.approx(1.0)
            assert group["rate"].tolist() == pytest.approx((group["count"] / sent).tolist())
            assert ((group["ci_low"] <= group["rate"]) & (group["rate"] <= group["ci_high"])).all()
        else:
            assert group["rate"].isna().all() and group["ci_low"].isna().all()
    smart = tidy[(tidy["carrier"] == "Smart") & (tidy["status"] == "DELIVRD")].iloc[0]
    assert smart["rate"] == pytest.approx(wide.loc["Smart", "delivered_rate"])
    assert (smart["ci_low"], smart["ci_high"]) == pytest.approx(tuple(wide.loc["Smart", ["ci_low", "ci_high"]]))
    overall = delivery_summary(df, tidy=True)
    assert list(overall.columns) == ["status", "count", "rate", "ci_low", "ci_high"]
    assert overall["count"].tolist() == [2, 1, 1, 1, 1, 3]
    two = delivery_summary(df.assign(kind=df["send_state"]), ["carrier", "kind"], tidy=True)
    assert list(two.columns[:3]) == ["carrier", "kind", "status"]
    with pytest.raises(ConfigError, match="rename"):
        delivery_summary(df.assign(status=1), "status", tidy=True)


def test_wait_for_reports_returns_when_enough_are_final(sent: tuple[pd.DataFrame, Ledger]) -> None:
    _, ledger = sent

    def later() -> None:
        time.sleep(0.3)
        ledger.record_events([dlr("a", "DELIVRD"), dlr("b", "UNDELIV")])

    worker = threading.Thread(target=later, name="test-reports")
    worker.start()
    started = time.monotonic()
    counts = wait_for_reports((ledger, NAME), timeout=10, until=1.0, poll=0.05, progress=False)
    worker.join()
    assert counts["done"] and counts["final"] == 2 and counts["delivered"] == 1 and counts["failed"] == 1
    assert time.monotonic() - started < 5


def test_wait_for_reports_times_out(sent: tuple[pd.DataFrame, Ledger]) -> None:
    _, ledger = sent
    counts = wait_for_reports((ledger, NAME), timeout=0.2, poll=0.05, progress=False)
    assert not counts["done"] and counts["accepted"] == 2 and counts["pending"] == 2
    assert 0.2 <= counts["waited_s"] < 2
    with pytest.raises(ConfigError):
        wait_for_reports((ledger, NAME), timeout=1, until=0)


def test_export_report_writes_csv_and_chart(sent: tuple[pd.DataFrame, Ledger], tmp_path: Path) -> None:
    df, ledger = sent
    ledger.record_events([dlr("a", "DELIVRD", done=datetime.now(UTC) + timedelta(seconds=5))])
    out = collect(df, (ledger, NAME))
    paths = export_report(out, tmp_path / "report.csv", by="city")
    assert paths.data == tmp_path / "report.csv" and paths.chart == tmp_path / "report.png"
    back = pd.read_csv(paths.data, index_col="customer")
    assert back["send_state"].tolist() == out["send_state"].tolist()
    assert paths.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths.chart.stat().st_size > 5000
    with pytest.raises(ConfigError, match=r"\.csv or \.parquet"):
        export_report(out, tmp_path / "report.xlsx")


def test_export_parquet_round_trips(sent: tuple[pd.DataFrame, Ledger], tmp_path: Path) -> None:
    df, ledger = sent
    ledger.record_events([dlr("a", "DELIVRD", done=datetime.now(UTC) + timedelta(seconds=5))])
    out = collect(df, (ledger, NAME))
    paths = export_report(out, tmp_path / "report.parquet", by="city")
    back = pd.read_parquet(paths.data)
    assert back.index.tolist() == out.index.tolist()
    for column in ("send_state", "delivery_status", "message_id"):
        assert back[column].astype("string").fillna("-").tolist() == out[column].astype("string").fillna("-").tolist()
    assert back["delivered_at"].dropna().dt.tz is not None  # times keep their time zone
    assert paths.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_parquet_without_pyarrow_says_what_to_install(
    sent: tuple[pd.DataFrame, Ledger], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df, ledger = sent
    out = collect(df, (ledger, NAME))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(ConfigError, match="pyarrow"):
        export_report(out, tmp_path / "report.parquet")


ODD_KEYS = ["0042", "a,b", "quote'\"", "ស្វាគមន៍", " spaced ", "tab\there", "new\nline", "x" * 300, "42", "🙂"]


@pytest.mark.parametrize("parallel_rows", [1_000_000, 2])
@pytest.mark.parametrize("shuffled", [False, True])
def test_fast_and_general_paths_agree_on_odd_keys_missing_values_and_all_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel_rows: int, shuffled: bool
) -> None:
    import plasgate_nb.ledger._columns as columns

    monkeypatch.setattr(columns, "PARALLEL_ROWS", parallel_rows)  # 2: read in pieces on a reader thread
    df = pd.DataFrame(
        {
            "msisdn": [f"8551200{i:04d}" for i in range(len(ODD_KEYS) + 1)],
            "content": [f"hi {i}" for i in range(len(ODD_KEYS) + 1)],
            "audience_status": ["ok"] * len(ODD_KEYS) + [None],
            "audience_reason": [None] * (len(ODD_KEYS) + 1),
        },
        index=pd.Index([*ODD_KEYS, "never planned"], name="who"),
    )
    ledger = Ledger(tmp_path / "ledger.db")
    plan = df.iloc[:-1]
    ledger.plan(
        NAME,
        pd.DataFrame(
            {
                "message_key": plan.index,
                "msisdn": plan["msisdn"],
                "content": plan["content"],
                "segments": [1, 12, 2, 1, 1, 3, 1, 1, 10, 1],
            }
        ),
    )
    k = ODD_KEYS
    ledger.mark_submitting(NAME, k[:7], batch_id="b1")  # k[6] stays submitting
    ledger.settle(NAME, k[:4], state="accepted", message_ids={k[0]: "gw-0", k[1]: "gw,1", k[2]: "gw-ស"})
    ledger.settle(NAME, [k[4]], state="rejected", status=400, reason="HTTP 400: bad\nnumber ☹")
    ledger.settle(NAME, [k[5]], state="uncertain", reason="read timeout")
    done = datetime.now(UTC)  # after the submission, to the microsecond
    ledger.record_events(
        [
            dlr(k[0], "DELIVRD", done=done),
            {**dlr(k[1], "UNDELIV", err="001"), "message_id": "gw,1"},
        ]
    )
    frame_in = df.sample(frac=1.0, random_state=3) if shuffled else df
    general_reader = Ledger.messages

    def no_fallback(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fast reader fell back to the general one")

    monkeypatch.setattr(Ledger, "messages", no_fallback)
    fast = collect(frame_in, (ledger, NAME), price_per_segment=0.5)
    monkeypatch.setattr(Ledger, "messages", general_reader)
    monkeypatch.setattr(columns, "read", lambda *args, **kwargs: None)  # as when a value cannot be carried
    general = collect(frame_in, (ledger, NAME), price_per_segment=0.5)
    ledger.close()
    pd.testing.assert_frame_equal(fast, general)
    states = fast["send_state"].tolist()
    assert {"accepted", "rejected", "uncertain", "submitting", "planned", "not_sent"} <= set(states)
    by_key = fast.loc[list(k)]
    assert by_key["segments"].tolist() == [1, 12, 2, 1, 1, 3, 1, 1, 10, 1]
    assert by_key["message_id"].iloc[1] == "gw,1" and by_key["message_id"].iloc[2] == "gw-ស"
    assert by_key["delivered_at"].iloc[0] == pd.Timestamp(done)
    assert by_key["delivered_at"].iloc[1:].isna().all() and by_key["error_code"].iloc[1] == "001"
    assert fast.loc["never planned", "send_state"] == "not_sent"
