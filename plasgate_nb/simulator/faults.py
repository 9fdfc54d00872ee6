"""Fault injection: which faults hit a request, and an outermost ASGI middleware that applies them.

Request faults wrap the whole app: ``error_before`` / ``throttle`` answer without processing;
``error_after`` / ``delay_after`` / ``drop_after`` let the route accept the messages (recorded, and
delivered with all their receipts), then swallow its answer and send ``status`` instead (any 5xx, or
408: what a proxy or an overloaded gateway says after the request went through; a 503 carries
``Retry-After: 1``, the invitation to resend that a client must decline), hold it past the client's
timeout, or close the connection with no answer at all (the client sees ``httpx.RemoteProtocolError``:
"Server disconnected without sending a response"). Callback faults travel to the route in
``scope["sim.flags"]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import replace
from http import HTTPStatus
from typing import Any

from .config import FAULT_KINDS, ROUTES, SMPP_ROUTE, Fault

__all__ = ["PATH_ROUTES", "FaultBook", "FaultMiddleware", "fault_from_dict", "parse_fault"]

logger = logging.getLogger("plasgate_nb")

PATH_ROUTES = {"/rest/send": "rest", "/rest/batch-send": "batch", "/api/send": "api"}
REQUEST_KINDS = frozenset({"error_before", "throttle", "error_after", "delay_after", "drop_after"})
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def fault_from_dict(data: dict[str, Any]) -> Fault:
    """Build a Fault from plain values, checking its kind and route."""
    fault = Fault(**{k: v for k, v in data.items() if v is not None or k in ("probability", "count")})
    if fault.kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {fault.kind!r}; choose from {', '.join(FAULT_KINDS)}")
    if fault.route not in (*ROUTES, SMPP_ROUTE, "*"):
        raise ValueError(f"unknown route {fault.route!r}; choose from rest, batch, api, smpp or *")
    if fault.kind in ("error_before", "error_after") and not (
        isinstance(fault.status, int) and (fault.status == 408 or 500 <= fault.status <= 599)
    ):
        raise ValueError(f"fault status {fault.status!r}: use 408 or a 5xx")
    return fault


def parse_fault(text: str) -> Fault:
    """Parse the CLI form ``KIND[:ROUTE][:p=0.1|n=3][:status=503][:delay=30]``."""
    kind, *rest = text.split(":")
    fault = fault_from_dict({"kind": kind})
    for part in rest:
        key, _, value = part.partition("=")
        if not value:
            fault = replace(fault, route=key)
        elif key == "p":
            fault = replace(fault, probability=float(value))
        elif key == "n":
            fault = replace(fault, count=int(value))
        elif key in ("status", "delay"):
            fault = replace(fault, **{key: type(getattr(fault, key))(value)})
        else:
            raise ValueError(f"unknown fault option {key!r} in {text!r}")
    return fault_from_dict(fault.to_dict())


class FaultBook:
    """The active faults with their remaining counts; picks those that hit one request (seeded)."""

    def __init__(self, faults: Iterable[Fault] = (), *, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._faults: list[list[Any]] = []
        self.set(faults)

    def set(self, faults: Iterable[Fault]) -> None:
        """Replace the active faults."""
        self._faults = [[f, f.count] for f in faults]

    def describe(self) -> list[dict[str, Any]]:
        """Return the active faults with their remaining counts."""
        return [{**f.to_dict(), "remaining": left} for f, left in self._faults]

    def pick(self, route: str) -> list[Fault]:
        """Return the faults that hit this request on ``route`` (consuming counts)."""
        hit = []
        for entry in self._faults:
            fault, left = entry
            if fault.route not in ("*", route):
                continue
            if fault.count is not None:
                if left <= 0:
                    continue
                entry[1] = left - 1
            elif fault.probability is not None and self.rng.random() >= fault.probability:
                continue
            hit.append(fault)
        return hit


class FaultMiddleware:
    """Outermost ASGI wrapper applying request faults to the send routes."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], book: FaultBook) -> None:
        self.app = app
        self.book = book

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route the request through the faults that hit it."""
        route = PATH_ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        faults = self.book.pick(route) if route else []
        if not faults:
            await self.app(scope, receive, send)
            return
        kinds = {f.kind: f for f in faults}
        scope["sim.flags"] = frozenset(k for k in kinds if k not in REQUEST_KINDS)
        if "error_before" in kinds:
            await _error(send, kinds["error_before"].status)
            return
        if "throttle" in kinds:
            await _answer(send, 429, {"message": "Too many requests"}, retry_after="60")
            return
        after = [k for k in ("drop_after", "error_after", "delay_after") if k in kinds]
        if not after:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        if after[0] == "drop_after":
            await _drop(send)
        elif after[0] == "error_after":
            await _error(send, kinds["error_after"].status)
        else:
            await asyncio.sleep(kinds["delay_after"].delay)
            for message in held:
                await send(message)


async def _answer(send: Send, status: int, body: dict[str, Any], *, retry_after: str | None = None) -> None:
    """Send a small JSON answer."""
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _error(send: Send, status: int) -> None:
    """Answer ``status`` with its reason phrase; a 503 also says when to come back (``Retry-After: 1``)."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Server Error"
    await _answer(send, status, {"message": phrase}, retry_after="1" if status == 503 else None)


async def _drop(send: Send) -> None:
    """Close the client's connection without a byte of answer.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the asyncio transport;
    closing it sends FIN, and uvicorn then sees the cycle disconnected and writes nothing.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:  # not uvicorn: the closest we can do is a truncated answer
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        raise ConnectionAbortedError("simulated dropped connection")
    transport.close()
    for _ in range(20):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
