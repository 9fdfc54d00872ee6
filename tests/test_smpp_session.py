"""The SMPP ESME session against the simulator's SMPP server, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import smpplib.client
import smpplib.consts

from plasgate_nb.errors import ConfigError, Rejected
from plasgate_nb.simulator.smpp_server import SimpleBackend, SmppServer
from plasgate_nb.smpp import Receipt, SmppClient, SmppConfig, SmppSession, pdu

KHMER = ("សួស្តី! នេះគឺជាសារសាកល្បងពី Plasgate ។ " * 3)[:100]


@pytest.fixture
def server() -> Iterator[SmppServer]:
    """A simulator SMPP server in a thread, probing idle links every 0.1 s."""
    with SmppServer(SimpleBackend(latency=0.01), enquire_link_interval=0.1) as srv:
        yield srv


def config(srv: SmppServer, **options: object) -> SmppConfig:
    """A session config for the server's demo account."""
    return SmppConfig(port=srv.port, system_id="demo", password="demopass", **options)  # type: ignore[arg-type]


def run(coro: object) -> object:
    """Run a coroutine to completion."""
    return asyncio.run(coro)  # type: ignore[arg-type]


def msgs(n: int, *, to: str = "85512345678") -> list[dict[str, object]]:
    """n distinct messages."""
    return [{"to": to, "text": f"Hello {i}", "sender": "SMS Info", "key": i} for i in range(n)]


@pytest.mark.parametrize("mode", ["transceiver", "transmitter", "receiver"])
def test_every_bind_mode(server: SmppServer, mode: str) -> None:
    """Each bind mode binds; only tx/trx may submit; receipts reach an rx bound beside a tx."""

    async def main() -> None:
        async with SmppSession(config(server, bind=mode)) as session:
            assert session.bound
            if mode == "receiver":
                with pytest.raises(ConfigError):
                    await session.submit(msgs(1)[0])
            else:
                [result] = await session.submit_many(msgs(1))
                assert result.outcome == "accepted"

    run(main())
    assert server.stats[f"bind_{mode}"] == 1 and server.stats["unbind"] == 1


def test_receipt_goes_to_the_receiver_beside_a_transmitter(server: SmppServer) -> None:
    """As recorded with Jasmin: a tx session submits, the rx session of the same account gets the receipt."""

    async def main() -> None:
        async with (
            SmppSession(config(server, bind="receiver")) as rx,
            SmppSession(config(server, bind="transmitter")) as tx,
        ):
            result = await tx.submit(msgs(1)[0])
            receipt = await asyncio.wait_for(rx.events.get(), 5)
            assert isinstance(receipt, Receipt) and receipt.message_id == result.message_id
            assert tx.events.empty()

    run(main())


def test_wrong_password_is_refused_with_0x0e(server: SmppServer) -> None:
    """A wrong password raises Rejected with bind_resp status ESME_RINVPASWD, without the password."""
    with pytest.raises(Rejected) as info:
        run(SmppSession(SmppConfig(port=server.port, system_id="demo", password="nope")).connect())
    assert info.value.status == pdu.ESME_RINVPASWD and "nope" not in str(info.value)


def test_submit_before_bind_gets_invbndsts(server: SmppServer) -> None:
    """A raw submit_sm on an unbound connection is answered ESME_RINVBNDSTS, as Jasmin does."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(pdu.encode("submit_sm", 2, source_addr="Plasgate", destination_addr="855123", short_message=b"x"))
        answer = pdu.decode(sock.recv(64))
    assert (answer.command, answer.status, answer.sequence) == ("submit_sm_resp", pdu.ESME_RINVBNDSTS, 2)


def test_credentials_checked_and_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials come from the environment, are limited to 30 chars and never show in reprs."""
    monkeypatch.setenv("PLASGATE_SMPP_SYSTEM_ID", "envuser")
    monkeypatch.setenv("PLASGATE_SMPP_PASSWORD", "envsecret")
    cfg = SmppConfig(port=1)
    assert cfg.system_id == "envuser" and "envsecret" not in repr(cfg) + repr(SmppClient(cfg))
    with pytest.raises(ConfigError, match="longer than 30"):
        SmppConfig(system_id="x" * 31, password="p")


def test_window_keeps_many_in_flight_and_unanswered_are_uncertain(server: SmppServer) -> None:
    """10 silent submit_sm all time out together (window 10): in flight at once, reported uncertain."""
    server.faults.silent_next = 10

    async def main() -> list[object]:
        async with SmppSession(config(server, window=10, response_timeout=0.5)) as session:
            started = time.monotonic()
            results = await session.submit_many(msgs(12))
            return [results, time.monotonic() - started]

    results, elapsed = run(main())
    assert [r.outcome for r in results] == ["uncertain"] * 10 + ["accepted"] * 2
    assert elapsed < 2.0  # stop-and-wait would need 10 x 0.5 s
    assert len(server.backend.record) == 12  # the server did accept the silent ones


def test_long_khmer_message_is_split_counted_and_receipted(server: SmppServer) -> None:
    """A 100-char Khmer text goes as 2 UCS-2 parts; the server reassembles it; the receipt names the last id."""

    async def main() -> None:
        async with SmppSession(config(server)) as session:
            result = await session.submit({"to": "85512345678", "text": KHMER, "sender": "SMS Info"})
            assert result.outcome == "accepted" and len(result.part_ids) == 2
            receipt = await asyncio.wait_for(session.events.get(), 5)
            assert receipt.message_id == result.message_id == result.part_ids[-1]

    run(main())
    [row] = server.backend.record
    assert row["text"] == KHMER and row["parts"] == 2


def test_sar_concatenation(server: SmppServer) -> None:
    """With concat='sar' the parts carry sar_ TLVs and still reassemble."""

    async def main() -> None:
        async with SmppSession(config(server, concat="sar")) as session:
            assert (await session.submit({"to": "855123", "text": "x" * 400, "sender": "S"})).outcome == "accepted"

    run(main())
    assert server.backend.record[0]["parts"] == 3 and server.backend.record[0]["text"] == "x" * 400


def test_receipts_for_every_final_status(server: SmppServer) -> None:
    """Each fate the server gives arrives as parsed receipts with their stat, intermediate ones (UNKNOWN,
    ENROUTE: not final) before the final one; a refused number gets submit_sm_resp ESME_RINVDSTADR."""
    fates = {
        "85512345601": ["DELIVRD"],
        "85512345699": ["UNDELIV"],
        "85512345698": ["REJECTD"],
        "85512345697": ["EXPIRED"],
        "85512345696": ["UNKNOWN", "DELIVRD"],  # as recorded from Jasmin
        "85512345695": ["DELETED"],
        "85512345694": ["ENROUTE", "DELIVRD"],
    }

    async def main() -> tuple[dict[str, list[tuple[str, bool]]], object]:
        async with SmppSession(config(server)) as session:
            refused = await session.submit({"to": "85512345600", "text": "hi", "sender": "S"})
            results = await session.submit_many([{"to": to, "text": "hi", "sender": "S"} for to in fates])
            by_id = {r.message_id: r.to for r in results}
            got: dict[str, list[tuple[str, bool]]] = {to: [] for to in fates}
            while not all(seen and seen[-1][1] for seen in got.values()):
                receipt = await asyncio.wait_for(session.events.get(), 5)
                got[by_id[receipt.message_id]].append((receipt.stat, receipt.final))
            return got, refused

    got, refused = run(main())
    assert got == {to: [(stat, stat == stats[-1]) for stat in stats] for to, stats in fates.items()}
    assert refused.outcome == "rejected" and refused.status == 0x0B and refused.message_id is None


def test_enquire_link_both_ways(server: SmppServer) -> None:
    """Idle, the server probes us (0.1 s) and we answer; with a shorter interval we probe and it answers."""

    async def idle(interval: float) -> dict[str, int]:
        async with SmppSession(config(server, enquire_link_interval=interval)) as session:
            await asyncio.sleep(0.5)
            assert session.bound
            return dict(session.stats)

    quiet = run(idle(30.0))
    assert quiet["enquire_link_answered"] >= 2 and server.stats.get("enquire_link_resp", 0) >= 2
    assert quiet["enquire_link_sent"] == 0
    eager = run(idle(0.04))
    assert eager["enquire_link_sent"] >= 2 and server.stats.get("enquire_link", 0) >= 2


def test_dropped_connection_reports_uncertain_and_reconnects_without_duplicates(server: SmppServer) -> None:
    """The server drops the link after accepting message 20: it is uncertain, nothing is sent twice."""

    async def main() -> tuple[list[object], dict[str, int]]:
        async with SmppSession(config(server, window=5, reconnect_backoff=0.05)) as session:
            server.faults.drop_next = 0
            first = await session.submit_many(msgs(20))
            server.faults.drop_next = 1
            rest = await session.submit_many(msgs(30))
            return first + rest, dict(session.stats)

    results, stats = run(main())
    outcomes = [r.outcome for r in results]
    assert outcomes.count("uncertain") >= 1 and outcomes.count("accepted") == 50 - outcomes.count("uncertain")
    assert stats["reconnects"] == 1
    texts = [row["text"] for row in server.backend.record]
    first, rest = texts[:20], texts[20:]
    assert len(set(first)) == len(first) == 20 and len(set(rest)) == len(rest)  # none sent twice
    accepted = {f"Hello {r.key}" for r in results[20:] if r.outcome == "accepted"}  # type: ignore[attr-defined]
    assert accepted <= set(rest) and len(rest) >= len(accepted) == 30 - outcomes[20:].count("uncertain")


def test_throttling_slows_down_and_retries(server: SmppServer) -> None:
    """Three ESME_RTHROTTLED answers pause the session (0.05 + 0.1 + 0.2 s) and the PDU is sent again."""
    server.faults.throttle_next = 3

    async def main() -> tuple[object, float]:
        async with SmppSession(config(server, throttle_backoff=0.05)) as session:
            started = time.monotonic()
            [result] = await session.submit_many(msgs(1))
            return result, time.monotonic() - started

    result, elapsed = run(main())
    assert result.outcome == "accepted" and result.throttled == 3
    assert elapsed >= 0.35
    assert len(server.backend.record) == 1


def test_sync_client_collects_receipts(server: SmppServer) -> None:
    """The blocking client sends from a background loop and returns receipts from events()."""
    seen: list[object] = []
    with SmppClient(config(server)) as client:
        results = client.submit_many(msgs(5), on_result=seen.append)
        events = client.events(count=5, timeout=5)
    assert [r.outcome for r in results] == ["accepted"] * 5 and len(seen) == 5
    assert {e.message_id for e in events} == {r.message_id for r in results}


def test_smpplib_client_interoperates(server: SmppServer) -> None:
    """python-smpplib's own client binds, submits and receives the receipt from our server."""
    client = smpplib.client.Client("127.0.0.1", server.port, timeout=5, allow_unknown_opt_params=True)
    received: list[object] = []
    sent: list[object] = []
    client.set_message_received_handler(lambda pdu, **kw: received.append(pdu))
    client.set_message_sent_handler(lambda pdu, **kw: sent.append(pdu))
    client.connect()
    try:
        client.bind_transceiver(system_id="demo", password="demopass")
        client.send_message(
            source_addr_ton=5,
            source_addr="Plasgate",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="85512345678",
            short_message=b"Hello SMPP",
            registered_delivery=1,
        )
        while len(sent) < 1 or len(received) < 1:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    assert sent[0].message_id.decode() == received[0].receipted_message_id.decode()
    assert b"stat:DELIVRD" in received[0].short_message
    assert sent[0].status == smpplib.consts.SMPP_ESME_ROK


def test_misuse_raises_the_projects_errors() -> None:
    """An unconnected client and a bad concat option raise errors of the PlasgateError tree."""
    from plasgate_nb.errors import OptionError, PlasgateError, TransportError
    from plasgate_nb.smpp import SmppClient, SmppConfig
    from plasgate_nb.smpp.message import build_parts

    client = SmppClient(SmppConfig(port=1, system_id="demo", password="demo-pass"))
    with pytest.raises(TransportError, match="not connected"):
        client.submit({"to": "85512345678", "text": "hi", "sender": "SMS Info"})
    with pytest.raises(OptionError, match="concat") as info:
        build_parts("hello", concat="tlv")  # type: ignore[arg-type]
    assert isinstance(info.value, PlasgateError) and isinstance(info.value, ValueError)
