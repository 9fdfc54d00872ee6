"""The simulator's SMPP v3.4 server (SMSC side), over asyncio TCP, answering as Jasmin 0.11.1 does.

Binds check system_id/password (a refusal is bind_resp 0x0E with no body, as Jasmin sends it);
submit_sm before a bind, or on a receiver, is answered ESME_RINVBNDSTS. Each submit_sm gets its own
message id; parts of a long message are reassembled (UDH or sar_ TLVs) and accepted as one message.
Receipts (intermediate UNKNOWN or ENROUTE ones for a share of messages, then the final one) go as
deliver_sm (esm_class 0x04, Jasmin's text and TLVs) to a bound receiver or transceiver of the same
system_id, queued until one binds; a number the SMSC refuses gets a submit_sm_resp ESME_RINVDSTADR.
Idle links get enquire_link. Faults on request: throttling answers, a dropped connection, or silence after accepting.
The submit_sm of one received chunk are read without building ``Pdu`` objects and handed to the
backend in one ``accept_many`` call (each still its own request), their answers leaving in one write.

The accounts, delivery model and record come from a backend (``smpp_backends``): ``SimpleBackend`` (fates by number
suffix), or ``GatewayBackend`` over the HTTP simulator's ``model.Gateway``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..segments import GSM7, count_segments
from ..server import bind_socket
from ..smpp import pdu as _pdu
from ..smpp.message import decode_short_message, decode_text, fast_encode_gsm7
from .smpp_backends import Accepting, GatewayBackend, SimpleBackend, SmppBackend, SubmitRefused

__all__ = ["GatewayBackend", "SimpleBackend", "SmppBackend", "SmppFaults", "SmppServer", "SubmitRefused", "receipt_pdu"]

logger = logging.getLogger("plasgate_nb")
THREAD_NAME = "plasgate-nb-smpp-server"
GATEWAY_TZ = timezone(timedelta(hours=7))
_BIND_MODES = {"bind_transceiver": "trx", "bind_transmitter": "tx", "bind_receiver": "rx"}
_SUBMIT_SM = _pdu.COMMANDS["submit_sm"].to_bytes(4, "big")


@dataclass(slots=True)
class SmppFaults:
    """Faults for the next submit_sm PDUs: throttle (answer 0x58), drop (accept, then close the
    connection unanswered), silent (accept, never answer). Counters decrease as they fire."""

    throttle_next: int = 0
    drop_next: int = 0
    silent_next: int = 0
    throttle_status: int = _pdu.ESME_RTHROTTLED


def _stamp(ts: float) -> str:
    """Format a receipt date as Jasmin does (YYMMDDhhmm, gateway local time)."""
    return datetime.fromtimestamp(ts, GATEWAY_TZ).strftime("%y%m%d%H%M")


def receipt_pdu(
    sequence: int,
    *,
    message_id: str,
    stat: str,
    err: str,
    recipient: str,
    sender: str,
    submitted: float,
    done: float,
    sender_ton: int = 5,
    sender_npi: int = 0,
) -> bytes:
    """Encode a receipt deliver_sm exactly as Jasmin 0.11.1 sends it (text, then TLVs 0x0427, 0x001E)."""
    text = f"id:{message_id} submit date:{_stamp(submitted)} done date:{_stamp(done)} stat:{stat} err:{err}"
    tlvs = _pdu.encode_tlv(_pdu.TAG_MESSAGE_STATE, _pdu.MESSAGE_STATES.get(stat, 7)) + _pdu.encode_tlv(
        _pdu.TAG_RECEIPTED_MESSAGE_ID, message_id
    )
    return _pdu.encode(
        "deliver_sm",
        sequence,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=recipient,
        dest_addr_ton=sender_ton,
        dest_addr_npi=sender_npi,
        destination_addr=sender,
        esm_class=0x04,
        short_message=text.encode("latin-1"),
        tlvs=tlvs,
    )


class _Notify:
    """A message's ``notify``: hands its receipt to the server with the addresses it needs (one object
    rather than a closure and its cells, so that a chunk of messages leaves less for the collector)."""

    __slots__ = ("npi", "sender", "server", "system_id", "to", "ton")

    def __init__(self, server: SmppServer, system_id: str, to: str, sender: str, ton: int, npi: int) -> None:
        """Remember where the receipt goes and what it names."""
        self.server, self.system_id, self.to, self.sender, self.ton, self.npi = server, system_id, to, sender, ton, npi

    def __call__(self, message_id: str, stat: str, err: str, submitted: float, done: float) -> None:
        """Send (or queue) the receipt."""
        self.server._notify(
            self.system_id, message_id, stat, err, self.to, self.sender, self.ton, self.npi, submitted, done
        )


class _Connection(asyncio.Protocol):
    """One ESME connection."""

    def __init__(self, server: SmppServer) -> None:
        """Attach to ``server``."""
        self.server = server
        self.reader = _pdu.PduReader()
        self.transport: asyncio.Transport | None = None
        self.system_id: str | None = None
        self.mode: str | None = None
        self.seq = itertools.count(1)
        self.last_rx = time.monotonic()
        self.parts: dict[tuple[str, str, int], dict[int, str]] = {}
        self.out: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register the connection."""
        self.transport = transport  # type: ignore[assignment]
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        self.server._connections.discard(self)

    def send(self, command: str, seq: int, *, status: int = 0, **values: Any) -> None:
        """Write one PDU unless closing (inside ``data_received``: queued, all sent in one write)."""
        self.write(_pdu.encode(command, seq, status=status, **values))

    def write(self, data: bytes) -> None:
        """Write encoded PDUs, or queue them while a received chunk is being handled."""
        if self.out is not None:
            self.out.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def flush(self) -> None:
        """Write the answers queued so far (before closing the connection)."""
        if self.out:
            out, self.out = self.out, []
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        """Handle every complete PDU; the answers to one received chunk leave in one write."""
        self.last_rx = time.monotonic()
        self.out = []
        try:
            run: list[bytes] = []  # consecutive submit_sm needing no special answer: handled as one batch
            for raw in self.reader.feed(data):
                if raw[4:8] == _SUBMIT_SM and self.plain():
                    run.append(raw)
                    continue
                if run:
                    self.submit_run(run)
                    run = []
                self.handle(_pdu.decode(raw))
            if run:
                self.submit_run(run)
        except _pdu.ProtocolError as exc:
            logger.warning("smpp server: %s", exc)
            if self.transport is not None:
                self.transport.close()
        finally:
            out, self.out = self.out, None
            if out and self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"".join(out))

    def handle(self, message: _pdu.Pdu) -> None:
        """Answer one PDU."""
        name, seq, stats = message.command, message.sequence, self.server.stats
        stats[name] = stats.get(name, 0) + 1
        if name == "submit_sm":
            self.submit(message)
        elif name in _BIND_MODES:
            self.bind(message, name)
        elif name == "enquire_link":
            self.send("enquire_link_resp", seq)
        elif name == "unbind":
            self.send("unbind_resp", seq)
            self.system_id = self.mode = None
            self.flush()
            if self.transport is not None:
                self.transport.close()
        elif message.is_response:
            return
        else:
            self.send("generic_nack", seq, status=_pdu.ESME_RINVCMDID)

    def bind(self, message: _pdu.Pdu, name: str) -> None:
        """Check the credentials and bind (Jasmin: 0x0E for a wrong password or unknown system_id)."""
        if self.mode is not None:
            self.send(name + "_resp", message.sequence, status=_pdu.ESME_RALYBND)
            return
        system_id, password = message.get("system_id", ""), message.get("password", "")
        if not self.server.backend.authenticate(system_id, password):
            self.send(name + "_resp", message.sequence, status=_pdu.ESME_RINVPASWD)
            return
        self.system_id, self.mode = system_id, _BIND_MODES[name]
        self.send(name + "_resp", message.sequence, system_id=system_id)
        if self.mode != "tx":
            self.server._flush(system_id)

    def plain(self) -> bool:
        """Whether a submit_sm now needs no special answer: bound to submit, and no fault counter set."""
        faults = self.server.faults
        return (
            self.system_id is not None
            and self.mode in ("tx", "trx")
            and not (faults.throttle_next or faults.drop_next or faults.silent_next)
        )

    def submit_run(self, raws: list[bytes]) -> None:
        """Answer consecutive submit_sm (all ``plain``) as ``submit`` one by one would, the backend
        accepting the whole messages among them in one call; one hit by a book fault goes through
        ``submit`` after those before it are answered."""
        server = self.server
        book, stats = server.book, server.stats
        pending: list[tuple[int, str | Accepting]] = []  # (sequence, id of a waiting part | whole message)
        try:
            for raw in raws:
                stats["submit_sm"] = stats.get("submit_sm", 0) + 1
                hits = book.pick("smpp") if book is not None else None
                if hits:
                    self._answer_run(pending)
                    pending = []
                    self.submit(_pdu.decode(raw), {f.kind: f for f in hits})
                    continue
                fields = _pdu.peek_submit_sm(raw)
                if fields is None:
                    message = _pdu.decode(raw)
                    decoded, f = decode_short_message(message), message.fields
                    seq, text, concat = message.sequence, decoded.text, decoded.concat
                    ton, npi = f.get("source_addr_ton", 0), f.get("source_addr_npi", 0)
                    sender, to = f.get("source_addr", ""), f.get("destination_addr", "")
                    rd = f.get("registered_delivery", 0)
                else:
                    seq, ton, npi, sender, to, esm_class, rd, coding, short_message = fields
                    text, concat = decode_text(short_message, esm_class, coding)
                pending.append((seq, self._whole(text, concat, to, sender, rd, ton, npi)))
        finally:  # a malformed PDU closes the connection: those before it are still accepted
            self._answer_run(pending)

    def _answer_run(self, pending: list[tuple[int, str | Accepting]]) -> None:
        """Hand the whole messages of ``pending`` to the backend at once and answer every part in order."""
        wholes = [item for _, item in pending if not isinstance(item, str)]
        answers = self._accept_many(wholes) if wholes else []
        stats, k = self.server.stats, 0
        for seq, item in pending:
            if isinstance(item, str):
                answer: str | SubmitRefused = item
            else:
                answer, k = answers[k], k + 1
            if isinstance(answer, SubmitRefused):
                logger.info("smpp server: submit_sm refused: %s", answer)
                self.send("submit_sm_resp", seq, status=answer.status)
                continue
            if not isinstance(item, str):
                stats["accepted"] = stats.get("accepted", 0) + 1
            self.write(_pdu.encode_submit_sm_resp(seq, answer))

    def submit(self, message: _pdu.Pdu, hit: dict[str, Any] | None = None) -> None:
        """Accept a submit_sm (reassembling parts), or answer the status a fault or the bind state asks
        (``hit``: the book's faults already picked for it)."""
        seq, server = message.sequence, self.server
        faults = server.faults
        if self.mode not in ("tx", "trx") or self.system_id is None:
            self.send("submit_sm_resp", seq, status=_pdu.ESME_RINVBNDSTS)
            return
        if hit is None:
            hit = server.pick_faults()
        if faults.throttle_next > 0 or "throttle" in hit:
            if "throttle" not in hit:
                faults.throttle_next -= 1
            self.send("submit_sm_resp", seq, status=faults.throttle_status)
            return
        if "error_before" in hit:
            self.send("submit_sm_resp", seq, status=_pdu.ESME_RSYSERR)
            return
        decoded = decode_short_message(message)
        fields = message.fields
        to, sender = fields.get("destination_addr", ""), fields.get("source_addr", "")
        try:
            message_id = self._accept(
                decoded.text,
                decoded.concat,
                to,
                sender,
                fields.get("registered_delivery", 0),
                fields.get("source_addr_ton", 0),
                fields.get("source_addr_npi", 0),
            )
        except SubmitRefused as exc:
            logger.info("smpp server: submit_sm refused: %s", exc)
            self.send("submit_sm_resp", seq, status=exc.status)
            return
        if faults.drop_next > 0 or "drop_after" in hit:
            if "drop_after" not in hit:
                faults.drop_next -= 1
            self.flush()
            if self.transport is not None:
                self.transport.abort()
            return
        if faults.silent_next > 0:
            faults.silent_next -= 1
            return
        if "delay_after" in hit:
            loop = asyncio.get_running_loop()
            loop.call_later(hit["delay_after"].delay, lambda: self.send("submit_sm_resp", seq, message_id=message_id))
            return
        if "error_after" in hit:
            self.send("submit_sm_resp", seq, status=_pdu.ESME_RSYSERR)
            return
        self.send("submit_sm_resp", seq, message_id=message_id)

    def _whole(
        self, text: str, concat: tuple[int, int, int] | None, to: str, sender: str, rd: int, ton: int, npi: int
    ) -> str | Accepting:
        """Return the whole message a submit_sm completes, ready for the backend, or a fresh id for a
        part that waits for its siblings."""
        parts = 1
        if concat is not None and concat[1] > 1:
            key = (sender, to, concat[0])
            got = self.parts.setdefault(key, {})
            got[concat[2]] = text
            if len(got) < concat[1]:
                return str(uuid.uuid4())
            del self.parts[key]
            text, parts = "".join(got[i] for i in sorted(got)), concat[1]
        notify = _Notify(self.server, self.system_id or "", to, sender, ton, npi)
        return (sender, to, text, parts, rd, notify)

    def _accept(
        self, text: str, concat: tuple[int, int, int] | None, to: str, sender: str, rd: int, ton: int, npi: int
    ) -> str:
        """Hand a whole message to the backend (raising SubmitRefused); a part gets a fresh id."""
        whole = self._whole(text, concat, to, sender, rd, ton, npi)
        if isinstance(whole, str):
            return whole
        server = self.server
        message_id = self._accept_one(server.backend, whole)
        server.stats["accepted"] = server.stats.get("accepted", 0) + 1
        return message_id

    def _accept_one(self, backend: Any, whole: Accepting) -> str:
        """``backend.accept`` one whole message (raises SubmitRefused)."""
        sender, to, text, parts, rd, notify = whole
        return backend.accept(
            system_id=self.system_id or "",
            sender=sender,
            to=to,
            text=text,
            parts=parts,
            registered_delivery=rd,
            notify=notify,
        )

    def _accept_many(self, wholes: list[Accepting]) -> list[str | SubmitRefused]:
        """Hand whole messages to the backend in one call (``accept`` one by one if it has no ``accept_many``)."""
        backend, system_id = self.server.backend, self.system_id or ""
        many = getattr(backend, "accept_many", None)
        if many is not None:
            return many(system_id, wholes)
        out: list[str | SubmitRefused] = []
        for whole in wholes:
            try:
                out.append(self._accept_one(backend, whole))
            except SubmitRefused as exc:
                out.append(exc)
        return out


@dataclass
class SmppServer:
    """The SMPP server: ``with SmppServer() as s: ... s.port`` runs it on its own loop in a thread.

    ``enquire_link_interval`` is how long a link may stay silent before the server probes it.
    ``faults`` are counters set directly; ``book`` (a ``faults.FaultBook``, as the Simulator shares with
    its HTTP routes) adds the faults of route ``smpp`` (or ``*``).
    """

    backend: SmppBackend = field(default_factory=SimpleBackend)
    host: str = "127.0.0.1"
    port: int = 0
    enquire_link_interval: float = 30.0
    faults: SmppFaults = field(default_factory=SmppFaults)
    stats: dict[str, int] = field(default_factory=dict)
    receipts_sent: list[dict[str, str]] = field(default_factory=list)
    book: Any = None

    def __post_init__(self) -> None:
        """Prepare state; nothing listens until ``start()`` or ``start_async()``."""
        self._connections: set[_Connection] = set()
        self._queued: dict[str, list[tuple[Any, ...]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._idle_task: asyncio.Task[None] | None = None

    def __enter__(self) -> SmppServer:
        """Start in a thread."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop."""
        self.stop()

    async def start_async(self) -> None:
        """Listen on the running loop (pre-bound IPPROTO_TCP socket, so TCP_NODELAY is set)."""
        sock = bind_socket(self.host, self.port)
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _Connection(self), sock=sock)
        self.port = sock.getsockname()[1]
        self._idle_task = self._loop.create_task(self._probe_idle())

    async def stop_async(self) -> None:
        """Close every connection and stop listening."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            await asyncio.gather(self._idle_task, return_exceptions=True)
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def start(self) -> None:
        """Run the server on a new loop in a background thread; return once it listens."""
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=THREAD_NAME, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start_async(), loop).result(10)

    def stop(self) -> None:
        """Stop the thread started by ``start()`` (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._thread = None
        asyncio.run_coroutine_threadsafe(self.stop_async(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = None

    def pick_faults(self) -> dict[str, Any]:
        """Return the book's faults hitting this submit_sm, by kind (consuming their counts)."""
        if self.book is None:
            return {}
        return {f.kind: f for f in self.book.pick("smpp")}

    def call(self, func: Callable[[], Any]) -> Any:
        """Run ``func`` on the server's loop (thread-safe) and return its result."""
        if self._loop is None:
            raise RuntimeError("server not started")

        async def run() -> Any:
            return func()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    async def _probe_idle(self) -> None:
        """Send enquire_link on links silent for ``enquire_link_interval``."""
        period = max(0.02, self.enquire_link_interval / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self._connections):
                if conn.mode is not None and now - conn.last_rx >= self.enquire_link_interval:
                    conn.last_rx = now
                    self.stats["enquire_link_sent"] = self.stats.get("enquire_link_sent", 0) + 1
                    conn.send("enquire_link", next(conn.seq))

    def _notify(self, *receipt: Any) -> None:
        """Deliver a receipt from any thread: hop onto the server loop first."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._send_receipt(receipt)
        else:
            loop.call_soon_threadsafe(self._send_receipt, receipt)

    def _send_receipt(self, receipt: tuple[Any, ...]) -> None:
        """Send one receipt to a bound receiver/transceiver of its system_id, or queue it."""
        system_id = receipt[0]
        targets = [c for c in self._connections if c.system_id == system_id and c.mode in ("rx", "trx")]
        if not targets:
            self._queued.setdefault(system_id, []).append(receipt)
            return
        conn = targets[self.stats.get("deliver_sm_sent", 0) % len(targets)]
        if conn.transport is None:
            return
        if receipt[1] is None:  # a mobile-originated message: (system_id, None, sender, destination, text)
            _, _, sender, destination, text = receipt
            gsm = count_segments(text).encoding == GSM7
            conn.write(
                _pdu.encode(
                    "deliver_sm",
                    next(conn.seq),
                    source_addr_ton=1,
                    source_addr_npi=1,
                    source_addr=sender,
                    dest_addr_ton=5,
                    destination_addr=destination,
                    data_coding=0 if gsm else 8,
                    short_message=fast_encode_gsm7(text) if gsm else text.encode("utf-16-be"),
                )
            )
            self.stats["mo_sent"] = self.stats.get("mo_sent", 0) + 1
            return
        _, message_id, stat, err, to, sender, ton, npi, submitted, done = receipt
        conn.write(
            receipt_pdu(
                next(conn.seq),
                message_id=message_id,
                stat=stat,
                err=err,
                recipient=to,
                sender=sender,
                submitted=submitted,
                done=done,
                sender_ton=ton,
                sender_npi=npi,
            )
        )
        self.stats["deliver_sm_sent"] = self.stats.get("deliver_sm_sent", 0) + 1
        self.receipts_sent.append({"message_id": message_id, "stat": stat, "err": err, "to": to})

    def drop_connections(self) -> int:
        """Cut every ESME connection without an unbind (a network failure); return how many (server loop)."""
        dropped = [c for c in list(self._connections) if c.transport is not None and not c.transport.is_closing()]
        for conn in dropped:
            conn.transport.abort()  # type: ignore[union-attr]
        self.stats["dropped"] = self.stats.get("dropped", 0) + len(dropped)
        return len(dropped)

    def send_mo(self, system_id: str, *, sender: str, destination: str, text: str) -> None:
        """Send a mobile-originated message (a handset's reply, at most one part) to the account's
        bound receiver or transceiver, or hold it until one binds; callable from any thread."""
        self._notify(system_id, None, sender, destination, text)

    def _flush(self, system_id: str) -> None:
        """Send the receipts queued while no receiver was bound."""
        for receipt in self._queued.pop(system_id, []):
            self._send_receipt(receipt)
