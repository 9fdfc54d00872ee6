"""The Simulator's integrated SMPP port: shared accounts, balance, record and faults (route 'smpp')."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plasgate_nb.errors import PlasgateError, Rejected
from plasgate_nb.simulator import Fault, Simulator, SimulatorConfig
from plasgate_nb.smpp import SmppClient, pdu


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """A thread-mode simulator serving SMPP beside HTTP."""
    with Simulator(SimulatorConfig(seed=5, smpp=True), mode="thread") as simulator:
        yield simulator


def client(sim: Simulator, **options: object) -> SmppClient:
    """A blocking client bound with the default account's HTTP API login."""
    creds = sim.credentials
    return SmppClient(
        port=sim.smpp_port,
        system_id=creds.username,
        password=creds.password,
        response_timeout=0.5,
        reconnect_backoff=0.05,
        throttle_backoff=0.02,
        **options,
    )


def message(to: str, text: str = "Hi", sender: str | None = None) -> dict[str, str]:
    """One message from the approved sender unless told otherwise."""
    return {"to": to, "text": text, "sender": sender or "SMS Info"}


def test_smpp_port_is_reported_only_when_configured() -> None:
    """Without smpp=True there is no SMPP port to ask for."""
    with Simulator(SimulatorConfig(), mode="thread") as plain:
        with pytest.raises(PlasgateError, match="smpp=True"):
            _ = plain.smpp_port
        assert plain.state()["smpp_port"] is None


def test_wrong_password_is_refused_with_0x0e(sim: Simulator) -> None:
    """The HTTP API password is the SMPP password; anything else is ESME_RINVPASWD."""
    with pytest.raises(Rejected) as info:
        SmppClient(port=sim.smpp_port, system_id=sim.credentials.username, password="wrong").connect()
    assert info.value.status == pdu.ESME_RINVPASWD


def test_record_balance_and_sender_are_shared_with_http(sim: Simulator) -> None:
    """An accepted submit_sm is charged and recorded with route 'smpp'; refusals are not recorded."""
    before = len(sim.records())
    balance = sim.state()["balances"]["demo"]
    with client(sim) as c:
        ok = c.submit(message("85512000101", "Hello there"))
        bad_sender = c.submit(message("85512000102", sender="NotMine"))
    assert ok.outcome == "accepted"
    assert (bad_sender.outcome, bad_sender.status) == ("rejected", 0x0A)
    [row] = sim.records(offset=before)
    assert (row["route"], row["message_id"], row["content"]) == ("smpp", ok.message_id, "Hello there")
    assert sim.state()["balances"]["demo"] == pytest.approx(balance - row["price"])
    sim.set_balance(0)
    try:
        with client(sim) as c:
            broke = c.submit(message("85512000103"))
    finally:
        sim.set_balance(1_000_000)
    assert (broke.outcome, broke.status) == ("rejected", 0x45)
    assert len(sim.records(offset=before)) == 1


def test_faults_throttle_error_and_no_response(sim: Simulator) -> None:
    """Fault(route='smpp'): throttling is retried (sent once), error_before refuses, delay_after is
    uncertain though recorded, and the HTTP routes are not touched by SMPP faults."""
    before = len(sim.records())
    with client(sim) as c:
        sim.set_faults(Fault("throttle", route="smpp", count=2))
        throttled = c.submit(message("85512000201"))
        sim.set_faults(Fault("error_before", route="smpp", count=1))
        refused = c.submit(message("85512000202"))
        sim.set_faults(Fault("delay_after", route="smpp", count=1, delay=1.0))
        late = c.submit(message("85512000203"))
        sim.clear_faults()
    assert throttled.outcome == "accepted" and throttled.throttled == 2
    assert (refused.outcome, refused.status) == ("rejected", pdu.ESME_RSYSERR)
    assert late.outcome == "uncertain"
    assert [r["to"] for r in sim.records(offset=before)] == ["85512000201", "85512000203"]


def test_receipt_reaches_a_receiver_bound_beside_a_transmitter(sim: Simulator) -> None:
    """Receipts go to the bound receiver of the same account, from the shared delivery model; those
    due while no receiver was bound (earlier tests) wait and come at bind."""
    with client(sim, bind="receiver") as rx, client(sim, bind="transmitter") as tx:
        result = tx.submit(message("85510000001"))  # always UNDELIV
        sim.advance(120)
        events = rx.events(count=1, timeout=1)
        for _ in range(50):
            if any(e.message_id == result.message_id for e in events):
                break
            events += rx.events(count=1, timeout=0.1)
    ours = [(e.stat, e.recipient) for e in events if e.message_id == result.message_id]
    assert ours == [("UNDELIV", "85510000001")]


def test_smsc_refusal_is_a_submit_sm_resp_error_and_interim_receipts_come_first(sim: Simulator) -> None:
    """A number the SMSC refuses gets submit_sm_resp ESME_RINVDSTADR (no id, no receipt); UNKNOWN and
    ENROUTE receipts come before the DELIVRD of the numbers that get them, as Jasmin sends them."""
    before = len(sim.records())
    with client(sim) as c:
        refused = c.submit(message("85510000005"))
        unknown = c.submit(message("85510000006"))
        enroute = c.submit(message("85510000008"))
        sim.advance(120)
        wanted = {unknown.message_id: "unknown", enroute.message_id: "enroute"}
        seen: dict[str, list[tuple[str, bool]]] = {"unknown": [], "enroute": []}
        for _ in range(100):
            if all(len(stats) == 2 for stats in seen.values()):
                break
            for event in c.events(count=1, timeout=0.05):
                if event.message_id in wanted:
                    seen[wanted[event.message_id]].append((event.stat, event.final))
    assert (refused.outcome, refused.status, refused.message_id) == ("rejected", 0x0B, None)
    assert seen == {
        "unknown": [("UNKNOWN", False), ("DELIVRD", True)],
        "enroute": [("ENROUTE", False), ("DELIVRD", True)],
    }
    outcomes = {r["to"]: r["outcome"] for r in sim.records(offset=before)}
    assert outcomes["85510000005"] == "ESME_RINVDSTADR"
