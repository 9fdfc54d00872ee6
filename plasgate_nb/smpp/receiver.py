"""A long-lived SMPP receiver: keep a ``bind_receiver`` to the gateway and hand over what it delivers.

Receipts (deliver_sm with esm_class 0x04) that arrive after a campaign's session unbound, and replies
from handsets (mobile-originated deliver_sm), are passed to ``on_receipt`` (a ledger event, source
``"smpp"``) and ``on_replies`` (a list of one reply dict); each deliver_sm is answered only once its
handler returned, and with a temporary error (the gateway delivers it again) if the handler raised.
A lost connection, a refused bind or an unanswered enquire_link starts a reconnection after
``reconnect_backoff`` seconds, doubling up to ``reconnect_backoff_max``, forever, until ``stop()``.
Runs on the caller's event loop (the callback receiver's); one :class:`SmppSession` per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import Rejected, TransportError
from .config import SmppConfig
from .receipts import MobileOriginated, Receipt, mo_event, receipt_event
from .session import SmppSession

__all__ = ["SmppReceiver"]

logger = logging.getLogger("plasgate_nb")
TASK_NAME = "plasgate-nb-smpp-receiver"


class SmppReceiver:
    """Keep one receiver bind alive and pass its receipts and replies on; ``start()`` then ``await stop()``.

    ``config`` is used with ``bind="receiver"`` whatever it says; its ``reconnect_backoff`` and
    ``reconnect_backoff_max`` pace the reconnections (``reconnect_attempts`` does not apply: a
    receiver never gives up). ``stats`` counts binds, losses, receipts and replies.
    """

    def __init__(
        self,
        config: SmppConfig,
        *,
        on_receipt: Callable[[dict[str, Any]], Awaitable[Any]],
        on_replies: Callable[[list[dict[str, Any]]], Awaitable[Any]],
    ) -> None:
        """Prepare the receiver; nothing connects until ``start()``."""
        self.config = dataclasses.replace(config, bind="receiver", reconnect_attempts=0)
        self.on_receipt = on_receipt
        self.on_replies = on_replies
        self.stats = {"binds": 0, "lost": 0, "failed_binds": 0, "receipts": 0, "replies": 0}
        self.session: SmppSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound = asyncio.Event()

    def __repr__(self) -> str:
        """Where the receiver binds, never the credentials."""
        state = "bound" if self.bound else "unbound"
        return f"<SmppReceiver {self.config.host}:{self.config.port} {state}>"

    @property
    def bound(self) -> bool:
        """Whether the receiver is bound right now."""
        return self.session is not None and self.session.bound

    def start(self) -> None:
        """Start keeping the bind (on the running loop); returns at once."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=TASK_NAME)

    async def wait_bound(self) -> None:
        """Return once the receiver is bound (again)."""
        while not self.bound:
            self._bound.clear()
            await self._bound.wait()

    async def stop(self) -> None:
        """Stop reconnecting, unbind and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver(self, item: Receipt | MobileOriginated) -> None:
        """Hand a receipt or a reply over; raising makes the session answer a temporary error."""
        if isinstance(item, Receipt):
            await self.on_receipt(receipt_event(item))
            self.stats["receipts"] += 1
        else:
            reply = mo_event(item)
            await self.on_replies([{k: reply[k] for k in ("msisdn", "to", "text", "data_coding")}])
            self.stats["replies"] += 1

    @staticmethod
    async def _close(session: SmppSession) -> None:
        """Close a session; a close that fails (no unbind_resp, a stuck socket) is logged, never raised."""
        try:
            await session.close()
        except (TimeoutError, TransportError, OSError) as exc:
            logger.info("smpp receiver: closing the session: %s", type(exc).__name__)

    async def _run(self) -> None:
        """Bind, wait for the connection to end, and bind again after a growing pause, until cancelled."""
        cfg = self.config
        delay = cfg.reconnect_backoff
        while True:
            session = SmppSession(cfg, on_deliver=self._deliver)
            try:
                try:
                    await session.connect()
                except (TransportError, Rejected) as exc:
                    self.stats["failed_binds"] += 1
                    logger.warning(
                        "smpp receiver: cannot bind to %s:%s (%s); again in %.3g s", cfg.host, cfg.port, exc, delay
                    )
                else:
                    self.session = session
                    self.stats["binds"] += 1
                    self._bound.set()
                    delay = cfg.reconnect_backoff
                    await session.wait_lost()
                    self.stats["lost"] += 1
                    logger.warning(
                        "smpp receiver: connection to %s:%s lost; binding again in %.3g s", cfg.host, cfg.port, delay
                    )
            finally:  # also when stopped: unbind cleanly, and let deliveries in hand settle
                await self._close(session)
            await asyncio.sleep(delay)
            delay = min(cfg.reconnect_backoff_max, delay * 2)
