"""One definition of final and intermediate delivery states (plasgate_nb._states), and every reader using it:
the ledger, collect, summaries, charts, wait_for_reports and the SMPP campaign, over real sockets against the
simulator (which sends intermediate reports and SMSC refusals by default), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from plasgate_nb import _states
from plasgate_nb.callbacks import CallbackServer
from plasgate_nb.campaign import Campaign
from plasgate_nb.charts import plot_delivery_rate, plot_funnel, plot_status_breakdown, plot_time_to_deliver
from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect, delivery_summary, outcome, wait_for_reports
from plasgate_nb.simulator import Simulator, SimulatorConfig
from plasgate_nb.simulator.config import Carrier, DeliveryModel, RateLimits
from plasgate_nb.smpp import SmppConfig
from tests.conftest import gateway_for
from tests.test_ledger import url  # noqa: F401  (the SQLite / PostgreSQL fixture)

UNKNOWN_THEN_DELIVRD = "85510000006"
ENROUTE_THEN_DELIVRD = "85510000008"
REFUSED = "85510000005"  # the SMSC refuses it: level-1 ESME_RINVDSTADR and no level 2 / submit_sm_resp error
UNDELIV = "85510000001"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """A simulator serving HTTP and SMPP, its clock 50x faster (receipts within a second or so); numbers
    855 12... are always delivered at once, the special numbers 85510000001-8 meet their documented fate."""
    sure = Carrier("cellcard", ("12",), undeliverable=0, expired=0, rejected=0, refused=0, interim=0, median_latency=1)
    config = SimulatorConfig(
        seed=5,
        smpp=True,
        clock_speed=50,
        rate_limits=RateLimits.off(),
        callback_retry_delay=0.1,
        delivery=DeliveryModel(carriers=(sure, *DeliveryModel().carriers[:1])),
    )
    with Simulator(config, mode="thread") as simulator:
        yield simulator


def audience(*numbers: str) -> pd.DataFrame:
    """One row per number, keyed by the index."""
    return pd.DataFrame(
        {"msisdn": list(numbers), "content": [f"Hello {i}" for i in range(len(numbers))]},
        index=pd.Index([f"c{i}" for i in range(len(numbers))], name="customer"),
    )


def axes() -> object:
    """Fresh Axes on a Figure made without pyplot."""
    return Figure(figsize=(7, 4), layout="constrained").subplots()


# -- the table ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("DELIVRD", None, "final-good"),
        ("UNDELIV", "001", "final-bad"),
        ("REJECTD", None, "final-bad"),
        ("EXPIRED", None, "final-bad"),
        ("DELETED", None, "final-bad"),
        ("UNKNOWN", None, "intermediate"),
        ("ENROUTE", None, "intermediate"),
        ("ACCEPTD", None, "intermediate"),
        ("ESME_ROK", None, "intermediate"),
        ("ESME_RINVDSTADR", None, "final-bad"),  # a level-1 refusal
        (None, "ESME_RINVDSTADR", "final-bad"),  # a row refused by the SMSC: no level 2, its code
        ("UNKNOWN", "ESME_RINVDSTADR", "final-bad"),  # a late intermediate report does not undo it
        (None, "ERRBACK", "final-bad"),
        (None, "001", None),
        ("not requested", None, "none-requested"),
        (None, None, None),
    ],
)
def test_one_table_of_kinds(status: str | None, code: str | None, expected: str | None) -> None:
    assert _states.kind(status, error_code=code) == expected
    assert _states.is_final(status, error_code=code) == (expected in ("final-good", "final-bad"))
    vector = _states.row_kinds(pd.Series([status], dtype=object), pd.Series([code], dtype=object))
    assert list(vector) == [expected]


def test_every_module_uses_the_one_definition() -> None:
    """The ledger and the DLR parser share the table; the SMPP receipt no longer takes UNKNOWN as final."""
    from plasgate_nb import _dlr, ledger
    from plasgate_nb.smpp import receipts

    assert ledger.FINAL_STATUSES is _states.FINAL_STATUSES
    assert _dlr.LEVEL2_STATUSES is _states.LEVEL2_STATUSES
    assert not hasattr(receipts, "FINAL_STATES") and not hasattr(_dlr, "FINAL_STATUSES")
    assert {"DELIVRD", "UNDELIV", "REJECTD", "EXPIRED", "DELETED"} == _states.FINAL_STATUSES
    assert {"UNKNOWN", "ENROUTE", "ACCEPTD"} == _states.INTERMEDIATE


# -- SMPP: UNKNOWN then DELIVRD ends DELIVRD; a refused number is a final failure -------------------------


def test_smpp_campaign_waits_past_intermediate_receipts_and_fails_refusals(sim: Simulator, url: str) -> None:  # noqa: F811
    """UNKNOWN / ENROUTE receipts do not end the wait: the DELIVRD that follows is recorded; a number the
    SMSC refuses (submit_sm_resp ESME_RINVDSTADR) is failed with that code, and the wait is over."""
    df = audience(UNKNOWN_THEN_DELIVRD, ENROUTE_THEN_DELIVRD, REFUSED, UNDELIV)
    creds = sim.credentials
    smpp = SmppConfig(port=sim.smpp_port, system_id=creds.username, password=creds.password, response_timeout=2.0)
    with Ledger(url) as ledger:
        campaign = Campaign(
            "smpp-states",
            gateway=gateway_for(sim),
            ledger=ledger,
            transport="smpp",
            smpp=smpp,
            receipt_timeout=20.0,
            progress=False,
        )
        summary = campaign.send(df)
        assert (summary.accepted, summary.rejected) == (3, 1)
        out = collect(df, campaign)
        assert out["delivery_status"].tolist()[:2] == ["DELIVRD", "DELIVRD"]  # not the UNKNOWN / ENROUTE before
        events = ledger.events("smpp-states")
        assert {"UNKNOWN", "ENROUTE"} <= set(events["status"])  # the intermediate receipts did come first
        assert out.loc["c2", "send_state"] == "rejected" and out.loc["c2", "error_code"] == "ESME_RINVDSTADR"
        assert outcome(out).tolist() == ["delivered", "delivered", "failed", "failed"]
        counts = wait_for_reports(campaign, timeout=30, until=1.0, progress=False)
        assert counts["done"] and (counts["delivered"], counts["failed"], counts["pending"]) == (2, 1, 0)


# -- HTTP: a level-1 ESME error is failed, and waiting for every report ends -----------------------------


def test_http_level1_refusal_is_failed_and_the_wait_ends(sim: Simulator, url: str) -> None:  # noqa: F811
    df = audience(REFUSED, UNKNOWN_THEN_DELIVRD, "85512345671")
    with Ledger(url) as ledger, CallbackServer(ledger, mode="thread") as receiver:
        campaign = Campaign(
            "http-states",
            gateway=gateway_for(sim),
            ledger=ledger,
            transport="single",
            receiver=receiver,
            progress=False,
        )
        assert campaign.send(df).accepted == 3
        counts = wait_for_reports(campaign, timeout=30, until=1.0, poll=0.05, progress=False)
        assert counts["done"] and counts["share"] == 1.0
        assert (counts["delivered"], counts["failed"], counts["pending"]) == (2, 1, 0)
        out = collect(df, campaign)
    assert out.loc["c0", "send_state"] == "accepted" and pd.isna(out.loc["c0", "delivery_status"])
    assert out.loc["c0", "error_code"] == "ESME_RINVDSTADR"
    assert out.loc["c1", "delivery_status"] == "DELIVRD"  # its UNKNOWN came first and did not end the wait
    assert outcome(out).tolist() == ["failed", "delivered", "delivered"]
    summary = delivery_summary(out).loc["all"]
    assert (summary["failed"], summary["pending"], summary["status_ESME_RINVDSTADR"]) == (1, 0, 1)
    ax = plot_status_breakdown(out, ax=axes())
    assert "ESME_RINVDSTADR (refused by the SMSC)" in [t.get_text() for t in ax.get_legend().get_texts()]


# -- a batch errback: rejected, failed with its code, never pending ---------------------------------------


def test_errback_after_the_200_is_a_final_failure(url: str) -> None:  # noqa: F811
    df = audience("85512345601", "85512345602")
    with Ledger(url) as ledger:
        ledger.plan("eb", pd.DataFrame({"message_key": df.index, "msisdn": df["msisdn"], "content": df["content"]}))
        ledger.mark_submitting("eb", list(df.index), batch_id="b1")
        ledger.settle("eb", list(df.index), state="accepted", queue_id="Q1", status=200)  # the 200 comes first
        text = 'HTTPAPI error: Error "No route found"'
        errback = {"source": "errback", "campaign": "eb", "queue_id": "Q1", "msisdn": "85512345602", "error": text}
        ledger.record_events([errback])
        out = collect(df, (ledger, "eb"))
        assert out.loc["c1", "send_state"] == "rejected" and out.loc["c1", "reason"] == text
        assert out.loc["c1", "error_code"] == "ERRBACK"
        assert outcome(out).tolist() == ["pending", "failed"]
        counts = wait_for_reports((ledger, "eb"), timeout=0, until=1.0, progress=False)
        assert (counts["accepted"], counts["pending"]) == (1, 1)  # only the accepted row is awaited
        ledger.record_events([{"source": "dlr", "message_id": "gw-0", "level": 2, "status": "DELIVRD"}])
        ledger.settle("eb", ["c0"], state="accepted", message_ids={"c0": "gw-0"})
        counts = wait_for_reports((ledger, "eb"), timeout=5, until=1.0, progress=False)
        assert counts["done"] and (counts["delivered"], counts["pending"]) == (1, 0)


# -- no reports requested: "not requested", never 0% ------------------------------------------------------


def test_campaign_without_reports_shows_not_requested(sim: Simulator, url: str) -> None:  # noqa: F811
    df = audience("85512345611", "85512345612", "85592345613").assign(city=["Kampot", "Kampot", "Takeo"])
    with Ledger(url) as ledger:
        campaign = Campaign("no-dlr", gateway=gateway_for(sim), ledger=ledger, transport="single", progress=False)
        assert campaign.send(df).accepted == 3
        counts = wait_for_reports(campaign, timeout=30, until=1.0, progress=False)
        out = collect(df, campaign)
    assert counts["done"] and counts["waited_s"] < 5 and (counts["not_requested"], counts["pending"]) == (3, 0)
    assert out["delivery_status"].tolist() == ["not requested"] * 3
    assert outcome(out).tolist() == ["not_requested"] * 3
    summary = delivery_summary(out, "city")
    assert summary["delivery"].tolist() == ["not requested", "not requested"]
    assert summary["delivered_rate"].isna().all() and (summary["not_requested"] == [2, 1]).all()
    assert (summary["sent"] == [2, 1]).all() and (summary["delivered"] == 0).all()
    rate = plot_delivery_rate(out, "city", ax=axes())
    assert [p.get_height() for p in rate.patches] == [0.0, 0.0]  # no bar at all, and no "0.0%"
    assert [t.get_text() for t in rate.texts] == ["not requested\nn=2", "not requested\nn=1"]
    funnel = plot_funnel(out, ax=axes())
    assert funnel.texts[-1].get_text() == "delivery reports not requested"
    breakdown = plot_status_breakdown(out, "city", ax=axes())
    assert [t.get_text() for t in breakdown.get_legend().get_texts()] == ["delivery reports not requested"]
    timing = plot_time_to_deliver(out, ax=axes())
    assert [t.get_text() for t in timing.texts] == ["delivery reports not requested"]


# -- awaiting reports: pending, not a 0% bar ---------------------------------------------------------------


def test_rows_awaiting_reports_are_pending_not_zero_percent(url: str) -> None:  # noqa: F811
    df = audience("85512345621", "85512345622", "85512345623").assign(city=["Kampot", "Kampot", "Takeo"])
    with Ledger(url) as ledger:
        ledger.open_campaign("waiting")
        ledger.update_settings("waiting", {"reports": True})
        ledger.plan("waiting", pd.DataFrame({"message_key": df.index, "msisdn": df["msisdn"], "content": "x"}))
        ledger.mark_submitting("waiting", list(df.index), batch_id="b")
        ledger.settle("waiting", list(df.index), state="accepted", message_ids={k: f"id-{k}" for k in df.index})
        ledger.record_events([{"source": "dlr", "message_id": "id-c0", "level": 2, "status": "UNKNOWN"}])
        out = collect(df, (ledger, "waiting"))
    assert outcome(out).tolist() == ["pending"] * 3  # an UNKNOWN report is not an outcome
    summary = delivery_summary(out, "city")
    assert summary["delivery"].tolist() == ["awaiting reports", "awaiting reports"]
    assert (summary["pending"] == [2, 1]).all() and (summary["failed"] == 0).all()
    ax = plot_delivery_rate(out, "city", ax=axes())
    delivered, waiting = ax.containers[1].patches, ax.containers[2].patches
    assert [p.get_height() for p in delivered] == [0.0, 0.0]
    assert [p.get_height() for p in waiting] == [100.0, 100.0]  # drawn as awaiting, the whole bar
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["awaiting reports\nn=2", "awaiting reports\nn=1"] and not any("0.0%" in t for t in texts)
    assert plot_funnel(out, ax=axes()).texts[-1].get_text() == "0 (0%); 3 awaiting reports"


# -- times -------------------------------------------------------------------------------------------------


def test_done_at_is_never_before_submitted_at(url: str) -> None:  # noqa: F811
    """Jasmin's done date is to the minute: the minute's start can precede our submission time."""
    df = audience("85512345631", "85512345632")
    with Ledger(url) as ledger:
        ledger.plan("times", pd.DataFrame({"message_key": df.index, "msisdn": df["msisdn"], "content": "x"}))
        ledger.mark_submitting("times", list(df.index), batch_id="b")
        ledger.settle("times", list(df.index), state="accepted", message_ids={k: f"t-{k}" for k in df.index})
        submitted = ledger.messages("times").set_index("message_key")["submitted_at"]
        minute = submitted["c0"].floor("min").to_pydatetime()
        later = (submitted["c1"] + pd.Timedelta(seconds=90)).floor("min").to_pydatetime()
        ledger.record_events(
            [
                {"source": "dlr", "message_id": "t-c0", "level": 2, "status": "DELIVRD", "done_at": minute},
                {"source": "dlr", "message_id": "t-c1", "level": 2, "status": "UNDELIV", "done_at": later},
            ]
        )
        out = collect(df, (ledger, "times"))
    assert (out["done_at"] >= out["submitted_at"]).all() and (out["delivered_at"].dropna() >= submitted["c0"]).all()
    assert minute <= submitted["c0"] and out.loc["c0", "done_at"] == submitted["c0"]  # the minute began before
    assert out.loc["c1", "done_at"] == pd.Timestamp(later)  # a later done date is kept as reported


def test_ledger_keeps_a_refusal_over_a_late_intermediate_report(url: str) -> None:  # noqa: F811
    """A level-1 ESME error is final: a late intermediate level-2 report leaves the row failed."""
    with Ledger(url) as ledger:
        ledger.plan("late", pd.DataFrame({"message_key": ["k"], "msisdn": ["85512345641"], "content": ["x"]}))
        ledger.mark_submitting("late", ["k"], batch_id="b")
        ledger.settle("late", ["k"], state="accepted", message_ids={"k": "m-k"})
        ledger.record_events([{"source": "dlr", "message_id": "m-k", "level": 1, "status": "ESME_RINVDSTADR"}])
        ledger.record_events([{"source": "dlr", "message_id": "m-k", "level": 2, "status": "ENROUTE"}])
        row = ledger.messages("late").iloc[0]
        assert (row["delivery_status"], row["error_code"]) == ("ENROUTE", "ESME_RINVDSTADR")
        counts = wait_for_reports((ledger, "late"), timeout=0, until=1.0, progress=False)
        assert counts["done"] and counts["failed"] == 1


def test_simulator_record_matches_the_tables_kinds() -> None:
    """Every outcome the simulator can draw ends in a final kind (or none for NEVER), by the same table."""
    from plasgate_nb.simulator.delivery import FINAL_STATUS, INTERIM_STATUS

    assert all(_states.kind(status) in ("final-good", "final-bad") for status, _ in FINAL_STATUS.values())
    assert all(_states.kind(status) == "intermediate" for status, _ in INTERIM_STATUS.values())
    assert np.isin(list(INTERIM_STATUS), list(FINAL_STATUS)).all()


def test_update_settings_merges_and_unknown_campaigns_read_none(tmp_path: Path) -> None:
    with Ledger(tmp_path / "s.db") as ledger:
        assert ledger.campaign_settings("nope") is None
        ledger.open_campaign("c", settings={"transport": "batch"})
        assert ledger.update_settings("c", {"reports": False, "password": "x"}) == {
            "transport": "batch",
            "reports": False,
        }
        assert ledger.campaign_settings("c") == {"transport": "batch", "reports": False}
