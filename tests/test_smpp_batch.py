"""The SMPP server's batched submit_sm path answers and records exactly as the one-by-one path does."""

from __future__ import annotations

import random
from typing import Any

import pytest

from plasgate_nb.simulator import Fault, SimulatorConfig
from plasgate_nb.simulator.clock import SimClock
from plasgate_nb.simulator.faults import FaultBook
from plasgate_nb.simulator.model import Gateway, InsufficientBalance, MessageSpec
from plasgate_nb.simulator.smpp_server import GatewayBackend, SimpleBackend, SmppServer, _Connection
from plasgate_nb.smpp import pdu
from plasgate_nb.smpp.message import build_parts

LONG = "Long message that needs three parts. " * 11  # 407 GSM-7 septets
KHMER = ("សួស្តី! នេះគឺជាសារសាកល្បងពី Plasgate ។ " * 3)[:100]


class Wire:
    """A transport that keeps every write."""

    def __init__(self) -> None:
        """Nothing written yet."""
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        """Keep the bytes."""
        self.writes.append(data)

    def is_closing(self) -> bool:
        """Open until closed."""
        return self.closed

    def close(self) -> None:
        """Remember the close."""
        self.closed = True

    abort = close


def submit(seq: int, text: str, *, to: str = "85512000001", sender: str = "SMS Info", **options: Any) -> list[bytes]:
    """The submit_sm PDUs of one message, numbered from ``seq``."""
    out = []
    for i, part in enumerate(build_parts(text, reference=seq, **options)):
        out.append(
            pdu.encode(
                "submit_sm",
                seq + i,
                source_addr_ton=5,
                source_addr=sender,
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=to,
                esm_class=part.esm_class,
                registered_delivery=part.registered_delivery,
                data_coding=part.data_coding,
                short_message=part.short_message,
                tlvs=part.tlvs,
            )
        )
    return out


def stream() -> list[bytes]:
    """Plain, UCS-2, UDH and sar parts, a refused sender, receipts asked or not, an enquire_link."""
    raws: list[bytes] = []
    for i in range(12):
        seq = 2 + len(raws)
        if i % 4 == 1:
            raws += submit(seq, LONG, to=f"8551200000{i % 10}", registered_delivery=1)
        elif i % 4 == 2:
            raws += submit(seq, KHMER, to="85597000099", concat="sar", registered_delivery=2)
        elif i == 7:
            raws += submit(seq, "Who?", sender="NotMine")
        else:
            raws += submit(seq, f"Hello {i} សួស្តី" if i % 3 else f"Hello {i}", to=f"8551100{i:04d}")
        if i == 5:
            raws.append(pdu.encode("enquire_link", 2 + len(raws)))
    return raws


def server(*, balance: float | None = None, faults: tuple[Fault, ...] = ()) -> tuple[SmppServer, Gateway]:
    """An unstarted SMPP server over a seeded gateway, with a seeded fault book."""
    gateway = Gateway(SimulatorConfig(seed=11, smpp=True), SimClock(start=1_800_000_000.0))
    if balance is not None:
        gateway.balances["demo"] = balance
    book = FaultBook(faults, rng=random.Random(3))
    return SmppServer(GatewayBackend(gateway), book=book), gateway


def bound(srv: SmppServer) -> tuple[_Connection, Wire]:
    """A connection bound as transceiver with the demo login."""
    conn, wire = _Connection(srv), Wire()
    conn.connection_made(wire)  # type: ignore[arg-type]
    conn.data_received(pdu.encode("bind_transceiver", 1, system_id="demo", password="demo-pass"))
    wire.writes.clear()
    return conn, wire


def answers(wire: Wire) -> list[tuple[str, int, int, int]]:
    """(command, sequence, status, message_id length) of everything written."""
    out = []
    for raw in pdu.PduReader().feed(b"".join(wire.writes)):
        message = pdu.decode(raw)
        out.append((message.command, message.sequence, message.status, len(message.get("message_id", ""))))
    return out


def facts(srv: SmppServer, gateway: Gateway) -> dict[str, Any]:
    """What must not depend on the path: records (ids and times aside), balance, schedule, counters."""
    rows = [{k: v for k, v in r.items() if k not in ("message_id", "accepted_at", "due_at")} for r in gateway.records()]
    return {
        "records": rows,
        "balance": round(gateway.balances["demo"], 9),
        "requests": gateway.request_seq,
        "scheduled": sorted((kind, index) for _, _, kind, index, _ in gateway._heap),
        "stats": dict(srv.stats),
    }


CASES = {
    "plain": {},
    "balance runs out": {"balance": 0.012 * 9 + 0.001},
    "book faults": {
        "faults": (
            Fault(kind="throttle", route="smpp", probability=0.2),
            Fault(kind="error_after", route="smpp", probability=0.2),
            Fault(kind="error_before", route="*", probability=0.1),
        )
    },
}
STATUSES = {  # the answers each case must show, so that every path is taken
    "plain": {0x00, 0x0A},
    "balance runs out": {0x00, 0x0A, 0x45},
    "book faults": {0x00, 0x58, pdu.ESME_RSYSERR},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cut", [None, 1, 7, 100])
def test_batched_chunks_answer_and_record_as_one_by_one(case: str, cut: int | None) -> None:
    """The whole stream in one chunk, or cut every ``cut`` bytes, gives the one-by-one answers,
    records, charges, scheduled receipts and counters; answered ids are recorded ones, in order."""
    raws = stream()
    ref_srv, ref_gateway = server(**CASES[case])  # type: ignore[arg-type]
    ref, ref_wire = bound(ref_srv)
    for raw in raws:
        ref.handle(pdu.decode(raw))
    srv, gateway = server(**CASES[case])  # type: ignore[arg-type]
    conn, wire = bound(srv)
    data = b"".join(raws)
    for start in range(0, len(data), cut or len(data)):
        conn.data_received(data[start : start + (cut or len(data))])
    assert answers(wire) == answers(ref_wire)
    assert STATUSES[case] <= {status for _, _, status, _ in answers(wire)}
    assert facts(srv, gateway) == facts(ref_srv, ref_gateway)
    answered = [pdu.decode(raw).get("message_id") for raw in pdu.PduReader().feed(b"".join(wire.writes))]
    recorded = set(gateway.ids)
    assert gateway.ids and [i for i in answered if i in recorded] == [i for i in gateway.ids if i in set(answered)]


def test_a_malformed_pdu_closes_but_those_before_it_are_recorded() -> None:
    """As one by one: the submit_sm before a malformed one are accepted, then the connection closes."""
    raws = submit(2, "one") + submit(3, "two")
    bad = raws[1][:16] + raws[1][16:].replace(b"\x00", b"\x01")  # no NUL ends its C-strings
    srv, gateway = server()
    conn, wire = bound(srv)
    conn.data_received(raws[0] + bad)
    assert wire.closed and len(gateway.ids) == 1 and srv.stats["accepted"] == 1


def test_submit_each_equals_one_submit_per_message() -> None:
    """Gateway.submit_each charges, records and schedules as one submit call per message would."""
    messages = [(f"8551200{i:04d}", ("x" * (i * 40)) or "hi", "SMS Info") for i in range(8)]
    one, each = (Gateway(SimulatorConfig(seed=4), SimClock(start=1_800_000_000.0)) for _ in range(2))
    for gateway in (one, each):
        gateway.balances["demo"] = 0.012 * 7

    def sink(sub: Any, fields: dict[str, str]) -> None:
        """No receipts are thrown here."""

    expected: list[Any] = []
    account = one.accounts["demo"]
    for to, text, sender in messages:
        try:
            ids, _ = one.submit(account, "smpp", [MessageSpec([to], text, sender, dlr_level=2)], sink=sink)
            expected.append(len(ids[0][0]))
        except InsufficientBalance as exc:
            expected.append(str(exc))
    got = each.submit_each(each.accounts["demo"], "smpp", [(to, text, sender, sink) for to, text, sender in messages])
    assert [str(g) if isinstance(g, InsufficientBalance) else len(g) for g in got] == expected
    assert [g for g in got if isinstance(g, str)] == list(each.ids)  # the record is a compact sequence
    assert facts(SmppServer(SimpleBackend()), each) == facts(SmppServer(SimpleBackend()), one)
