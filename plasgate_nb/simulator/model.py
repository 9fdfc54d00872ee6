"""The gateway model, independent of HTTP: accounts, balance, rate limits, the record, receipt schedule.

An HTTP route (or the SMPP server of a later issue) validates a request, then calls::

    ids, later = gateway.submit(account, route, [MessageSpec(to=[...], content=..., sender=..., dlr_url=...,
                                                             dlr_level=3, dlr_method="POST")],
                                batch_id=None, due_at=None, callback_url=None, errback_url=None,
                                flags=frozenset(), sink=None, defer=False)

which charges the account (``InsufficientBalance`` when it cannot pay), records every recipient, draws
its fate from the delivery model and schedules its receipts on a heap keyed by simulated time. With
``defer=True`` it schedules nothing and returns the events instead: the batch route hands them to
``schedule`` once its answer has left, as Jasmin's batch workers only start after the 200. Receipts
leave through the dispatcher (``dlr.Dispatcher``): as Jasmin DLR callbacks to ``dlr_url``, or, when a
``sink`` is given (SMPP: a bound receiver session), as ``sink(submission, fields)`` calls with the same
Jasmin fields (id, level, message_status, id_smsc, sub, dlvrd, subdate, donedate, err, text) from which
the SMPP server builds its deliver_sm receipt. Nothing here touches sockets or asyncio.
"""

from __future__ import annotations

import heapq
import hmac
import os
import random
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..segments import MASK_MARKER, count_segments, split_parts, strip_markers
from .clock import GATEWAY_TZ, SimClock
from .config import Account, SimulatorConfig
from .delivery import (
    FINAL_STATUS,
    INTERIM_STATUS,
    OUTCOME_NAMES,
    REPLY_AFTER,
    Outcome,
    Outcomes,
    level1_fields,
    level2_fields,
    opt_out_reply,
)
from .record import MessageIds, Messages, Numbers

__all__ = ["Gateway", "InsufficientBalance", "MessageSpec", "Sink", "Submission", "mask_report", "new_ids"]

# event kinds on the receipt heap (OPT_OUT: the handset replies an opt-out keyword)
BATCH_CALLBACK, ERRBACK, LEVEL1, LEVEL2_INTERIM, LEVEL2, OPT_OUT = range(6)
# simulated seconds between an interim report (UNKNOWN, ENROUTE) and the final one: long enough that a
# sped-up clock (tests run it 1,000 times faster) still throws them in order from concurrent workers
INTERIM_GAP = 10.0
_DELIVERED = frozenset(code for code, (status, _err) in FINAL_STATUS.items() if status == "DELIVRD")
_MASKED = re.compile(re.escape(MASK_MARKER) + ".*?" + re.escape(MASK_MARKER), re.DOTALL)
Event = tuple[float, int, int, int, int]  # (due, seq, kind, index, attempt)
Sink = Callable[["Submission", dict[str, str]], None]
_NO_FLAGS: frozenset[str] = frozenset()  # shared: one fewer object per record for the collector


class InsufficientBalance(Exception):
    """The account cannot pay for the request (the gateway answers 402)."""


def _refusal(balance: float, cost: float) -> InsufficientBalance:
    """The 402 a request gets when ``balance`` cannot pay its ``cost``."""
    return InsufficientBalance(f"balance {balance:.3f} is below the price {cost:.3f} of this request")


def mask_report(content: str) -> str:
    """Return the transaction-report view: every ``#ma#...#ma#`` area shown as ``******``."""
    if MASK_MARKER not in content:
        return content
    return _MASKED.sub("******", content).replace(MASK_MARKER, "")


def new_ids(n: int) -> list[str]:
    """Return ``n`` random version-4 UUID strings (bulk ``os.urandom``: ~4x faster than uuid4())."""
    h = os.urandom(16 * n).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-{'89ab'[int(h[i + 16], 16) & 3]}"
        f"{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


@dataclass(slots=True)
class MessageSpec:
    """One validated message of a request: its recipients, content and receipt options."""

    to: list[str]
    content: str
    sender: str
    dlr_url: str | None = None
    dlr_level: int = 1
    dlr_method: str = "POST"
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (to, error) -> errback


@dataclass(slots=True)
class Submission:
    """What recipients of one message share: content, views, price, timing and receipt options."""

    route: str
    account: str
    batch_id: str | None
    sender: str
    content: str
    content_report: str
    delivered: str
    encoding: str
    segments: int
    price: float
    accepted_at: float
    due_at: float
    dlr_url: str | None
    dlr_level: int
    dlr_method: str
    callback_url: str | None
    errback_url: str | None
    request_seq: int
    flags: frozenset[str]
    sink: Callable[[Submission, dict[str, str]], None] | None = None


class Gateway:
    """Accounts, balances, rate limits, the record of accepted messages and the receipt heap."""

    def __init__(self, config: SimulatorConfig, clock: SimClock) -> None:
        self.config = config
        self.clock = clock
        self.accounts = {a.username: a for a in config.accounts}
        self._by_key = {a.private_key: a for a in config.accounts}
        self.balances = {a.username: a.balance for a in config.accounts}
        self.outcomes = Outcomes(config.delivery, seed=config.seed)
        self.fault_rng = random.Random(None if config.seed is None else config.seed + 1)
        self._windows: dict[tuple[str, str], deque[float]] = {}
        # the record (record.py): compact columns, read back by index like lists
        self.subs = Messages(report=mask_report, deliver=lambda content: self._segments(content)[2])
        self.ids = MessageIds()
        self.tos = Numbers()
        self.unrecorded = 0  # accepted recipients kept out of the record (config.record=False)
        self._unrecorded_ids = MessageIds()  # another random key: their ids collide with no recorded one
        self.sub_of = array("I")
        self.codes = bytearray()
        self.latency = array("d")
        self.errbacks: list[tuple[int, str, str]] = []  # (submission index, to, error text)
        self._heap: list[Event] = []
        self._seq = 0
        self.request_seq = 0
        self._smsc_base = random.Random(config.seed).randrange(0x1000000, 0x8000000)
        self._no_route = frozenset(config.no_route)
        self.wake: Callable[[], None] = lambda: None

    def routed(self, to: str) -> bool:
        """Whether a route serves ``to`` (855 + national number): its prefix is not in ``no_route``."""
        return to[3:5] not in self._no_route

    # -- auth and limits ---------------------------------------------------------------------------
    def authenticate_rest(self, private_key: str | None, secret: str | None) -> Account | None:
        """Return the account for a private key + X-Secret pair, or None."""
        account = self._by_key.get(private_key or "")
        if account is None or not hmac.compare_digest(account.secret.encode(), (secret or "").encode()):
            return None
        return account

    def authenticate_api(self, username: str | None, password: str | None) -> Account | None:
        """Return the account for an HTTP API username/password, or None."""
        account = self.accounts.get(username or "")
        if account is None or not hmac.compare_digest(account.password.encode(), (password or "").encode()):
            return None
        return account

    def check_rate(self, account: Account, route: str) -> float | None:
        """Count one request; return seconds to wait (Retry-After) when over the route's limit."""
        limits = self.config.rate_limits
        limit = getattr(limits, route)
        if limit is None:
            return None
        now = self.clock.now()
        window = self._windows.setdefault((account.username, route), deque())
        while window and window[0] <= now - limits.window:
            window.popleft()
        if len(window) >= limit:
            return max(0.0, window[0] + limits.window - now)
        window.append(now)
        return None

    # -- accepting ---------------------------------------------------------------------------------
    def _segments(self, content: str) -> tuple[str, int, str]:
        """Return (encoding, segments, delivered text) after markers and ``max_parts`` truncation."""
        delivered = strip_markers(content)
        count = count_segments(delivered)
        limit = self.config.max_parts
        if limit is not None and count.segments > limit:
            delivered = "".join(split_parts(delivered)[:limit])
            count = count_segments(delivered)
        return count.encoding, count.segments, delivered

    def submit(
        self,
        account: Account,
        route: str,
        messages: list[MessageSpec],
        *,
        batch_id: str | None = None,
        due_at: float | None = None,
        callback_url: str | None = None,
        errback_url: str | None = None,
        flags: frozenset[str] = frozenset(),
        sink: Callable[[Submission, dict[str, str]], None] | None = None,
        defer: bool = False,
    ) -> tuple[list[list[str]], list[Event]]:
        """Charge, record and schedule ``messages``; return their ids and the events left to the caller.

        Those events are, with the flag ``callbacks_before_response``, the ones the caller must throw
        before answering; with ``defer``, the ones it must ``schedule`` once its answer has left.
        Otherwise they are scheduled here and none is returned.
        """
        parts = [self._segments(m.content) for m in messages]  # once per message: price and record
        per_segment = account.price_per_segment
        cost = sum(p[1] * len(m.to) for p, m in zip(parts, messages, strict=True)) * per_segment
        if cost > self.balances[account.username] + 1e-9:
            raise _refusal(self.balances[account.username], cost)
        self.balances[account.username] -= cost
        self.request_seq += 1
        if not self.config.record and not self._receipts_asked(messages, callback_url, errback_url, sink):
            return self._unrecorded(messages), []
        now = self.clock.now()
        due = now if due_at is None else due_at
        immediate = defer or "callbacks_before_response" in flags
        pending: list[Event] = []
        all_ids: list[list[str]] = []
        # every recipient of the request at once: ids, numbers and fates (drawn in the same order as
        # one message at a time, so a seed gives the same outcomes)
        tos = messages[0].to if len(messages) == 1 else [to for m in messages for to in m.to]
        start = len(self.ids)
        ids = self.ids.issue(len(tos))
        self.tos.extend(tos)
        codes, latencies = self.outcomes.draw(tos)
        self.codes.extend(codes)
        self.latency.extend(latencies)
        offset = 0  # of this message's first recipient among the request's
        for spec, (encoding, segments, delivered) in zip(messages, parts, strict=True):
            sub = Submission(
                route,
                account.username,
                batch_id,
                spec.sender,
                spec.content,
                mask_report(spec.content),
                delivered,
                encoding,
                segments,
                segments * per_segment,
                now,
                due,
                spec.dlr_url,
                spec.dlr_level,
                spec.dlr_method,
                callback_url,
                errback_url,
                self.request_seq,
                flags,
                sink,
            )
            sub_index = len(self.subs)
            self.subs.append(sub)
            n = len(spec.to)
            self.sub_of.extend([sub_index] * n)
            all_ids.append(ids[offset : offset + n])
            events = self._events(sub, sub_index, start + offset, n, due)
            offset += n
            for to, error in spec.invalid:
                if errback_url:
                    self.errbacks.append((sub_index, to, error))
                    events.append((due, 0, ERRBACK, len(self.errbacks) - 1, 0))
            if immediate:
                pending.extend(events)
            else:
                for event in events:
                    self.push(*event)
        if not immediate:
            self.wake()
        return all_ids, sorted(pending)

    def _receipts_asked(
        self, messages: list[MessageSpec], callback_url: str | None, errback_url: str | None, sink: Sink | None
    ) -> bool:
        """Whether anything will follow the request's answer: a DLR, a batch callback or errback, a reply."""
        return bool(
            callback_url
            or errback_url
            or sink is not None
            or self.config.opt_out_replies
            or any(m.dlr_url or m.invalid for m in messages)
        )

    def _unrecorded(self, messages: list[MessageSpec]) -> list[list[str]]:
        """Issue the ids of an accepted request kept out of the record (``SimulatorConfig.record=False``)."""
        self.unrecorded += sum(len(m.to) for m in messages)
        return [self._unrecorded_ids.issue(len(m.to)) for m in messages]

    def submit_each(
        self, account: Account, route: str, messages: list[tuple[str, str, str, Sink | None]]
    ) -> list[str | InsufficientBalance]:
        """Submit one-recipient messages ``(to, content, sender, sink)`` (DLR level 2, no URL) as one
        ``submit`` call per message would: each is its own request, charged (or refused: its
        InsufficientBalance is returned in place of an id), recorded and scheduled; ids and fates are
        drawn for all at once, and the dispatcher is woken only if a receipt was scheduled (the SMPP
        server's path: one call per received chunk)."""
        name, per = account.username, account.price_per_segment
        now = self.clock.now()
        out: list[str | InsufficientBalance] = []
        taken: list[tuple[int, str, Submission]] = []
        for to, content, sender, sink in messages:
            encoding, segments, delivered = self._segments(content)
            cost, balance = segments * per, self.balances[name]
            if cost > balance + 1e-9:
                out.append(_refusal(balance, cost))
                continue
            self.balances[name] = balance - cost
            self.request_seq += 1
            sub = Submission(
                route,
                name,
                None,
                sender,
                content,
                mask_report(content),
                delivered,
                encoding,
                segments,
                cost,
                now,
                now,
                None,
                2,
                "POST",
                None,
                None,
                self.request_seq,
                _NO_FLAGS,
                sink,
            )
            taken.append((len(out), to, sub))
            out.append("")
        if not taken:
            return out
        n, first_sub, first = len(taken), len(self.subs), len(self.ids)
        tos = [to for _, to, _ in taken]
        ids = self.ids.issue(n)
        self.subs.extend(sub for _, _, sub in taken)
        self.tos.extend(tos)
        self.sub_of.extend(range(first_sub, first_sub + n))
        codes, latencies = self.outcomes.draw(tos)
        self.codes.extend(codes)
        self.latency.extend(latencies)
        scheduled = self._seq
        for k, (position, _, sub) in enumerate(taken):
            out[position] = ids[k]
            if sub.sink is not None:
                for event in self._events(sub, first_sub + k, first + k, 1, now):
                    self.push(*event)
        if self._seq != scheduled:  # receipts scheduled: the dispatcher recomputes its sleep
            self.wake()
        return out

    def _events(self, sub: Submission, sub_index: int, first: int, n: int, due: float) -> list[Event]:
        """Return the (unsequenced) receipt events of recipients ``first..first+n``."""
        events: list[Event] = []
        if sub.callback_url:
            events.extend((due, 0, BATCH_CALLBACK, i, 0) for i in range(first, first + n))
        if self.config.opt_out_replies:
            events.extend(self._opt_outs(first, n, due))
        if not sub.dlr_url and sub.sink is None:
            return events
        level = sub.dlr_level
        swap = "out_of_order_callbacks" in sub.flags
        codes, latency = self.codes, self.latency
        submit = self.outcomes.submit_latency
        for i in range(first, first + n):
            l1_at = due + submit(self.tos[i])
            code = codes[i]
            l2_at = due + latency[i] if code not in (Outcome.NEVER, Outcome.ESME_ERROR) else None
            if swap and l2_at is not None:
                l1_at, l2_at = l2_at + 0.01, l1_at
            if level in (1, 3):
                events.append((l1_at, 0, LEVEL1, i, 0))
            if level in (2, 3) and l2_at is not None:
                if code in INTERIM_STATUS:
                    events.append((l2_at, 0, LEVEL2_INTERIM, i, 0))
                    l2_at += INTERIM_GAP
                events.append((l2_at, 0, LEVEL2, i, 0))
        return events

    def _opt_outs(self, first: int, n: int, due: float) -> list[Event]:
        """Return the opt-out reply events of delivered recipients ``first..first+n`` whose number opts out."""
        share, seed, codes = self.config.opt_out_replies, self.config.seed, self.codes
        events: list[Event] = []
        for i in range(first, first + n):
            code = codes[i]
            if code in _DELIVERED and opt_out_reply(self.tos[i], share=share, seed=seed) is not None:
                delivered_at = due + self.latency[i] + (INTERIM_GAP if code in INTERIM_STATUS else 0.0)
                events.append((delivered_at + REPLY_AFTER, 0, OPT_OUT, i, 0))
        return events

    def opt_out(self, index: int) -> tuple[Account, str, str, str]:
        """Return (account, handset number, address replied to, keyword) of recipient ``index``'s opt-out reply."""
        sub = self.subs[self.sub_of[index]]
        to = self.tos[index]
        text = opt_out_reply(to, share=self.config.opt_out_replies, seed=self.config.seed) or ""
        return self.accounts[sub.account], to, sub.sender, text

    # -- the receipt heap --------------------------------------------------------------------------
    def schedule(self, events: list[Event]) -> None:
        """Schedule events ``submit(defer=True)`` returned and wake the dispatcher."""
        for event in events:
            self.push(*event)
        if events:
            self.wake()

    def push(self, due: float, _seq: int, kind: int, index: int, attempt: int) -> None:
        """Schedule one receipt event at simulated time ``due``."""
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, kind, index, attempt))

    def pop_due(self, now: float, limit: int = 10_000) -> list[Event]:
        """Remove and return up to ``limit`` events due at ``now``."""
        heap, out = self._heap, []
        while heap and heap[0][0] <= now and len(out) < limit:
            out.append(heapq.heappop(heap))
        return out

    def next_due(self) -> float | None:
        """Return when the next event is due, or None."""
        return self._heap[0][0] if self._heap else None

    @property
    def scheduled(self) -> int:
        """How many receipt events wait on the heap."""
        return len(self._heap)

    def smsc_id(self, index: int) -> str:
        """Return the SMSC's message id of recipient ``index`` (hex, as Jasmin shows it)."""
        return f"{self._smsc_base + index:X}"

    def callback(self, kind: int, index: int) -> tuple[Submission, str, str, dict[str, str]]:
        """Return (submission, url, method, fields) of one receipt event."""
        if kind == ERRBACK:
            sub_index, to, error = self.errbacks[index]
            sub = self.subs[sub_index]
            return (
                sub,
                sub.errback_url or "",
                "GET",
                {"batchId": sub.batch_id or "", "to": to, "status": "0", "statusText": error},
            )
        sub = self.subs[self.sub_of[index]]
        message_id = self.ids[index]
        if kind == BATCH_CALLBACK:
            return (
                sub,
                sub.callback_url or "",
                "GET",
                {
                    "batchId": sub.batch_id or "",
                    "to": self.tos[index],
                    "status": "1",
                    "statusText": f'Success "{message_id}"',
                },
            )
        code = self.codes[index]
        if kind == LEVEL1:
            fields = level1_fields(message_id, code, self.outcomes.carrier(self.tos[index]).name)
        else:
            status, err = INTERIM_STATUS[code] if kind == LEVEL2_INTERIM else FINAL_STATUS[code]
            done = sub.due_at + self.latency[index]
            fields = level2_fields(
                message_id,
                status,
                err,
                smsc_id=self.smsc_id(index),
                submitted=sub.due_at,
                done=done,
                text=sub.delivered,
            )
        return sub, sub.dlr_url or "", sub.dlr_method, fields

    # -- reading -----------------------------------------------------------------------------------
    def status(self, index: int, now: float) -> str:
        """Return the delivery state of recipient ``index`` at simulated time ``now``."""
        sub = self.subs[self.sub_of[index]]
        code = self.codes[index]
        if now < sub.due_at:
            return "SCHEDULED"
        if code == Outcome.ESME_ERROR:
            return "ESME_RINVDSTADR"
        if code == Outcome.NEVER or now < sub.due_at + self.latency[index]:
            return "ENROUTE"
        return FINAL_STATUS[code][0]

    def records(self, offset: int = 0) -> Iterator[dict[str, Any]]:
        """Yield one dict per accepted recipient, in acceptance order, from ``offset``."""
        seen: dict[tuple[str, str], int] = {}
        for i in range(len(self.ids)):
            sub = self.subs[self.sub_of[i]]
            key = (self.tos[i], sub.content)
            attempt = seen[key] = seen.get(key, 0) + 1
            if i < offset:
                continue
            yield {
                "sequence": i,
                "message_id": self.ids[i],
                "batch_id": sub.batch_id,
                "to": self.tos[i],
                "sender": sub.sender,
                "content": sub.content,
                "content_report": sub.content_report,
                "delivered_text": sub.delivered,
                "encoding": sub.encoding,
                "segments": sub.segments,
                "price": sub.price,
                "route": sub.route,
                "account": sub.account,
                "accepted_at": sub.accepted_at,
                "due_at": sub.due_at,
                "request_seq": sub.request_seq,
                "attempt": attempt,
                "outcome": OUTCOME_NAMES[self.codes[i]],
            }

    def report(self, account: Account, *, batch_id: str | None = None) -> list[dict[str, Any]]:
        """Return the account's transaction report: masked content, state now, price, times."""
        now = self.clock.now()
        rows = []
        for i in range(len(self.ids)):
            sub = self.subs[self.sub_of[i]]
            if sub.account != account.username or (batch_id and sub.batch_id != batch_id):
                continue
            rows.append(
                {
                    "message_id": self.ids[i],
                    "batch_id": sub.batch_id,
                    "to": self.tos[i],
                    "sender": sub.sender,
                    "content": sub.content_report,
                    "status": self.status(i, now),
                    "segments": sub.segments,
                    "encoding": sub.encoding,
                    "price": round(sub.price, 6),
                    "submitted_at": _local(sub.accepted_at),
                    "scheduled_at": _local(sub.due_at),
                }
            )
        return rows


def _local(ts: float) -> str:
    """Format epoch seconds as gateway-local 'YYYY-MM-DD HH:MM:SS'."""
    return datetime.fromtimestamp(ts, GATEWAY_TZ).strftime("%Y-%m-%d %H:%M:%S")
