"""Consent, pacing and experiments across campaigns, end to end against the simulator and a real receiver.

Opt-out replies in Khmer over HTTP and SMPP reach the suppression list and the next campaign leaves the
number out (and sends again after START); a frequency cap counts across two campaigns (SQLite and
PostgreSQL); quiet hours schedule or hold a send, also one that runs into them; A/B holdout rows are
planned, never sent, and compare against the variants.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from plasgate_nb import (
    CallbackServer,
    Campaign,
    Ledger,
    SmppConfig,
    assign_variants,
    collect,
    compare_variants,
    render_messages,
)
from plasgate_nb.pacing import PHNOM_PENH
from plasgate_nb.simulator import RateLimits, Simulator, SimulatorConfig
from tests.conftest import gateway_for, wait_for
from tests.test_ledger import url  # noqa: F401  (url: SQLite and PostgreSQL)

KHMER_STOP = "ឈប់"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=12, smpp=True, rate_limits=RateLimits.off(), callback_retry_delay=0.05)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


def customers(n: int, start: int = 0) -> pd.DataFrame:
    """``n`` customers with distinct Smart numbers, keyed by customer_id."""
    ids = range(start, start + n)
    return pd.DataFrame({"customer_id": [f"C{i:04d}" for i in ids], "msisdn": [f"85510{i:06d}" for i in ids]}).assign(
        content=lambda d: "Hello " + d["customer_id"]
    )


def campaign(sim: Simulator, ledger: Ledger, name: str, **options: Any) -> Campaign:
    return Campaign(name, gateway=gateway_for(sim), ledger=ledger, key="customer_id", progress=False, **options)


def to_numbers(sim: Simulator, since: int) -> list[str]:
    return [r["to"] for r in sim.records(offset=since)]


def test_khmer_opt_out_over_http_leaves_the_number_out_until_start(sim: Simulator, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    df = customers(5, start=100)
    stopper = df["msisdn"].iloc[2]
    with CallbackServer(ledger, mode="thread") as receiver:
        assert campaign(sim, ledger, "first", receiver=receiver).send(df).accepted == 5
        sim.reply(stopper, f" {KHMER_STOP}។ ", via="http", url=receiver.reply_url)
        wait_for(lambda: stopper in ledger.suppressed_numbers())
    listed = ledger.suppressions()
    assert listed["source"].tolist() == ["reply"] and listed["text"].str.strip().tolist() == [f"{KHMER_STOP}។"]

    before = len(sim.records())
    second = campaign(sim, ledger, "second")
    summary = second.send(df)
    assert (summary.accepted, summary.skipped_reasons) == (4, {"suppressed": 1})
    assert stopper not in to_numbers(sim, before)
    view = collect(df, second).set_index("msisdn")
    assert view.loc[stopper, "send_state"] == "suppressed"
    today = datetime.now(PHNOM_PENH).strftime("%Y-%m-%d")
    assert view.loc[stopper, "reason"] == f"replied {KHMER_STOP}។ on {today}"
    assert second.send(df).recipients == 0  # still suppressed: nothing new
    ledger.suppress([df["msisdn"].iloc[0]])  # suppressed after it was sent: already sent, not "left out"
    rerun = second.send(df)
    assert (rerun.already_sent, rerun.skipped_reasons) == (4, {"suppressed": 1})
    assert second.status()["accepted"] == 4
    ledger.unsuppress([df["msisdn"].iloc[0]])

    ledger.record_replies(None, [{"msisdn": stopper, "to": "SMS Info", "text": "START"}])
    before = len(sim.records())
    again = second.send(df)
    assert again.accepted == 1 and to_numbers(sim, before) == [stopper]
    assert second.status()["suppressed"] == 0


def test_khmer_opt_out_over_smpp_reaches_the_suppression_list(sim: Simulator, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    creds = sim.credentials
    smpp = SmppConfig(port=sim.smpp_port, system_id=creds.username, password=creds.password, response_timeout=2.0)
    with CallbackServer(ledger, mode="thread", smpp=smpp):
        sim.reply("85510000333", KHMER_STOP)
        sim.reply("85510000334", "thank you")
        wait_for(lambda: len(ledger.replies()) == 2)
    assert ledger.suppressed_numbers() == {"85510000333"}
    before = len(sim.records())
    summary = campaign(sim, ledger, "after-smpp").send(customers(2, start=333))
    assert summary.skipped_reasons == {"suppressed": 1} and to_numbers(sim, before) == ["85510000334"]


def test_frequency_cap_counts_across_campaigns(sim: Simulator, url: str) -> None:  # noqa: F811
    with Ledger(url) as ledger:
        df = customers(6, start=200)
        campaign(sim, ledger, "monday").send(df.iloc[:4])  # numbers 0-3 had one message
        campaign(sim, ledger, "tuesday").send(df.iloc[:2])  # numbers 0-1 had two
        before = len(sim.records())
        capped = campaign(sim, ledger, "wednesday", frequency_cap=(2, "7D"))
        summary = capped.send(df)
        assert summary.skipped_reasons == {"capped": 2} and summary.accepted == 4
        assert sorted(to_numbers(sim, before)) == sorted(df["msisdn"].iloc[2:])
        view = collect(df, capped).set_index("customer_id")
        assert view.loc[["C0200", "C0201"], "send_state"].tolist() == ["capped", "capped"]
        assert view.loc["C0200", "reason"].startswith("frequency cap 2 per 7 days: already had 2 message(s) (")
        tight = campaign(sim, ledger, "thursday", frequency_cap="1/7D")
        assert tight.send(df, dry_run=True).skipped_reasons == {"capped": 6}
        loose = campaign(sim, ledger, "friday", frequency_cap=(3, "7D"))
        assert loose.send(df.iloc[:2]).accepted == 2  # two messages each so far: under a cap of 3
        summary = campaign(sim, ledger, "saturday", frequency_cap=(3, "7D")).send(df)
        assert summary.skipped_reasons == {"capped": 2} and summary.accepted == 4  # 0-1 had 3 now


class Clock:
    """A fake clock in Phnom Penh time that moves ``step`` seconds at every reading."""

    def __init__(self, start: datetime, step: float = 0.0) -> None:
        self.now, self.step = start, timedelta(seconds=step)

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        return now


def tonight(hour: int, minute: int = 0, second: int = 0) -> datetime:
    """Today (Phnom Penh) at the given time, in the future of the real clock or not."""
    return datetime.now(PHNOM_PENH).replace(hour=hour, minute=minute, second=second, microsecond=0)


def test_quiet_hours_schedule_batch_sends_and_hold_the_others(sim: Simulator, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    df = customers(4, start=300)
    late = Clock(tonight(23, 30))
    opens = (tonight(8) + timedelta(days=1)).astimezone(PHNOM_PENH)
    quiet = campaign(sim, ledger, "night", quiet_hours=("21:00", "08:00"), clock=late)
    dry = quiet.send(df, dry_run=True)
    assert dry.scheduled_for == opens and "would be scheduled for" in str(dry)
    before = len(sim.records())
    summary = quiet.send(df)
    assert summary.accepted == 4 and summary.scheduled_for == opens
    due = {r["due_at"] for r in sim.records(offset=before)}
    assert due == {opens.timestamp()}

    held = campaign(sim, ledger, "night-single", transport="single", quiet_hours="21:00-08:00", clock=late)
    before = len(sim.records())
    summary = held.send(df)
    assert (summary.accepted, summary.retry_later, summary.deferred_until) == (0, 4, opens)
    assert len(sim.records()) == before
    rows = held.to_frame()
    assert set(rows["state"]) == {"planned"} and rows["reason"].str.startswith("quiet hours: not sent before").all()
    morning = campaign(
        sim,
        ledger,
        "night-single",
        transport="single",
        quiet_hours="21:00-08:00",
        clock=Clock(opens + timedelta(minutes=1)),
    )
    assert morning.send(df).accepted == 4


def test_a_send_running_into_quiet_hours_stops_or_schedules_the_rest(sim: Simulator, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    df = customers(60, start=400)
    opens = (tonight(8) + timedelta(days=1)).astimezone(PHNOM_PENH)
    for transport in ("batch", "single"):
        clock = Clock(tonight(20, 59, 45), step=2.0)  # every reading 2 s later: 21:00 comes mid-send
        evening = campaign(
            sim,
            ledger,
            f"evening-{transport}",
            transport=transport,
            quiet_hours=("21:00", "08:00"),
            clock=clock,
            max_recipients=5,
        )
        before = len(sim.records())
        summary = evening.send(df)
        records = sim.records(offset=before)
        now_sent = [r for r in records if r["due_at"] != opens.timestamp()]  # unscheduled: due when received
        assert 0 < len(now_sent) < 60
        if transport == "batch":
            assert summary.accepted == 60 and summary.scheduled_for == opens
            assert len(records) == 60  # every number once: a few now, the rest at the end of the quiet hours
            assert sum(r["due_at"] == opens.timestamp() for r in records) == 60 - len(now_sent)
        else:
            assert len(records) == len(now_sent) == summary.accepted
            assert summary.retry_later == 60 - summary.accepted and summary.deferred_until == opens
            assert evening.status()["planned"] == 60 - summary.accepted


def test_ab_holdout_rows_are_planned_never_sent_and_compared(sim: Simulator, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    templates = {"A": "Offer A for {{ customer_id }}", "B": "Offer B for {{ customer_id }}"}
    df = assign_variants(customers(300, start=1000), templates, holdout=0.2, key="customer_id", seed="spring")
    rendered = render_messages(df, templates, by="variant")
    with CallbackServer(ledger, mode="thread") as receiver:
        ab = campaign(sim, ledger, "spring-ab", receiver=receiver)
        before = len(sim.records())
        summary = ab.send(rendered)
        held = df["variant"].astype(str).eq("holdout")
        assert summary.skipped_reasons == {"holdout": int(held.sum())} and summary.accepted == int((~held).sum())
        assert set(to_numbers(sim, before)) == set(df.loc[~held, "msisdn"])
        assert ab.status()["holdout"] == int(held.sum())
        assert ab.send(rendered).recipients == 0  # rerun: holdout stays held, nothing resent
        wait_for(lambda: ledger.summary("spring-ab")["accepted"] == int((~held).sum()))
    results = collect(rendered, ab)
    assert set(results.loc[held.to_numpy(), "send_state"]) == {"holdout"}
    table = compare_variants(results, "delivered").variants
    assert table.loc["holdout", "n"] == 0 and table.loc[["A", "B"], "n"].sum() == int((~held).sum())
