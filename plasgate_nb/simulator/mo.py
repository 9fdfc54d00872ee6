"""Replies from handsets over HTTP, as Jasmin's deliverSmHttpThrower posts them to an MO URL.

Recorded in ``reference/jasmin/http_api.md`` section 5: ``POST`` with a form body ``id, from, to,
origin-connector, content, binary, priority, coding``, where ``content`` is the short message's raw
octets percent-encoded (UTF-16BE for a UCS-2 reply), ``binary`` the same octets in hex and ``coding``
the data_coding as one raw byte (``%00`` or ``%08``). Like a DLR, the POST is retried until the
receiver answers 200 ``ACK/Jasmin``, ``retries`` times ``retry_delay`` seconds apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import quote_plus

from ..segments import GSM7, count_segments
from ..smpp.message import DC_GSM7, DC_UCS2, fast_encode_gsm7
from ._wire import WireClient, WireError, encode_headers

__all__ = ["MO_HEADERS", "MoThrower", "mo_body"]

logger = logging.getLogger("plasgate_nb")

MO_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "text/plain",
    "User-Agent": "Jasmin gateway/1.0 deliverSmHttpThrower",
}
_BLOCK = encode_headers(MO_HEADERS)
_ACK = b"ACK/Jasmin"


def mo_body(*, sender: str, destination: str, text: str, message_id: str | None = None) -> bytes:
    """The form body Jasmin posts for a reply ``text`` from handset ``sender`` to ``destination``."""
    gsm = count_segments(text).encoding == GSM7
    octets = fast_encode_gsm7(text) if gsm else text.encode("utf-16-be")
    fields = [
        ("id", message_id or str(uuid.uuid4())),
        ("from", sender),
        ("to", destination),
        ("origin-connector", "upstream"),
        ("content", quote_plus(octets)),
        ("binary", octets.hex()),
        ("priority", "0"),
        ("coding", quote_plus(chr(DC_GSM7 if gsm else DC_UCS2))),
    ]
    return "&".join(f"{k}={v if k in ('content', 'coding') else quote_plus(v)}" for k, v in fields).encode("ascii")


class MoThrower:
    """Post replies to MO URLs from the server's loop, each retried until ``ACK/Jasmin``."""

    def __init__(self, *, retries: int = 3, retry_delay: float = 1.0, timeout: float = 5.0) -> None:
        self.retries = retries
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.stats = {"attempts": 0, "acked": 0, "given_up": 0}
        self._client: WireClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        """Replies not yet ACKed nor given up."""
        return len(self._tasks)

    def throw(self, url: str, *, sender: str, destination: str, text: str) -> None:
        """Start posting one reply (on the running loop); returns at once."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"an MO URL must be http(s), not {url[:40]!r}")
        body = mo_body(sender=sender, destination=destination, text=text)
        task = asyncio.get_running_loop().create_task(self._post(url, body), name="plasgate-nb-mo")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, body: bytes) -> None:
        """Post ``body`` until the receiver ACKs it, or give up after ``retries`` retries."""
        if self._client is None:
            self._client = WireClient(timeout=self.timeout, max_idle=4)
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delay)
            self.stats["attempts"] += 1
            try:
                resp = await self._client.request("POST", url, headers=_BLOCK, body=body)
            except WireError as exc:
                logger.debug("simulator: MO post failed: %s", type(exc).__name__)
                continue
            if resp.status == 200 and resp.body == _ACK:
                self.stats["acked"] += 1
                return
        self.stats["given_up"] += 1

    async def aclose(self) -> None:
        """Stop posting and close the connections."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
