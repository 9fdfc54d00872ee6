"""send_smpp end to end against the simulator's SMPP port: ledger states, receipts, drops, resume, rerun."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import smpplib.client
import smpplib.consts

from plasgate_nb.errors import TransportError
from plasgate_nb.ledger import Ledger
from plasgate_nb.segments import count_segments
from plasgate_nb.simulator import Account, Fault, Simulator, SimulatorConfig
from plasgate_nb.smpp import SmppConfig
from plasgate_nb.smpp.campaign import send_smpp

KHMER = "សួស្តី! នេះគឺជាសារសាកល្បងពី Plasgate ។ " * 3


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """A thread-mode simulator serving SMPP, simulated time 500x faster so receipts come quickly."""
    accounts = (
        Account(),
        Account(username="lib", password="libpass1", private_key="pk_lib_0001", secret="sk$lib$0001"),
    )
    config = SimulatorConfig(accounts=accounts, seed=3, smpp=True, clock_speed=500)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


class Bar:
    """A stand-in progress bar counting updates."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int) -> None:
        self.n += n


def rows(n: int, start: int) -> pd.DataFrame:
    """n rows with distinct numbers; row 5 is a long Khmer message."""
    texts = [f"Hello {start + i}, your code is {start + i:04d}" for i in range(n)]
    texts[5] = KHMER
    return pd.DataFrame(
        {
            "message_key": [f"k{start + i}" for i in range(n)],
            "msisdn": [f"85512{start + i:06d}" for i in range(n)],
            "content": texts,
        }
    )


def smpp_config(sim: Simulator, **options: Any) -> SmppConfig:
    """A session config for the simulator's default account."""
    creds = sim.credentials
    return SmppConfig(
        port=sim.smpp_port,
        system_id=creds.username,
        password=creds.password,
        **{"window": 10, "response_timeout": 1.0, "reconnect_backoff": 0.05, **options},
    )


def pending_rows(ledger: Ledger, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` the ledger still holds as planned (what Campaign.send would pass)."""
    return frame[frame["message_key"].isin(set(ledger.pending(name)["message_key"]))]


def sent(sim: Simulator, since: int) -> Counter[str]:
    """How many times each number was accepted by the simulator since record ``since``."""
    return Counter(r["to"] for r in sim.records(offset=since) if r["route"] == "smpp")


def test_plan_send_receipts_and_rerun(sim: Simulator, tmp_path: Path) -> None:
    """Every row accepted once with its id, one refused by a fault, final receipts land in the ledger."""
    sim.clear_faults()
    before = len(sim.records())
    frame = rows(40, 0)
    frame.loc[1, "msisdn"] = "85510000001"  # always UNDELIV
    frame.loc[2, "msisdn"] = "85510000002"  # always REJECTD
    ledger = Ledger(tmp_path / "l.db")
    ledger.plan("c", frame)
    sim.set_faults(Fault("error_before", route="smpp", count=1))
    events: list[dict[str, Any]] = []
    bar = Bar()
    counts = send_smpp(
        ledger,
        "c",
        pending_rows(ledger, "c", frame),
        config=smpp_config(sim),
        sender=sim.credentials.sender,
        progress_bar=bar,
        on_event=events.append,
        group_size=15,
        receipt_timeout=15,
    )
    assert counts["accepted"] == 39 and counts["rejected"] == 1 and counts["uncertain"] == 0
    assert bar.n == 40
    msgs = ledger.messages("c").set_index("message_key")
    assert (msgs["state"] == "accepted").sum() == 39
    refused = msgs[msgs["state"] == "rejected"]
    assert refused["reason"].str.contains("ESME_RSYSERR").all()
    record = [r for r in sim.records(offset=before)]
    assert all(r["route"] == "smpp" for r in record) and len(record) == 39
    by_id = {r["message_id"]: r for r in record}
    accepted = msgs[msgs["state"] == "accepted"]
    assert set(accepted["message_id"]) == set(by_id)  # the ids the ledger holds are the gateway's
    assert all(
        by_id[mid]["to"] == frame.set_index("message_key").loc[key, "msisdn"]
        for key, mid in accepted["message_id"].items()
    )
    assert msgs.loc["k5", "state"] == "accepted"  # the fault hit the first submit_sm (k0), not k5
    khmer = by_id[msgs.loc["k5", "message_id"]]
    assert khmer["content"] == KHMER and khmer["segments"] == count_segments(KHMER).segments > 1
    part_ids = msgs.loc["k5", "part_ids"].split(",")  # one ledger row, the ids of all its parts
    assert len(part_ids) == khmer["segments"] and part_ids[-1] == msgs.loc["k5", "message_id"]
    assert len(set(part_ids)) == len(part_ids)
    assert msgs.drop(index="k5")["part_ids"].isna().all()  # one-part messages have no part list
    assert accepted["delivery_status"].notna().all()  # every accepted row got its final receipt
    assert msgs.loc["k1", "delivery_status"] == "UNDELIV" if msgs.loc["k1", "state"] == "accepted" else True
    assert msgs.loc["k2", "delivery_status"] == "REJECTD" if msgs.loc["k2", "state"] == "accepted" else True
    assert counts["receipts"] >= 39 and {e["source"] for e in events} == {"smpp"}
    # rerun: nothing is planned any more, nothing is sent
    again = send_smpp(
        ledger, "c", pending_rows(ledger, "c", frame), config=smpp_config(sim), sender=sim.credentials.sender
    )
    assert again["accepted"] == 0 and len(sim.records()) == before + 39


def test_dropped_connection_reconnects_and_nothing_is_sent_twice(sim: Simulator, tmp_path: Path) -> None:
    """Drops after accepting make rows uncertain (not resent); the session reconnects and finishes."""
    before = len(sim.records())
    frame = rows(60, 1000)
    ledger = Ledger(tmp_path / "l.db")
    ledger.plan("d", frame)
    sim.set_faults(Fault("drop_after", route="smpp", count=2))
    counts = send_smpp(
        ledger,
        "d",
        pending_rows(ledger, "d", frame),
        config=smpp_config(sim),
        sender=sim.credentials.sender,
        group_size=20,
    )
    sim.clear_faults()
    assert counts["uncertain"] >= 2 and counts["accepted"] + counts["uncertain"] == 60
    summary = ledger.summary("d")
    assert summary["uncertain"] == counts["uncertain"] and summary["planned"] == 0
    times = sent(sim, before)
    assert max(times.values()) == 1  # at most once each
    msgs = ledger.messages("d")
    assert set(msgs.loc[msgs["state"] == "accepted", "msisdn"]) <= set(times)
    assert len(pending_rows(ledger, "d", frame)) == 0  # a rerun has nothing to send
    assert (
        send_smpp(
            ledger, "d", pending_rows(ledger, "d", frame), config=smpp_config(sim), sender=sim.credentials.sender
        )["accepted"]
        == 0
    )
    assert sent(sim, before) == times


def test_lost_session_leaves_rows_planned_and_resume_sends_each_once(tmp_path: Path) -> None:
    """In process mode: a drop with no reconnect raises; the unsent rows stay planned and the next send
    (faults cleared) sends exactly those: each number reaches the simulator at most once."""
    with Simulator(SimulatorConfig(seed=4, smpp=True), mode="process") as sim:
        frame = rows(80, 2000)
        ledger = Ledger(tmp_path / "l.db")
        ledger.plan("r", frame)
        sim.set_faults(Fault("drop_after", route="smpp", count=1))
        with pytest.raises(TransportError):
            send_smpp(
                ledger,
                "r",
                pending_rows(ledger, "r", frame),
                config=smpp_config(sim, reconnect_attempts=0),
                sender=sim.credentials.sender,
                group_size=20,
            )
        first = ledger.summary("r")
        assert first["planned"] > 0 and first["uncertain"] >= 1 and first["submitting"] == 0
        sim.clear_faults()
        ledger.resume("r")
        counts = send_smpp(
            ledger,
            "r",
            pending_rows(ledger, "r", frame),
            config=smpp_config(sim),
            sender=sim.credentials.sender,
            group_size=20,
        )
        assert counts["accepted"] == first["planned"]
        final = ledger.summary("r")
        assert final["planned"] == 0 and final["accepted"] + final["uncertain"] == 80
        times = sent(sim, 0)
        assert max(times.values()) == 1
        assert set(ledger.messages("r").query("state == 'accepted'")["msisdn"]) <= set(times)


def test_replies_reach_on_event_and_the_ledger(sim: Simulator, tmp_path: Path) -> None:
    """A handset's reply (deliver_sm without the receipt flag) is handed to on_event and stored."""
    sim.clear_faults()
    sim.reply("85512777001", "STOP please")  # held by the simulator until the session binds
    frame = rows(6, 3000)
    ledger = Ledger(tmp_path / "l.db")
    ledger.plan("m", frame)
    seen: list[dict[str, Any]] = []
    counts = send_smpp(
        ledger,
        "m",
        frame,
        config=smpp_config(sim),
        sender=sim.credentials.sender,
        on_event=seen.append,
        receipt_timeout=10,
    )
    replies = [e for e in seen if e.get("kind") == "mo"]
    assert counts["replies"] == 1 and len(replies) == 1
    assert (replies[0]["msisdn"], replies[0]["text"], replies[0]["to"]) == ("85512777001", "STOP please", "SMS Info")
    assert counts["accepted"] == 6 and ledger.summary("m")["accepted"] == 6
    stored = ledger.replies("m")
    assert stored[["msisdn", "destination", "text"]].values.tolist() == [["85512777001", "SMS Info", "STOP please"]]
    assert ledger.events("m")["source"].eq("smpp").all()  # a reply is not a delivery event


def test_smpplib_client_binds_submits_and_gets_the_receipt(sim: Simulator) -> None:
    """python-smpplib's own client against the integrated SMPP port: bind, submit_sm, receipt.

    smpplib cuts passwords to 8 characters (SMPP v3.4's 9 octets with the NUL), so this account has one
    that short; Plasgate allows up to 30.
    """
    sim.clear_faults()
    creds = sim.credentials_for("lib")
    got: dict[str, Any] = {}

    def on_sent(pdu: Any) -> None:
        got["message_id"] = pdu.message_id.decode()

    def on_message(pdu: Any) -> int:
        got["receipt"] = pdu.short_message.decode()
        return 0

    client = smpplib.client.Client("127.0.0.1", sim.smpp_port, timeout=5, allow_unknown_opt_params=True)
    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_message)
    client.connect()
    try:
        client.bind_transceiver(system_id=creds.username, password=creds.password)
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr=creds.sender,
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            destination_addr="85512999001",
            short_message=b"Hello from smpplib",
            registered_delivery=1,
        )
        for _ in range(20):
            client.read_once()
            if "receipt" in got:
                break
        client.unbind()
    finally:
        client.disconnect()
    assert got["message_id"] in got["receipt"] and "stat:" in got["receipt"]
    record = [r for r in sim.records() if r["message_id"] == got["message_id"]]
    assert len(record) == 1 and record[0]["route"] == "smpp" and record[0]["content"] == "Hello from smpplib"


def test_campaign_with_smpp_transport_sends_once_and_collects_receipts(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from plasgate_nb.campaign import Campaign
    from plasgate_nb.gateway import Gateway

    frame = rows(12, 7000).set_index("message_key")
    frame.loc["k7003", "content"] = "Your code #ma#SECRET7003#ma# is ready"
    gateway = Gateway(base_url=sim.url, sender=sim.credentials.sender)
    ledger = Ledger(tmp_path / "campaign.db")
    campaign = Campaign(
        "smpp-campaign",
        gateway=gateway,
        ledger=ledger,
        transport="smpp",
        smpp=smpp_config(sim),
        receipt_timeout=5.0,
        progress=False,
    )
    before = len(sim.records())
    summary = campaign.send(frame)
    assert (summary.accepted, summary.rejected, summary.uncertain) == (12, 0, 0)
    assert sent(sim, before) == Counter(frame["msisdn"])
    assert campaign.send(frame).recipients == 0
    assert sent(sim, before) == Counter(frame["msisdn"])
    results = campaign.collect(frame)
    assert results["send_state"].eq("accepted").all()
    assert results["delivery_status"].notna().sum() >= 10
    masked = next(r for r in sim.records(offset=before) if r["to"] == frame.loc["k7003", "msisdn"])
    assert masked["delivered_text"] == "Your code SECRET7003 is ready"  # markers never reach the handset
    assert "SMPP carries the handset text" in caplog.text  # and the user is told masking does not apply
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("campaign.db*"))
    assert b"SECRET7003" not in stored


def test_campaign_refuses_smpp_without_a_session_config(tmp_path: Path) -> None:
    from plasgate_nb.campaign import Campaign
    from plasgate_nb.errors import ConfigError
    from plasgate_nb.gateway import Gateway

    with pytest.raises(ConfigError, match="SmppConfig"):
        Campaign("x", gateway=Gateway(private_key="k", secret="s"), ledger=tmp_path / "l.db", transport="smpp")


def test_campaign_stores_a_recipients_reply_sent_while_bound(sim: Simulator, tmp_path: Path) -> None:
    """Campaign over SMPP: a recipient replies while the session waits for receipts; campaign.replies()
    shows it (Khmer intact), and the reply is filed once even though the session sends nothing more."""
    import threading

    from plasgate_nb.campaign import Campaign
    from plasgate_nb.gateway import Gateway

    sim.clear_faults()
    frame = rows(8, 8000).set_index("message_key")
    frame.loc["k8007", "msisdn"] = "85510000004"  # never a final receipt: the session stays bound
    answer = "បាទ/ចាស, I want the offer"
    gateway = Gateway(base_url=sim.url, sender=sim.credentials.sender)
    campaign = Campaign(
        "smpp-replies",
        gateway=gateway,
        ledger=Ledger(tmp_path / "r.db"),
        transport="smpp",
        smpp=smpp_config(sim),
        receipt_timeout=3.0,
        progress=False,
    )
    before = len(sim.records())
    replied = threading.Event()

    def reply_once_sent() -> None:
        """Wait until the simulator has accepted all 8 messages, then make the first recipient answer."""
        for _ in range(500):
            if len(sent(sim, before)) == 8:
                sim.reply(str(frame["msisdn"].iloc[0]), answer)
                replied.set()
                return
            threading.Event().wait(0.01)

    helper = threading.Thread(target=reply_once_sent, name="test-replier")
    helper.start()
    try:
        summary = campaign.send(frame)
    finally:
        helper.join(10)
    assert replied.is_set() and summary.accepted == 8
    got = campaign.replies()
    assert len(got) == 1
    assert (got["msisdn"].iloc[0], got["text"].iloc[0], got["destination"].iloc[0]) == (
        frame["msisdn"].iloc[0],
        answer,
        sim.credentials.sender,
    )
    assert got["data_coding"].iloc[0] == 8 and got["campaign"].iloc[0] == "smpp-replies"
    assert campaign.ledger.replies("smpp-campaign").empty  # filed under the campaign that was sending
