"""An asyncio SMPP v3.4 ESME session: bind, windowed and paced submit_sm, receipts, keep-alive, reconnect.

Requests are matched to responses by sequence number; up to ``window`` submit_sm are in flight. A
throttling answer (ESME_RTHROTTLED, ESME_RMSGQFUL) pauses the pacer with a growing backoff and sends
the same PDU again. A submit_sm written without an answer (timeout, dropped connection) is reported
``uncertain`` and never resent; parts not yet written wait for the reconnection, with backoff.
``submit_many`` runs on ``window.Window`` (callbacks, no task or future per message) under the same
rules; both share the session's window.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from ..errors import ConfigError, Rejected, TransportError
from . import pdu as _pdu
from .config import SmppConfig, SmppMessage, SubmitResult
from .message import Part, build_parts
from .receipts import MobileOriginated, Receipt, parse_deliver_sm
from .window import THROTTLED, Answer, Reply, Slots, Window, settle

__all__ = ["DeliverHandler", "SmppSession"]

logger = logging.getLogger("plasgate_nb")
DeliverHandler = Callable[[Receipt | MobileOriginated], Awaitable[None] | None]
ESME_RX_T_APPN = 0x64
FLUSH_GROUP = 25  # PDUs per write while more are being encoded: one syscall shared by 25, fine-grained overlap
_SUBMIT_SM_RESP = _pdu.COMMANDS["submit_sm_resp"].to_bytes(4, "big")
_BIND_COMMANDS = {"transceiver": "bind_transceiver", "transmitter": "bind_transmitter", "receiver": "bind_receiver"}


class ConnectionLost(TransportError):
    """The connection closed while a request waited for its response."""


class _Pacer:
    """Space submit_sm starts to a rate, and pause with a growing backoff after throttling answers."""

    def __init__(self, rate: float | None, backoff: float, backoff_max: float) -> None:
        """Pace at ``rate`` per second (None: unpaced); first pause ``backoff`` s, at most ``backoff_max``."""
        self.base_interval = 1.0 / rate if rate else 0.0
        self.interval = self.base_interval
        self.backoff, self.backoff_max = backoff, backoff_max
        self._pause = 0.0
        self._next = 0.0
        self._until = 0.0

    def reserve(self) -> float:
        """Reserve the next start slot; return the seconds until it comes (0: now)."""
        now = time.monotonic()
        slot = max(now, self._next, self._until)
        self._next = slot + self.interval
        return slot - now

    async def wait(self) -> None:
        """Reserve the next start slot and sleep until it comes."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def slow_down(self) -> float:
        """Record a throttling answer: pause (doubling each time) and lower the rate; return the pause."""
        self._pause = min(self.backoff_max, self._pause * 2 if self._pause else self.backoff)
        self._until = max(self._until, time.monotonic() + self._pause)
        if self.interval:
            self.interval *= 1.5
        return self._pause

    def success(self) -> None:
        """Record an accepted submit_sm: reset the backoff and creep back toward the configured rate."""
        self._pause = 0.0
        if self.interval > self.base_interval:
            self.interval = max(self.base_interval, self.interval * 0.98)


class _Protocol(asyncio.Protocol):
    """Feed received bytes to the session, PDU by PDU."""

    def __init__(self, session: SmppSession) -> None:
        """Bind to ``session``."""
        self.session = session
        self.reader = _pdu.PduReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Hand the transport to the session."""
        self.session._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Decode every complete PDU and dispatch it (submit_sm_resp without building a ``Pdu``)."""
        session = self.session
        session._last_rx = time.monotonic()
        try:
            for raw in self.reader.feed(data):
                if raw[4:8] == _SUBMIT_SM_RESP:
                    session._on_submit_resp(raw)
                else:
                    session._on_pdu(_pdu.decode(raw))
        except _pdu.ProtocolError as exc:
            logger.warning("smpp: %s; closing the connection", exc)
            if self.session._transport is not None:
                self.session._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the session."""
        self.session._on_lost(self, exc)


class SmppSession:
    """One ESME session (async API). Use ``async with SmppSession(config) as s: await s.submit_many(...)``.

    Receipts and mobile-originated messages go to ``on_deliver`` (sync or async; the deliver_sm is
    answered once it returns, with a temporary error if it raises) and to the ``events`` queue.
    """

    def __init__(self, config: SmppConfig, *, on_deliver: DeliverHandler | None = None) -> None:
        """Prepare a session; nothing connects until ``connect()``."""
        self.config = config
        self.on_deliver = on_deliver
        self.events: asyncio.Queue[Receipt | MobileOriginated] = asyncio.Queue()
        self.stats = {
            "submitted": 0,
            "throttled": 0,
            "uncertain": 0,
            "reconnects": 0,
            "enquire_link_sent": 0,
            "enquire_link_answered": 0,
            "deliver_sm": 0,
        }
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._pending: dict[int, tuple[asyncio.Future[_pdu.Pdu] | Reply, float]] = {}
        self._seq = itertools.count(1)
        self._refs = itertools.count(1)
        self._slots = Slots(config.window)
        self._pacer = _Pacer(config.rate, config.throttle_backoff, config.throttle_backoff_max)
        self._bound = asyncio.Event()
        self._closing = False
        self._failure: BaseException | None = None
        self._last_rx = time.monotonic()
        self._timer: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._out: list[bytes] = []  # PDUs written this loop iteration, sent in one write by _flush
        self._prefixes: dict[str, bytes] = {}
        self._flush_at = max(2, min(config.window // 2, FLUSH_GROUP))

    def __repr__(self) -> str:
        """Show where and how the session binds, never the credentials."""
        state = "bound" if self._bound.is_set() else "unbound"
        return f"<SmppSession {self.config.bind} {self.config.host}:{self.config.port} {state}>"

    async def __aenter__(self) -> SmppSession:
        """Connect and bind."""
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Unbind and close."""
        await self.close()

    @property
    def bound(self) -> bool:
        """Whether the session is currently bound."""
        return self._bound.is_set() and self._failure is None

    # -- connection -------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the TCP connection and bind; raise Rejected (bind refused) or TransportError."""
        self._closing = False
        await self._open()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _open(self) -> None:
        """Connect, bind, and mark the session bound."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self), cfg.host, cfg.port), cfg.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to SMPP server {cfg.host}:{cfg.port}: {exc}") from exc
        self._protocol = protocol
        self._out = []
        self._lost = asyncio.Event()
        self._last_rx = time.monotonic()
        command = _BIND_COMMANDS[cfg.bind]
        try:
            resp = await self._request(
                command,
                system_id=cfg.system_id,
                password=cfg.password,
                system_type=cfg.system_type,
                interface_version=0x34,
            )
        except (ConnectionLost, TimeoutError) as exc:
            raise TransportError(f"no answer to {command} from {cfg.host}:{cfg.port}") from exc
        if resp.status:
            self._close_transport()
            raise Rejected(f"{command} refused: {_pdu.status_name(resp.status)}", status=resp.status)
        logger.info("smpp: bound as %s to %s:%s", cfg.bind, cfg.host, cfg.port)
        self._bound.set()

    async def close(self) -> None:
        """Unbind (waiting briefly for unbind_resp), close the connection and stop the timers."""
        self._closing = True
        for task in (self._reconnector, self._timer):
            if task is not None:
                task.cancel()
        for task in (self._reconnector, self._timer, *self._tasks):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        self._reconnector = self._timer = None
        if self._bound.is_set() and self._transport is not None:
            try:
                await asyncio.wait_for(self._request("unbind"), min(2.0, self.config.response_timeout))
            except (TimeoutError, TransportError):
                logger.info("smpp: no unbind_resp; closing anyway")
        self._bound.clear()
        self._close_transport()
        if self._transport is not None and not self._lost.is_set():
            await asyncio.wait_for(self._lost.wait(), 2.0)

    def _close_transport(self) -> None:
        """Send what is queued, then close the TCP connection if open."""
        self._flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _on_lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        """Fail every pending request, and start reconnecting unless we are closing."""
        if protocol is not self._protocol:
            return
        self._lost.set()
        self._bound.clear()
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost("connection lost before the response"))
        if self._closing:
            return
        logger.warning("smpp: connection to %s:%s lost", self.config.host, self.config.port)
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Reconnect and bind again with exponential backoff; give up after ``reconnect_attempts``."""
        cfg = self.config
        delay = cfg.reconnect_backoff
        for attempt in range(1, cfg.reconnect_attempts + 1):
            await asyncio.sleep(delay)
            try:
                await self._open()
            except Rejected as exc:
                self._failure = exc
                break
            except TransportError as exc:
                logger.warning("smpp: reconnect attempt %d failed: %s", attempt, exc)
                delay = min(cfg.reconnect_backoff_max, delay * 2)
                continue
            self.stats["reconnects"] += 1
            return
        self._failure = self._failure or TransportError(
            f"SMPP connection lost; {cfg.reconnect_attempts} reconnect attempts failed"
        )
        self._bound.set()  # wake the waiters so that they see the failure

    async def wait_lost(self) -> None:
        """Return once the current connection is lost or closed (the receiver's supervisor waits on it)."""
        await self._lost.wait()

    async def _wait_bound(self) -> None:
        """Wait until bound; raise TransportError once the session has given up or is closed."""
        while True:
            if self._failure is not None:
                raise TransportError(str(self._failure)) from self._failure
            if self._closing:
                raise TransportError("SMPP session closed")
            if self._bound.is_set():
                return
            await self._bound.wait()

    # -- PDUs -------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """Queue one PDU; the PDUs queued in this loop iteration leave in one write (one syscall), or
        in writes of ``FLUSH_GROUP`` PDUs (half the window if smaller): the server starts on the first
        group while we encode the next, so both ends work at once instead of in turn."""
        out = self._out
        out.append(data)
        if len(out) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        elif len(out) >= self._flush_at:
            self._flush()

    def _flush(self) -> None:
        """Write the queued PDUs (dropped if the connection is gone: their futures fail with it)."""
        out, self._out = self._out, []
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    def _expect(self, reply: Reply | None = None) -> tuple[int, asyncio.Future[_pdu.Pdu] | Reply]:
        """Take the next sequence number and register what waits for its response (a new future
        unless ``reply`` is given)."""
        if self._transport is None or self._transport.is_closing():
            raise ConnectionLost("not connected")
        seq = next(self._seq)
        if seq > 0x7FFFFFFF:
            self._seq = itertools.count(2)
            seq = 1
        waiter = asyncio.get_running_loop().create_future() if reply is None else reply
        self._pending[seq] = (waiter, time.monotonic() + self.config.response_timeout)
        return seq, waiter

    def _request(self, command: str, *, tlvs: bytes = b"", **values: Any) -> asyncio.Future[_pdu.Pdu]:
        """Write a request; return the future of its response (deadline checked by the timer)."""
        seq, fut = self._expect()
        self._write(_pdu.encode(command, seq, tlvs=tlvs, **values))
        return fut  # type: ignore[return-value]

    def _request_submit(
        self, to: str, sender: str, part: Part, reply: Reply | None = None
    ) -> asyncio.Future[_pdu.Pdu] | Reply:
        """Write one submit_sm part (the fields shared by the session pre-encoded); return the future
        of its response, or ``reply``, which the response is handed to."""
        prefix = self._prefixes.get(sender)
        if prefix is None:
            cfg = self.config
            prefix = self._prefixes[sender] = _pdu.submit_sm_prefix(
                source_addr_ton=cfg.source_addr_ton,
                source_addr_npi=cfg.source_addr_npi,
                source_addr=sender,
                dest_addr_ton=cfg.dest_addr_ton,
                dest_addr_npi=cfg.dest_addr_npi,
            )
        seq, fut = self._expect(reply)
        self._write(
            _pdu.encode_submit_sm(
                seq,
                prefix,
                to,
                esm_class=part.esm_class,
                registered_delivery=part.registered_delivery,
                data_coding=part.data_coding,
                short_message=part.short_message,
                tlvs=part.tlvs,
            )
        )
        return fut

    def _send(self, command: str, seq: int, *, status: int = 0, **values: Any) -> None:
        """Write a response (ignored once the connection is closing)."""
        if self._transport is not None and not self._transport.is_closing():
            self._write(_pdu.encode(command, seq, status=status, **values))

    def _on_submit_resp(self, raw: bytes) -> None:
        """Hand a submit_sm_resp to what waits for it (a ``Reply`` gets it without a ``Pdu``)."""
        peeked = _pdu.peek_submit_sm_resp(raw)
        if peeked is None:
            self._on_pdu(_pdu.decode(raw))  # raises ProtocolError
            return
        seq, status, message_id = peeked
        entry = self._pending.pop(seq, None)
        if entry is None:
            logger.debug("smpp: late or unknown submit_sm_resp seq %d", seq)
        elif not entry[0].done():
            waiter = entry[0]
            if isinstance(waiter, Reply):
                waiter.answer(status, message_id)
            else:
                waiter.set_result(_pdu.decode(raw))

    def _on_pdu(self, message: _pdu.Pdu) -> None:
        """Dispatch one received PDU."""
        self._last_rx = time.monotonic()
        if message.is_response:
            entry = self._pending.pop(message.sequence, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(message)
            elif entry is None:
                logger.debug("smpp: late or unknown %s seq %d", message.command, message.sequence)
            return
        name = message.command
        if name == "enquire_link":
            self.stats["enquire_link_answered"] += 1
            self._send("enquire_link_resp", message.sequence)
        elif name == "deliver_sm":
            self.stats["deliver_sm"] += 1
            task = asyncio.get_running_loop().create_task(self._deliver(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif name == "unbind":
            self._send("unbind_resp", message.sequence)
            self._closing = True
            self._bound.clear()
            self._close_transport()
        else:
            self._send("generic_nack", message.sequence, status=_pdu.ESME_RINVCMDID)

    async def _deliver(self, message: _pdu.Pdu) -> None:
        """Parse a deliver_sm, hand it over, then answer deliver_sm_resp (0x64 if the handler failed)."""
        status = 0
        try:
            item = parse_deliver_sm(message)
            self.events.put_nowait(item)
            if self.on_deliver is not None:
                outcome = self.on_deliver(item)
                if inspect.isawaitable(outcome):
                    await outcome
        except Exception:
            logger.exception("smpp: deliver_sm handler failed; answering a temporary error")
            status = ESME_RX_T_APPN
        self._send("deliver_sm_resp", message.sequence, status=status)

    async def _tick(self) -> None:
        """Expire overdue requests and send enquire_link when the link has been idle."""
        cfg = self.config
        period = max(0.02, min(1.0, cfg.response_timeout / 4, cfg.enquire_link_interval / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for seq, (fut, deadline) in list(self._pending.items()):
                if deadline <= now:
                    del self._pending[seq]
                    if not fut.done():
                        fut.set_exception(TimeoutError("no response in time"))
            if self._bound.is_set() and now - self._last_rx >= cfg.enquire_link_interval:
                self._last_rx = now
                self.stats["enquire_link_sent"] += 1
                fut = self._request("enquire_link")
                fut.add_done_callback(self._enquire_done)

    def _enquire_done(self, fut: asyncio.Future[_pdu.Pdu]) -> None:
        """Close a connection whose enquire_link went unanswered (the reconnect follows)."""
        if not fut.cancelled() and fut.exception() is not None and not self._closing:
            logger.warning("smpp: enquire_link unanswered; dropping the connection")
            self._close_transport()

    # -- submitting -------------------------------------------------------------------------------
    async def _submit_part(self, message: SmppMessage, part: Part) -> tuple[str, str | None, int | None, int]:
        """Send one part until answered; return (outcome, message_id, status, throttled count)."""
        cfg = self.config
        throttled = 0
        while True:
            await self._wait_bound()
            await self._slots.acquire()
            try:
                await self._pacer.wait()
                if not self._bound.is_set():
                    continue
                try:
                    fut = self._request_submit(message.to, message.sender, part)
                except ConnectionLost:
                    # never written: wait for the reconnection and send it then. The transport is
                    # closing but connection_lost has not run yet: clear the flag so that
                    # _wait_bound yields to the loop instead of spinning here.
                    self._bound.clear()
                    continue
                self.stats["submitted"] += 1
                try:
                    resp = await fut  # type: ignore[misc]
                except (TimeoutError, ConnectionLost):
                    self.stats["uncertain"] += 1
                    return "uncertain", None, None, throttled
            finally:
                self._slots.give()
            if resp.status == 0:
                self._pacer.success()
                return "accepted", resp.get("message_id", ""), 0, throttled
            if resp.status in THROTTLED and throttled < cfg.throttle_retries:
                throttled += 1
                self.stats["throttled"] += 1
                pause = self._pacer.slow_down()
                logger.info("smpp: %s; pausing %.2f s", _pdu.status_name(resp.status), pause)
                continue
            return "rejected", None, resp.status, throttled

    async def submit(self, message: SmppMessage | Mapping[str, Any]) -> SubmitResult:
        """Send one message (all its parts); raise TransportError only if the session gave up."""
        msg = SmppMessage.coerce(message)
        if self.config.bind == "receiver":
            raise ConfigError("a receiver session cannot submit; bind as transceiver or transmitter")
        parts = build_parts(
            msg.text,
            concat=self.config.concat,
            reference=next(self._refs),
            registered_delivery=self.config.registered_delivery,
        )
        if len(parts) == 1:
            answers: list[Answer] = [await self._submit_part(msg, parts[0])]
        else:
            answers = list(await asyncio.gather(*(self._submit_part(msg, p) for p in parts)))
        return settle(msg.key, msg.to, answers)

    async def submit_many(
        self,
        messages: Iterable[SmppMessage | Mapping[str, Any]],
        *,
        on_result: Callable[[SubmitResult], Awaitable[None] | None] | None = None,
    ) -> list[SubmitResult]:
        """Send messages with up to ``window`` submit_sm in flight; return results in input order.

        ``on_result`` (sync or async) is called as each message settles, so a ledger can record it
        at once. If the session gives up reconnecting, the messages not yet attempted get no result
        and TransportError is raised after the attempted ones settled.
        """
        items = list(messages)
        for item in items:
            SmppMessage.check(item)  # read again as each starts, no SmppMessage built for a mapping
        if items and self.config.bind == "receiver":
            raise ConfigError("a receiver session cannot submit; bind as transceiver or transmitter")
        return await Window(self, items, on_result).run()
