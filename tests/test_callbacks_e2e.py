"""End to end over real sockets: simulator -> callback receiver -> ledger -> ``collect``.

Every DLR level (1, 2, 3) and method (GET, POST), personalized rows (each with its own ``dlr_url``)
and grouped content (paired with its row by the batch callback), duplicate, out-of-order and early
reports, a receiver that was down while the gateway retried, a forged report, and an uncertain row
settled by its batch callback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from plasgate_nb._keys import key_digest
from plasgate_nb.callbacks import ACK, CallbackServer, callback_urls
from plasgate_nb.campaign import Campaign
from plasgate_nb.gateway import Gateway
from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect
from plasgate_nb.simulator import Fault, Simulator, SimulatorConfig
from plasgate_nb.simulator.config import RateLimits
from tests.conftest import gateway_for

FINAL = {"DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED"}
# what the ledger must show at level 2 for each simulated outcome (None: no final report comes)
EXPECTED_LEVEL2 = {
    "DELIVRD": "DELIVRD",
    "UNDELIV": "UNDELIV",
    "EXPIRED": "EXPIRED",
    "REJECTD": "REJECTD",
    "DELETED": "DELETED",
    "UNKNOWN_THEN_DELIVRD": "DELIVRD",
    "ENROUTE_THEN_DELIVRD": "DELIVRD",
    "NEVER": None,
    "ESME_RINVDSTADR": None,
}
_block = iter(range(100, 1000))


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=11, rate_limits=RateLimits.off(), callback_retry_delay=0.1, callback_retries=3)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


@pytest.fixture
def gateway(sim: Simulator) -> Gateway:
    sim.clear_faults()
    sim.set_clock_speed(1.0)
    return gateway_for(sim, read_timeout=2.0, max_retry_wait=1.0, default_retry_after=0.2)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "e2e.db")
    yield led
    led.close()


def audience(personal: int = 6, grouped: int = 6) -> pd.DataFrame:
    """Personalized rows (distinct text) then grouped rows (one shared text), each with its own number."""
    block = next(_block)
    n = personal + grouped
    content = [f"Hi #{i}, your code #ma#C{i}#ma#" for i in range(personal)] + ["Same offer for all"] * grouped
    return pd.DataFrame(
        {"msisdn": [f"85512{block:03d}{i:03d}" for i in range(n)], "content": content},
        index=pd.Index([f"cust{block}-{i}" for i in range(n)], name="customer"),
    )


def settle_reports(sim: Simulator) -> None:
    """Let every receipt fall due (EXPIRED comes after 600 simulated seconds) and be thrown and ACKed."""
    sim.advance(700)
    sim.wait_idle(timeout=20)


def outcomes(sim: Simulator, ids: pd.Series) -> dict[str, str]:
    """The simulator's outcome of each gateway message id in ``ids``."""
    wanted = set(ids.dropna())
    return {r["message_id"]: r["outcome"] for r in sim.records() if r["message_id"] in wanted}


def check_level2(result: pd.DataFrame, sim: Simulator) -> None:
    """Every row is accepted with its id, and shows the final status the gateway reported."""
    assert (result["send_state"] == "accepted").all()
    assert result["message_id"].notna().all()
    truth = outcomes(sim, result["message_id"])
    assert len(truth) == len(result)
    for mid, status in zip(result["message_id"], result["delivery_status"], strict=True):
        expected = EXPECTED_LEVEL2[truth[mid]]
        assert (None if pd.isna(status) else status) == expected, (mid, truth[mid], status)


@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_level_and_method_lands_in_the_frame(
    sim: Simulator, gateway: Gateway, ledger: Ledger, level: int, method: str
) -> None:
    df = audience()
    with CallbackServer(ledger, mode="thread") as receiver:
        campaign = Campaign(
            f"e2e-{level}-{method}",
            gateway=gateway,
            ledger=ledger,
            receiver=receiver,
            dlr_level=level,
            dlr_method=method,
            progress=False,
        )
        summary = campaign.send(df)
        assert summary.accepted == len(df)
        settle_reports(sim)
    result = collect(df, campaign)
    assert list(result.index) == list(df.index) and "delivery_status" not in df.columns  # df untouched
    events = ledger.events(campaign.name)
    grouped = df.index[6:]
    # a batch callback per recipient: the only source of the grouped rows' ids
    assert (events["source"] == "batch").sum() == len(df)
    assert result.loc[grouped, "message_id"].notna().all()
    rows = ledger.messages(campaign.name).set_index("message_key")
    if level == 1:
        assert set(events.loc[events["source"] == "dlr", "level"]) == {1}
        truth = outcomes(sim, result["message_id"])
        for key, mid in result["message_id"].items():
            expected = "ESME_RINVDSTADR" if truth[mid] == "ESME_RINVDSTADR" else "ESME_ROK"
            assert rows.loc[key, "delivery_level1_status"] == expected
        assert result["delivery_status"].isna().all()
    else:
        check_level2(result, sim)
        levels = set(events.loc[events["source"] == "dlr", "level"])
        assert levels == ({1, 2} if level == 3 else {2})
        if level == 3:  # level 1 kept apart from level 2
            assert rows["delivery_level1_status"].notna().all()
    # each (id, level, status) once
    dlrs = events[events["source"] == "dlr"]
    assert not dlrs.duplicated(["message_id", "level", "status"]).any()


@pytest.mark.parametrize("kind", ["duplicate_callbacks", "out_of_order_callbacks", "callbacks_before_response"])
def test_duplicate_out_of_order_and_early_reports(sim: Simulator, gateway: Gateway, ledger: Ledger, kind: str) -> None:
    df = audience()
    sim.set_faults(Fault(kind, route="batch"))
    with CallbackServer(ledger, mode="thread") as receiver:
        campaign = Campaign(
            f"e2e-{kind}", gateway=gateway, ledger=ledger, receiver=receiver, dlr_level=3, progress=False
        )
        assert campaign.send(df).accepted == len(df)
        settle_reports(sim)
    result = collect(df, campaign)
    check_level2(result, sim)
    events = ledger.events(campaign.name)
    assert not events.duplicated(["source", "message_id", "level", "status"]).any()
    assert (events["source"] == "batch").sum() == len(df)
    truth = outcomes(sim, result["message_id"])
    level2 = events[(events["source"] == "dlr") & (events["level"] == 2) & events["status"].isin(FINAL)]
    expected_finals = sum(EXPECTED_LEVEL2[o] is not None for o in truth.values())
    assert len(level2) == expected_finals  # duplicates stored once
    rows = ledger.messages(campaign.name).set_index("message_key")
    # level 1 arriving after level 2 (out of order) neither hides nor replaces the final status
    assert rows["delivery_level1_status"].notna().all()


def test_reports_sent_while_the_receiver_was_down_land_after_it_restarts(
    sim: Simulator, gateway: Gateway, ledger: Ledger
) -> None:
    df = audience(personal=3, grouped=3)
    receiver = CallbackServer(ledger, mode="thread").start()
    port = int(receiver.url.rsplit(":", 1)[1])
    campaign = Campaign("e2e-down", gateway=gateway, ledger=ledger, receiver=receiver, dlr_level=2, progress=False)
    sim.set_clock_speed(0.001)  # simulated time stands (almost) still: retries wait for advance()
    given_up_before = sim.state()["callbacks"]["given_up"]
    try:
        receiver.stop()  # down before the gateway sends anything back
        assert campaign.send(df).accepted == len(df)
        sim.advance(60)  # receipts and batch callbacks fall due and fail: connection refused
        # the failed attempts are rescheduled asynchronously: wait until every one has been tried and queued
        deadline = time.monotonic() + 20
        state = sim.state()
        while (state["in_flight"] or not state["callbacks"]["retried"]) and time.monotonic() < deadline:
            time.sleep(0.02)
            state = sim.state()
        # retries are pending (on the heap or in the ready queue), none given up
        assert state["callbacks"]["retried"] > 0 and not state["idle"]
        assert state["callbacks"]["given_up"] == given_up_before
        assert ledger.events(campaign.name).empty
        with CallbackServer(ledger, port=port, mode="thread") as again:
            assert again.url == receiver.url  # the same URL the gateway was told
            sim.advance(1)  # the retries fire
            sim.wait_idle(timeout=20)
    finally:
        receiver.stop()
        sim.set_clock_speed(1.0)
    result = collect(df, campaign)
    check_level2(result, sim)


def test_forged_report_without_the_token_changes_nothing(sim: Simulator, gateway: Gateway, ledger: Ledger) -> None:
    df = audience(personal=2, grouped=0)
    with CallbackServer(ledger, mode="thread") as receiver:
        campaign = Campaign(
            "e2e-forged", gateway=gateway, ledger=ledger, receiver=receiver, dlr_level=2, progress=False
        )
        campaign.send(df)
        settle_reports(sim)
        before = collect(df, campaign)
        key = df.index[0]
        mid = before.loc[key, "message_id"]
        forged = {"id": mid, "level": "2", "message_status": "REJECTD", "err": "099"}
        info = campaign.info
        good = callback_urls(receiver.public_url, info.id, info.token)["dlr_url"].format(key=key_digest(key))
        for url in (
            good.replace(info.token, "not-the-token"),
            good.replace(f"/{info.token}/", "/"),
            callback_urls(receiver.public_url, info.id, "x" * len(info.token))["dlr_url"].format(key=key_digest(key)),
        ):
            answer = httpx.post(url, data=forged)
            assert answer.status_code in (403, 404) and answer.text != ACK
        events_before = len(ledger.events(campaign.name))
    after = collect(df, campaign)
    pd.testing.assert_frame_equal(after, before)
    assert len(ledger.events(campaign.name)) == events_before


def test_uncertain_rows_are_settled_by_their_batch_callbacks(sim: Simulator, gateway: Gateway, ledger: Ledger) -> None:
    df = audience(personal=0, grouped=5)
    receiver = CallbackServer(ledger, mode="thread").start()
    port = int(receiver.url.rsplit(":", 1)[1])
    campaign = Campaign("e2e-uncertain", gateway=gateway, ledger=ledger, receiver=receiver, dlr_level=2, progress=False)
    sim.set_faults(Fault("drop_after", route="batch", count=1))  # accepted, then the answer is lost
    sim.set_clock_speed(0.001)  # callbacks that fail wait for advance() to be retried
    try:
        receiver.stop()  # the batch callbacks cannot land before the send settles the rows
        summary = campaign.send(df)
        assert summary.uncertain == len(df)
        rows = ledger.messages(campaign.name)
        assert set(rows["state"]) == {"uncertain"} and rows["message_id"].isna().all()
        with CallbackServer(ledger, port=port, mode="thread"):
            settle_reports(sim)
    finally:
        receiver.stop()
        sim.set_clock_speed(1.0)
    result = collect(df, campaign)
    check_level2(result, sim)  # accepted, with the ids the batch callbacks carried
    sent: dict[str, Any] = {r["to"]: r["message_id"] for r in sim.records() if r["to"] in set(df["msisdn"])}
    assert dict(zip(df["msisdn"], result["message_id"], strict=True)) == sent
