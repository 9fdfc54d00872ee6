"""The accounts, delivery model and record behind the simulator's SMPP server.

``SimpleBackend`` keeps its own accounts and gives fates by number suffix; ``GatewayBackend`` adapts the
HTTP simulator's ``model.Gateway`` (shared accounts, balance, record and delivery model). A backend
accepts one message (``accept``) or the whole messages of a received chunk (``accept_many``); a
refusal is a ``SubmitRefused`` carrying the command_status to answer. Both refuse the numbers the
SMSC refuses with ``ESME_RINVDSTADR`` (the recorded Jasmin answers its upstream's refusal so), and
give a share of messages an intermediate UNKNOWN or ENROUTE receipt before the final one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from .._states import FINAL_BAD
from .delivery import Outcome
from .model import InsufficientBalance

__all__ = ["Accepting", "GatewayBackend", "Notify", "SimpleBackend", "SmppBackend", "SubmitRefused"]

ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RSUBMITFAIL = 0x45
Notify = Callable[[str, str, str, float, float], None]  # (message_id, stat, err, submitted, done)
Accepting = tuple[str, str, str, int, int, Notify]  # (sender, to, text, parts, registered_delivery, notify)


class SmppBackend(Protocol):
    """What the SMPP server needs from the gateway model."""

    def authenticate(self, system_id: str, password: str) -> bool:
        """Tell whether the credentials are valid."""

    def accept(
        self, *, system_id: str, sender: str, to: str, text: str, parts: int, registered_delivery: int, notify: Notify
    ) -> str:
        """Record one message and return its id; later call ``notify`` with its receipt (any thread)."""

    def accept_many(self, system_id: str, messages: list[Accepting]) -> list[str | SubmitRefused]:
        """``accept`` each message in order (one call per received chunk); a refusal takes the place
        of its id. Optional: the server loops over ``accept`` for a backend without it."""


SUFFIX_FATES = {  # the receipts of a number by its last two digits, in order (the last is final)
    "99": (("UNDELIV", "001"),),
    "98": (("REJECTD", "002"),),
    "97": (("EXPIRED", "003"),),
    "96": (("UNKNOWN", "000"), ("DELIVRD", "000")),  # as recorded from Jasmin
    "95": (("DELETED", "004"),),
    "94": (("ENROUTE", "000"), ("DELIVRD", "000")),
}
REFUSED_SUFFIX = "00"  # the SMSC refuses the number: submit_sm_resp ESME_RINVDSTADR (as recorded)


class SimpleBackend:
    """Accounts in a dict and fates by the last two digits (99 UNDELIV, 98 REJECTD, 97 EXPIRED,
    96 UNKNOWN then DELIVRD, 95 DELETED, 94 ENROUTE then DELIVRD, otherwise DELIVRD), each receipt
    ``latency`` seconds after the one before; numbers ending in 00 are refused (submit_sm_resp
    ESME_RINVDSTADR). Keeps a record of what it accepted."""

    def __init__(self, accounts: dict[str, str] | None = None, *, latency: float = 0.01) -> None:
        """``accounts`` maps system_id to password (default ``{"demo": "demopass"}``)."""
        self._accounts = dict(accounts) if accounts is not None else {"demo": "demopass"}
        self.latency = latency
        self.record: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        """Name the accounts, never their passwords."""
        return f"<SimpleBackend accounts={sorted(self._accounts)}>"

    def authenticate(self, system_id: str, password: str) -> bool:
        """Check the password of ``system_id``."""
        return system_id in self._accounts and self._accounts[system_id] == password

    def accept(
        self, *, system_id: str, sender: str, to: str, text: str, parts: int, registered_delivery: int, notify: Notify
    ) -> str:
        """Record the message and schedule its receipts on the running loop (SubmitRefused: a refused number)."""
        if to.endswith(REFUSED_SUFFIX):
            raise SubmitRefused(ESME_RINVDSTADR, f"the SMSC refuses {to}")
        message_id = str(uuid.uuid4())
        self.record.append(
            {"message_id": message_id, "account": system_id, "sender": sender, "to": to, "text": text, "parts": parts}
        )
        fates = SUFFIX_FATES.get(to[-2:], (("DELIVRD", "000"),))
        wanted = registered_delivery & 0x03
        if wanted == 1 or (wanted == 2 and fates[-1][0] != "DELIVRD"):
            now, loop = time.time(), asyncio.get_running_loop()
            for step, (stat, err) in enumerate(fates if wanted == 1 else fates[-1:], start=1):
                done = now + step * self.latency
                loop.call_later(step * self.latency, notify, message_id, stat, err, now, done)
        return message_id

    def accept_many(self, system_id: str, messages: list[Accepting]) -> list[str | SubmitRefused]:
        """``accept`` each message in order (a refusal takes the place of its id)."""
        out: list[str | SubmitRefused] = []
        for s, t, x, p, r, n in messages:
            try:
                out.append(
                    self.accept(system_id=system_id, sender=s, to=t, text=x, parts=p, registered_delivery=r, notify=n)
                )
            except SubmitRefused as exc:
                out.append(exc)
        return out


class SubmitRefused(Exception):
    """A backend refuses a message; the server answers submit_sm_resp with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        """Carry the command_status to answer and a reason for the log."""
        super().__init__(reason)
        self.status = status


class GatewayBackend:
    """Adapter to the HTTP simulator's ``model.Gateway``: HTTP API username/password bind SMPP, and
    messages are checked (sender approval, balance), charged, recorded (route ``smpp``) and given fates
    by the same model; its dispatcher hands each level-2 receipt to us instead of a DLR URL."""

    def __init__(self, gateway: Any) -> None:
        """Wrap a ``plasgate_nb.simulator.model.Gateway``."""
        self.gateway = gateway

    def __repr__(self) -> str:
        """Name the accounts, never their passwords."""
        return f"<GatewayBackend accounts={sorted(self.gateway.accounts)}>"

    def authenticate(self, system_id: str, password: str) -> bool:
        """Check the credentials against the gateway's HTTP API accounts."""
        return self.gateway.authenticate_api(system_id, password) is not None

    def accept(
        self, *, system_id: str, sender: str, to: str, text: str, parts: int, registered_delivery: int, notify: Notify
    ) -> str:
        """Submit through the gateway model (route ``smpp``) with a sink turning DLR fields to receipts.

        Raise SubmitRefused: ESME_RINVSRCADR for a sender not approved for the account,
        ESME_RSUBMITFAIL when the balance cannot pay.
        """
        [answer] = self.accept_many(system_id, [(sender, to, text, parts, registered_delivery, notify)])
        if isinstance(answer, SubmitRefused):
            raise answer
        return answer

    def accept_many(self, system_id: str, messages: list[Accepting]) -> list[str | SubmitRefused]:
        """Submit each message as its own request (``Gateway.submit_each``); a refusal takes its place:
        ESME_RINVSRCADR for a sender not approved for the account, ESME_RSUBMITFAIL when the balance
        cannot pay, ESME_RINVDSTADR for a number the delivery model has the SMSC refuse (its record
        shows the outcome ESME_RINVDSTADR, and no receipt follows)."""
        gateway = self.gateway
        account = gateway.accounts[system_id]
        senders = account.senders
        out: list[str | SubmitRefused] = []
        specs: list[tuple[str, str, str, Any]] = []
        where: list[int] = []
        for sender, to, text, _parts, rd, notify in messages:
            if senders and sender not in senders:
                out.append(SubmitRefused(ESME_RINVSRCADR, f"sender {sender!r} not approved for {system_id}"))
                continue
            where.append(len(out))
            out.append("")
            specs.append((to, text, sender, self._sink(rd & 0x03, notify) if rd & 0x03 else None))
        first = len(gateway.ids)  # the recipients submit_each takes are recorded from here, in order
        taken = 0
        answers = gateway.submit_each(account, "smpp", specs)
        for position, (to, *_), answer in zip(where, specs, answers, strict=True):
            if isinstance(answer, InsufficientBalance):
                out[position] = SubmitRefused(ESME_RSUBMITFAIL, str(answer))
                continue
            refused = gateway.codes[first + taken] == Outcome.ESME_ERROR
            taken += 1
            out[position] = SubmitRefused(ESME_RINVDSTADR, f"the SMSC refuses {to}") if refused else answer
        return out

    def _sink(self, wanted: int, notify: Notify) -> Callable[[Any, dict[str, str]], None]:
        """Return the gateway sink that turns level-2 DLR fields into a receipt (``wanted``: 1 all, 2 failures)."""
        clock = self.gateway.clock

        def sink(sub: Any, fields: dict[str, str]) -> None:
            status = fields.get("message_status", "UNKNOWN")
            if fields.get("level") != "2" or (wanted == 2 and status not in FINAL_BAD):  # 2: final failures only
                return
            notify(fields["id"], status, fields.get("err", "000"), sub.due_at, clock.now())

        return sink
