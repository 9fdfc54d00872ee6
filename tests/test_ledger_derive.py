"""Incremental derivation (``advance``) agrees with deriving from all of a message's events (``derive``),
and so do the rows the ledger records (SQLite and PostgreSQL), in any order and grouping of reports."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plasgate_nb.errors import LedgerError
from plasgate_nb.ledger import Ledger
from plasgate_nb.ledger._events import DELIVERY_COLUMNS, advance, delivered_time, derive
from plasgate_nb.ledger._pairing import _CANDIDATES

from .test_ledger import fresh_pg_schema

T0 = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)

event = st.builds(
    lambda source, level, status, err, done, received: SimpleNamespace(
        source=source,
        level=level if source in ("dlr", "smpp") else None,
        status=status if source in ("dlr", "smpp") else ("SENT" if source == "batch" else "FAILED"),
        err=err,
        done_at=None if done is None else T0 + timedelta(minutes=done),
        received_at=T0 + timedelta(seconds=received),
        raw={},
    ),
    st.sampled_from(["dlr", "dlr", "dlr", "smpp", "batch"]),
    st.sampled_from([1, 2, 2]),
    st.sampled_from(
        [
            "ESME_ROK",
            "ESME_RTHROTTLED",
            "ACCEPTD",
            "ENROUTE",
            "DELIVRD",
            "UNDELIV",
            "EXPIRED",
            "REJECTD",
            "DELETED",
            "UNKNOWN",
        ]
    ),
    st.sampled_from([None, "000", "001", "0x45"]),
    st.none() | st.integers(0, 100),
    st.integers(0, 10_000),
)
states = st.sampled_from(["accepted", "submitting", "uncertain", "rejected", "failed"])


@settings(max_examples=600, deadline=None)
@given(st.lists(event, max_size=8), st.lists(event, min_size=1, max_size=8), states)
def test_advance_equals_full_derive(old: list, new: list, state: str) -> None:
    """Stored columns from the old events, advanced by the new ones == derive over old + new."""
    before = derive(old, state=state)
    stored = {c: before[c] for c in DELIVERY_COLUMNS}
    state_now = before.get("state", state)
    full = derive(old + new, state=state_now)
    step = advance(stored, new, state=state_now)
    assert step is not None
    assert {c: step[c] for c in DELIVERY_COLUMNS} == {c: full[c] for c in DELIVERY_COLUMNS}
    assert (step.get("state"), step.get("reason")) == (full.get("state"), full.get("reason"))


def test_advance_defers_errbacks_to_full_derive() -> None:
    """An errback's effect depends on older events: advance declines it."""
    errback = SimpleNamespace(
        source="errback",
        level=None,
        status="FAILED",
        err=None,
        done_at=None,
        received_at=T0,
        raw={"statusText": "no route"},
    )
    assert advance(dict.fromkeys(DELIVERY_COLUMNS), [errback], state="uncertain") is None


def test_final_status_survives_a_late_non_final_one() -> None:
    """DELIVRD then a late ENROUTE (level 2): still DELIVRD, delivered_at unchanged."""
    final = SimpleNamespace(source="dlr", level=2, status="DELIVRD", err="000", done_at=T0, received_at=T0, raw={})
    late = SimpleNamespace(
        source="dlr", level=2, status="ENROUTE", err="000", done_at=None, received_at=T0 + timedelta(minutes=5), raw={}
    )
    stored = derive([final], state="accepted")
    step = advance(stored, [late], state="accepted")
    assert step is not None and step["delivery_status"] == "DELIVRD" and step["delivered_at"] == T0


# -- the ledger's recording path agrees with derive ---------------------------------------------------

MESSAGES = 4
QUEUE = "Q-1"
REPORTS = [(1, "ESME_ROK"), (1, "ESME_RTHROTTLED"), (2, "ACCEPTD"), (2, "ENROUTE"), (2, "DELIVRD"), (2, "UNDELIV")]
ROW_COLUMNS = ("state", "message_id", *DELIVERY_COLUMNS)
_campaigns = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_ledger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """One ledger per backend for the whole module (each example uses a campaign of its own)."""
    if request.param == "sqlite":
        with Ledger(tmp_path_factory.mktemp("derive") / "ledger.db") as led:
            yield led
        return
    for url in fresh_pg_schema():
        with Ledger(url) as led:
            yield led


def _gid(campaign: str, m: int) -> str:
    """The gateway's id of message ``m`` (unique across campaigns, as the gateway's are)."""
    return f"gw-{campaign}-{m}"


def _event(campaign: str, i: int, m: int, how: str, level: int, status: str, done: int | None) -> dict[str, Any]:
    """Report ``i`` for message ``m``: a DLR to its own URL (``key``) or the grouped one, or a batch callback."""
    common = {"campaign": campaign, "message_id": _gid(campaign, m), "received_at": T0 + timedelta(seconds=i)}
    if how == "batch":
        return {**common, "source": "batch", "queue_id": QUEUE, "msisdn": f"85512000000{m}", "ok": True, "raw": {}}
    return {
        **common,
        "source": "dlr",
        "message_key": f"k{m}" if how == "key" else None,
        "level": level,
        "status": status,
        "err": None if level == 1 else ("001" if status == "UNDELIV" else "000"),
        "done_at": None if done is None else T0 + timedelta(minutes=done),
        "raw": {"id": _gid(campaign, m)},
    }


def _plain(value: Any) -> Any:
    """A frame cell as a plain Python value (None for missing, aware datetimes for times)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _expected(events: list[dict[str, Any]], campaign: str, m: int, state: str) -> dict[str, Any]:
    """Message ``m``'s row by the model: ``derive`` over its first-seen events once its id is paired."""
    gid = _gid(campaign, m)
    seen: set[tuple[Any, ...]] = set()
    mine = []
    for e in events:
        key = (e["source"], e.get("level"), e.get("status"))
        if e["message_id"] == gid and key not in seen:
            seen.add(key)
            mine.append(
                SimpleNamespace(
                    source=e["source"],
                    level=e.get("level"),
                    status=e.get("status", "SENT"),
                    err=e.get("err"),
                    done_at=e.get("done_at"),
                    received_at=e["received_at"],
                    raw=e["raw"],
                )
            )
    if not any(e["message_id"] == gid and (e["source"] == "batch" or e["message_key"]) for e in events):
        return {"state": state, "message_id": None, **dict.fromkeys(DELIVERY_COLUMNS)}  # never paired: untouched
    out = derive(mine, state=state)
    return {"state": out.get("state", state), "message_id": gid, **{c: out[c] for c in DELIVERY_COLUMNS}}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.integers(0, MESSAGES - 1),
            st.sampled_from(["key", "group", "group", "batch"]),
            st.sampled_from(REPORTS),
            st.none() | st.integers(0, 100),
        ),
        min_size=1,
        max_size=16,
    ),
    st.lists(st.integers(1, 6), min_size=16, max_size=16),
    st.lists(st.booleans(), min_size=MESSAGES, max_size=MESSAGES),
)
def test_recorded_rows_equal_derive_in_any_grouping(
    shared_ledger: Ledger, reports: list[tuple[Any, ...]], sizes: list[int], uncertain: list[bool]
) -> None:
    """Reports in any order and grouping (duplicates, early ones) leave each row as derive says."""
    led, campaign = shared_ledger, f"c{next(_campaigns)}"
    keys = [f"k{m}" for m in range(MESSAGES)]
    numbers = [f"85512000000{m}" for m in range(MESSAGES)]
    led.plan(campaign, pd.DataFrame({"message_key": keys, "msisdn": numbers, "content": "Hello"}))
    led.mark_submitting(campaign, keys, batch_id="b1")
    led.settle(campaign, [k for k, u in zip(keys, uncertain, strict=True) if not u], state="accepted", queue_id=QUEUE)
    led.settle(campaign, [k for k, u in zip(keys, uncertain, strict=True) if u], state="uncertain")
    events = [
        _event(campaign, i, m, how, level, status, done) for i, (m, how, (level, status), done) in enumerate(reports)
    ]
    start = 0
    for size in sizes:
        led.record_events(events[start : start + size])
        start += size
    rows = led.messages(campaign).set_index("message_key")
    for m, key in enumerate(keys):
        got = {c: _plain(rows.loc[key, c]) for c in ROW_COLUMNS}
        assert got == _expected(events, campaign, m, "uncertain" if uncertain[m] else "accepted"), (m, events)


def test_batch_callback_lookup_uses_the_number_index(tmp_path: Path) -> None:
    """Rows a batch callback may belong to are found by number, not by walking the campaign (SQLite plan)."""
    with Ledger(tmp_path / "ledger.db") as led:
        led.open_campaign("c")
        engine = led._ready()
        cond = "msisdn IN (?, ?)"
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {_CANDIDATES.format(cond=cond)}", (1, "a", "b")).all()
    assert any("ix_plasgate_messages_msisdn" in str(step) for step in plan), plan


def test_an_event_whose_raw_fields_are_not_json_is_refused_whole(shared_ledger: Ledger) -> None:
    """A refusal (no storage cause), the same on both backends, and the group's other events are not stored."""
    campaign = f"c{next(_campaigns)}"
    shared_ledger.open_campaign(campaign)
    good = _event(campaign, 0, 0, "group", 2, "DELIVRD", None)
    with pytest.raises(LedgerError, match="JSON") as caught:
        shared_ledger.record_events([good, {**good, "status": "UNDELIV", "raw": {"when": object()}}])
    assert caught.value.__cause__ is None
    assert shared_ledger.record_events([good]) == 1


def test_a_duplicate_carrying_the_key_pairs_its_row_in_the_same_group(shared_ledger: Ledger) -> None:
    """The first copy came to the grouped URL, its duplicate to the row's own: stored once, paired, applied."""
    led, campaign = shared_ledger, f"c{next(_campaigns)}"
    led.plan(campaign, pd.DataFrame({"message_key": ["k0"], "msisdn": ["855120000000"], "content": "Hello"}))
    led.mark_submitting(campaign, ["k0"], batch_id="b1")
    led.settle(campaign, ["k0"], state="accepted", queue_id=QUEUE)
    grouped = _event(campaign, 0, 0, "group", 2, "DELIVRD", 5)
    assert led.record_events([grouped, {**grouped, "message_key": "k0"}]) == 1
    row = led.messages(campaign).set_index("message_key").loc["k0"]
    assert (row["message_id"], row["delivery_status"]) == (_gid(campaign, 0), "DELIVRD")


def test_delivered_time_is_as_close_as_the_report_tells() -> None:
    done = datetime(2026, 11, 25, 2, 34, tzinfo=UTC)  # Jasmin's donedate 2611250934 (Phnom Penh)
    prompt = done + timedelta(seconds=12)
    assert delivered_time(done, prompt) == prompt  # received within the done minute: to the second
    assert delivered_time(done, done + timedelta(minutes=7)) == done + timedelta(minutes=1)  # a late report
    ahead = done - timedelta(minutes=3)  # the gateway's clock (or a sped-up simulator) runs ahead of ours
    assert delivered_time(done, ahead) == ahead  # never after the report reached us
    exact = done + timedelta(seconds=5, microseconds=250)
    assert delivered_time(exact, exact + timedelta(hours=1)) == exact  # a date with seconds is exact
    assert delivered_time(None, prompt) == prompt
    assert delivered_time("2026-11-25 02:34:00.000000", "2026-11-25 02:34:12.000000") == prompt  # SQLite text
