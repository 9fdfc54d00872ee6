"""Throw receipts: DLR callbacks (retried until ``ACK/Jasmin``) and batch callbacks, off the request path.

One scheduler task pops due events from the gateway's heap into a bounded queue; a fixed pool of worker
tasks sends them with one shared ``httpx.AsyncClient`` inside the server's event loop, so a burst of
receipts never blocks request handling and never grows one task per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlencode

import httpx

from .model import BATCH_CALLBACK, ERRBACK, Event, Gateway

__all__ = ["DLR_HEADERS", "Dispatcher"]

logger = logging.getLogger("plasgate_nb")

DLR_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/plain",
               "User-Agent": "Jasmin gateway/1.0 DLRThrower"}
BATCH_HEADERS = {"User-Agent": "python-requests/2.31.0", "Accept": "*/*"}
ACK = "ACK/Jasmin"


class Dispatcher:
    """Sends due receipt events; a DLR is retried ``retries`` times until the receiver ACKs it."""

    def __init__(self, gateway: Gateway, *, concurrency: int = 8, timeout: float = 5.0, retries: int = 3,
                 retry_delay: float = 1.0) -> None:
        self.gateway = gateway
        self.clock = gateway.clock
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.stats = {"attempts": 0, "acked": 0, "retried": 0, "given_up": 0, "duplicates": 0}
        self.in_flight = 0
        self._client: httpx.AsyncClient | None = None
        self._wake: asyncio.Event | None = None
        self._queue: asyncio.Queue[Event] | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Open the HTTP client and start the scheduler and the workers (inside the server's loop)."""
        self._client = httpx.AsyncClient(
            timeout=self.timeout, trust_env=False,
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency))
        self._wake = asyncio.Event()
        self._queue = asyncio.Queue(maxsize=self.concurrency * 8)
        self.gateway.wake = self._wake.set
        self.clock.on_change(self._wake.set)
        self._tasks = [asyncio.create_task(self._schedule(), name="plasgate-nb-dlr-scheduler")]
        self._tasks += [asyncio.create_task(self._work(), name="plasgate-nb-dlr-worker")
                        for _ in range(self.concurrency)]

    async def stop(self) -> None:
        """Cancel the tasks and close the client; pending receipts are dropped."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def idle(self) -> bool:
        """Whether no receipt is scheduled, queued or being sent."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return not self.gateway.scheduled and not queued and not self.in_flight

    async def _schedule(self) -> None:
        """Move due events to the queue; sleep until the next one is due or the clock jumps."""
        wake, queue = self._wake, self._queue
        if wake is None or queue is None:
            return
        while True:
            for event in self.gateway.pop_due(self.clock.now()):
                await queue.put(event)
            wake.clear()
            nxt = self.gateway.next_due()
            if nxt is not None and nxt <= self.clock.now():
                continue
            timeout = None if nxt is None else self.clock.real_seconds(nxt - self.clock.now()) + 0.001
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    async def _work(self) -> None:
        """Send queued events one at a time, forever."""
        queue = self._queue
        if queue is None:
            return
        while True:
            event = await queue.get()
            self.in_flight += 1
            try:
                await self.throw(event)
            except Exception:  # pragma: no cover - a bug must not kill the worker
                logger.exception("simulator: receipt %r failed", event)
            finally:
                self.in_flight -= 1

    async def throw_now(self, events: list[Event]) -> None:
        """Send ``events`` in order right now (the ``callbacks_before_response`` fault)."""
        for event in events:
            await self.throw(event)

    async def throw(self, event: Event) -> None:
        """Send one event; schedule a retry, or a duplicate when the request asked for one."""
        _due, _seq, kind, index, attempt = event
        sub, url, method, fields = self.gateway.callback(kind, index)
        if sub.sink is not None and kind not in (BATCH_CALLBACK, ERRBACK):
            sub.sink(sub, fields)
            return
        ok = await self._send(kind, url, method, fields)
        if ok:
            self.stats["acked"] += 1
            if attempt >= 0 and "duplicate_callbacks" in sub.flags:
                self.stats["duplicates"] += 1
                self._push(self.clock.now(), kind, index, -1)
        elif 0 <= attempt < self.retries:
            self.stats["retried"] += 1
            self._push(self.clock.now() + self.retry_delay, kind, index, attempt + 1)
        else:
            self.stats["given_up"] += 1
            logger.info("simulator: gave up %s after %d attempts", url.split("?")[0], attempt + 1)

    def _push(self, due: float, kind: int, index: int, attempt: int) -> None:
        """Put an event back on the heap and wake the scheduler."""
        self.gateway.push(due, 0, kind, index, attempt)
        if self._wake is not None:
            self._wake.set()

    async def _send(self, kind: int, url: str, method: str, fields: dict[str, str]) -> bool:
        """Send one callback; True when it counts as received (DLR: 200 + ``ACK/Jasmin``)."""
        if self._client is None or not url:
            return False
        self.stats["attempts"] += 1
        body = urlencode(fields)
        try:
            if kind in (BATCH_CALLBACK, ERRBACK):
                resp = await self._client.get(_with_query(url, body), headers=BATCH_HEADERS)
                return resp.status_code < 500
            if method == "GET":
                resp = await self._client.get(_with_query(url, body), headers=DLR_HEADERS)
            else:
                resp = await self._client.post(url, content=body.encode(), headers=DLR_HEADERS)
        except httpx.HTTPError as exc:
            logger.debug("simulator: callback to %s failed: %s", url.split("?")[0], type(exc).__name__)
            return False
        return resp.status_code == 200 and resp.text == ACK


def _with_query(url: str, query: str) -> str:
    """Append ``query`` to ``url``, keeping the query string the client put in it (its own keys)."""
    return f"{url}{'&' if '?' in url else '?'}{query}"
