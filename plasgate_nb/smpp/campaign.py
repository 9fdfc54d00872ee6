"""Send a campaign's planned rows over SMPP with the ledger's exactly-once protocol.

``send_smpp`` is what ``Campaign.send`` calls for ``transport="smpp"``. Rows go in groups (a few
windows' worth): each group is marked ``submitting`` and committed before its first submit_sm leaves,
then settled from the submit_sm_resp answers: ``accepted`` (with the message id receipts refer to),
``rejected`` (command_status and its name as the reason and error code: a final failure) or
``uncertain`` (a submit_sm written whose answer never came: never resent unless the user asks). Rows
of a group the session never got to write (it gave up reconnecting) go back to ``planned``.
Receipts (deliver_sm) become ledger events (source ``smpp``), recorded as they come, so ``collect``
and the charts work as with HTTP DLRs; the session stays bound for the final receipts (UNKNOWN,
ENROUTE and ACCEPTD are intermediate: their message is still waited for, as
:mod:`plasgate_nb._states` defines), unless none was requested.
Mobile-originated replies arriving on the session are filed in the ledger under the campaign being sent
(``Ledger.replies``), flushed with the receipts, and handed to ``on_event`` too.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from .._sync import run_sync
from ..errors import TransportError
from ..segments import count_segments
from . import pdu as _pdu
from .config import SmppConfig, SmppMessage, SubmitResult
from .receipts import MobileOriginated, Receipt, event_from_deliver
from .session import SmppSession

__all__ = ["send_smpp"]

logger = logging.getLogger("plasgate_nb")
THREAD_NAME = "plasgate-nb-smpp-campaign"
FLUSH_EVERY = 0.2  # seconds between ledger writes of buffered receipts


class _Run:
    """The state of one SMPP send: ledger, counters, buffered receipts and replies."""

    def __init__(
        self, ledger: Any, campaign: str, *, progress_bar: Any, on_event: Callable[[dict[str, Any]], Any] | None
    ) -> None:
        """Remember where to record and whom to tell."""
        self.ledger, self.campaign = ledger, campaign
        self.progress_bar, self.on_event = progress_bar, on_event
        self.counts = {"accepted": 0, "rejected": 0, "uncertain": 0, "planned": 0, "receipts": 0, "replies": 0}
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.waiting: set[str] = set()  # accepted message ids without a final receipt yet
        self.finals: set[str] = set()
        self.last_flush = time.monotonic()

    def deliver(self, item: Receipt | MobileOriginated) -> None:
        """Buffer a receipt or a reply for the ledger and tell ``on_event``."""
        event = event_from_deliver(item)
        if isinstance(item, Receipt):
            # no campaign stamp: a receipt is placed by its message id (the account's receipts for
            # earlier sends can arrive on this session too, and belong where their id is)
            self.events.append(event)
            self.counts["receipts"] += 1
            if item.final:
                self.finals.add(item.message_id)
                self.waiting.discard(item.message_id)
        else:
            # an MO has no campaign of its own: it is filed under the campaign whose session received it
            event["campaign"] = self.campaign
            event["received_at"] = datetime.now(UTC)
            self.replies.append(event)
            self.counts["replies"] += 1
        if self.on_event is not None:
            self.on_event(event)
        if time.monotonic() - self.last_flush >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Record the buffered receipts (one ledger transaction) and replies (another)."""
        self.last_flush = time.monotonic()
        if self.events:
            events, self.events = self.events, []
            self.ledger.record_events(events)
        if self.replies:
            replies, self.replies = self.replies, []
            self.ledger.record_replies(self.campaign, replies)

    def settle(self, keys: list[str], parts: dict[str, int], results: list[SubmitResult]) -> None:
        """Settle one group: accepted / rejected (by status) / uncertain; unattempted rows back to planned."""
        by_key = {str(r.key): r for r in results}
        accepted = {k: r.message_id or "" for k, r in by_key.items() if r.outcome == "accepted"}
        if accepted:
            parts = {  # a long message: the ledger keeps its one row with the ids of all its parts
                k: [p for p in r.part_ids if p] for k, r in by_key.items() if k in accepted and len(r.part_ids) > 1
            }
            self.ledger.settle(
                self.campaign, list(accepted), state="accepted", message_ids=accepted, status=0, part_ids=parts
            )
            self.waiting.update(m for m in accepted.values() if m not in self.finals)
        rejected: dict[int, list[str]] = {}
        for key, result in by_key.items():
            if result.outcome == "rejected":
                rejected.setdefault(result.status or 0, []).append(key)
        for status, group in rejected.items():
            self.ledger.settle(
                self.campaign,
                group,
                state="rejected",
                status=status,
                reason=f"submit_sm refused: {_pdu.status_name(status)}",
                error_code=_pdu.status_name(status),
            )
        unsure = [k for k, r in by_key.items() if r.outcome == "uncertain"]
        # a multi-part message may have had parts written before the session gave up
        unsure += [k for k in keys if k not in by_key and parts[k] > 1]
        if unsure:
            self.ledger.settle(
                self.campaign, unsure, state="uncertain", reason="no submit_sm_resp (timeout or connection lost)"
            )
        never = [k for k in keys if k not in by_key and parts[k] == 1]
        if never:
            self.ledger.settle(self.campaign, never, state="planned", reason="not sent: the SMPP session was lost")
        for name, n in (
            ("accepted", len(accepted)),
            ("rejected", sum(map(len, rejected.values()))),
            ("uncertain", len(unsure)),
            ("planned", len(never)),
        ):
            self.counts[name] += n
        if self.progress_bar is not None:
            self.progress_bar.update(len(keys))


async def _send(
    run: _Run, rows: pd.DataFrame, *, config: SmppConfig, sender: str, group_size: int, receipt_timeout: float
) -> None:
    """Send every row in groups, two groups in flight, then wait for receipts."""
    keys = [str(k) for k in rows["message_key"]]
    messages = [
        SmppMessage(str(to), str(text), sender, key)
        for key, to, text in zip(keys, rows["msisdn"], rows["content"], strict=True)
    ]
    parts = {m.key: count_segments(m.text).segments for m in messages}
    failure: BaseException | None = None
    async with SmppSession(config, on_deliver=run.deliver) as session:
        flying: deque[tuple[list[str], list[SubmitResult], asyncio.Task[Any]]] = deque()

        async def land() -> None:
            nonlocal failure
            group_keys, results, task = flying.popleft()
            try:
                await task
            except TransportError as exc:
                failure = failure or exc
            run.settle(group_keys, parts, results)
            run.flush()

        for start in range(0, len(messages), group_size):
            if failure is not None:
                break
            group = messages[start : start + group_size]
            group_keys = [m.key for m in group]
            run.ledger.mark_submitting(run.campaign, group_keys, batch_id=f"smpp-{uuid.uuid4().hex[:12]}")
            results: list[SubmitResult] = []
            task = asyncio.create_task(session.submit_many(group, on_result=results.append))
            flying.append((group_keys, results, task))
            if len(flying) >= 2:
                await land()
        while flying:
            await land()
        deadline = time.monotonic() + receipt_timeout
        wanted = config.registered_delivery & 0x03 == 1  # 2: receipts of failures only, 0: none at all
        while failure is None and wanted and run.waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if time.monotonic() - run.last_flush >= FLUSH_EVERY:
                run.flush()
    run.flush()
    if failure is not None:
        raise TransportError(
            f"SMPP session lost; {run.counts['planned']} rows left planned for the next send: {failure}"
        ) from failure


def send_smpp(
    ledger: Any,
    campaign_name: str,
    requests_rows: pd.DataFrame,
    *,
    config: SmppConfig,
    sender: str,
    progress_bar: Any = None,
    on_event: Callable[[dict[str, Any]], Any] | None = None,
    group_size: int | None = None,
    receipt_timeout: float = 0.0,
) -> dict[str, int]:
    """Send ``requests_rows`` (``message_key, msisdn, content``; rows the ledger holds as ``planned``)
    over one SMPP session and record everything in ``ledger``; return counts by outcome.

    ``progress_bar`` (anything with ``update(n)``) advances as groups settle; ``on_event`` receives
    every receipt event and reply dict; replies are also stored (``ledger.replies(campaign_name)``).
    The session stays bound up to ``receipt_timeout`` seconds after the last answer for the final
    receipts of the accepted messages (and any replies). Raises TransportError (after settling what
    was answered) when the session cannot be kept or re-established. ``Campaign.send`` holds the
    campaign's lease around this call; called on its own, it stops with CampaignBusy before marking a
    group when another live sender holds the campaign.
    """
    size = group_size or max(config.window * 2, 100)
    run = _Run(ledger, campaign_name, progress_bar=progress_bar, on_event=on_event)
    if len(requests_rows) == 0:
        return run.counts
    coro = _send(run, requests_rows, config=config, sender=sender, group_size=size, receipt_timeout=receipt_timeout)
    # in a cell (a loop runs in this thread) the session runs in a helper thread; Ctrl-C or the stop
    # button cancels it there and waits for it to unwind (what was answered is settled) before raising
    run_sync(coro, thread_name=THREAD_NAME)
    return run.counts
