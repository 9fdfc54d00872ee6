"""Incremental derivation (``advance``) agrees with deriving from all of a message's events (``derive``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from plasgate_nb.ledger._events import DELIVERY_COLUMNS, advance, derive

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
