"""``Campaign.plan``, ``Campaign.send`` and ``collect`` on a Dask DataFrame, partition by partition.

The results are those of the pandas path on the whole (computed) frame; no step holds more than a few
partitions in memory:

1. **survey** (parallel, on the workers): each partition is checked as the pandas path checks a frame
   (keys, numbers, texts, the requests it would build) and reduced to 64-bit hashes of its keys and
   numbers. The client finds the keys and the numbers that occur in more than one row: a key repeated
   across partitions is refused (naming it) before anything is written, and only the numbers that occur
   twice can make a row repeat another one's number and text (``same_as``).
2. **plan** (``Campaign.plan``): the workers write their partitions into the ledger themselves, one after
   another in partition order, each step handing the next a small state: the first key of every
   (number, text) pair of those numbers. ``same_as`` thus names the same earlier row as pandas does. The
   ledger is opened on the workers from its URL (PostgreSQL for a cluster; an SQLite file when the
   workers share the client's disk); each step reads only the ledger rows of its own keys and numbers.
3. **send** (``Campaign.send``): under one lease, the client takes the partitions' rows in order (the
   next computed on the workers while the current one is sent), leaves out the holdout, the suppressed
   and the capped numbers as judged against the ledger as it stood when the send began (so a number the
   send itself reaches counts towards no cap of a later partition, as in pandas), plans the partition
   and sends it. One progress bar, one summed :class:`~plasgate_nb.campaign.SendSummary`.

``collect`` maps the pandas ``collect`` over the partitions; each reads the ledger rows of its own keys.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm

from .._keys import key_index
from .._rules import capped, suppressed
from ..ledger import SKIP_STATES, Ledger
from ._partitions import (
    AHEAD,
    Earlier,
    KeyedLedger,
    Spec,
    Survey,
    campaign_spec,
    candidates,
    cluster_client,
    dask_module,
    each_partition,
    held_keys,
    in_order,
    sendable_rows,
    states_of,
    survey,
)

if TYPE_CHECKING:
    from ..campaign import Campaign, SendSummary

__all__ = ["collect", "plan", "send"]

logger = logging.getLogger("plasgate_nb")


# --------------------------------------------------------------------------------------------- plan
@dataclass
class _Step:
    """What one partition's plan step hands on: the repeat state, and its part of the summary."""

    earlier: Earlier
    skipped: dict[str, int] = field(default_factory=dict)
    changed: tuple[str, ...] = ()
    same_as: dict[str, str] = field(default_factory=dict)


def _plan_step(made: tuple[pd.DataFrame, dict[str, int]], spec: Spec, before: _Step | Earlier, survey: Survey) -> _Step:
    """Plan one partition's rows (``sendable_rows``: made beforehand, in parallel) after the previous step."""
    earlier = before.earlier if isinstance(before, _Step) else before
    rows, skipped = made
    with Ledger(spec.url) as ledger:
        tracked = survey.tracked(rows)
        known = states_of(ledger, spec.name, rows.loc[tracked, "message_key"].tolist()) if tracked.any() else {}
        result = ledger.plan(spec.name, rows, allow_repeat=spec.allow_repeat, earlier=earlier.pairs)
    if not spec.allow_repeat:
        earlier.advance(candidates(rows, tracked, known), result.same_as)
    return _Step(earlier, skipped, result.changed, result.same_as)


def plan(campaign: Campaign, ddf: Any, *, allow_repeat: bool = False) -> SendSummary:
    """``Campaign.plan`` of a Dask frame: the workers write the plan, partition after partition.

    The ledger is opened on the workers from its URL (an in-memory one cannot be: the Ledger refuses it);
    one the workers cannot reach fails with the LedgerError the workers met.
    """
    from ..campaign import SendSummary

    spec = campaign_spec(campaign, allow_repeat=allow_repeat)
    found = survey(ddf, spec)
    summary = SendSummary(campaign.name, dry_run=True)
    for step in _chain(ddf.to_delayed(), spec, found):
        _count_skipped(summary, step.skipped)
        summary.changed += step.changed
        summary.same_as.update(step.same_as)
    if summary.same_as:  # the workers logged each partition's; say it once here too
        logger.warning(
            "campaign %r: %d rows repeat the number and text of another message; not sent (allow_repeat=True)",
            campaign.name,
            len(summary.same_as),
        )
    return summary


def _chain(parts: Sequence[Any], spec: Spec, found: Survey) -> Iterator[_Step]:
    """Run the plan steps in partition order on the workers (each waits for the previous one's state)."""
    dask = dask_module()
    client = cluster_client()
    before: _Step | Earlier = Earlier(found.repeated)
    if client is None:
        for part in parts:
            before = _plan_step(sendable_rows(spec, part.compute()), spec, before, found)
            yield before
        return
    ahead = max(AHEAD, len(client.scheduler_info().get("workers", {})))

    def submitted() -> Iterator[Any]:
        previous: Any = before
        for part in parts:
            made = dask.delayed(sendable_rows, pure=False)(spec, part)  # runs while the previous step writes
            previous = client.compute(dask.delayed(_plan_step, pure=False)(made, spec, previous, found))
            yield previous

    yield from in_order(submitted(), ahead)


def _count_skipped(summary: SendSummary, skipped: dict[str, int]) -> None:
    """Add a partition's audience skips to the summary."""
    for reason, n in skipped.items():
        summary.skipped_reasons[reason] = summary.skipped_reasons.get(reason, 0) + n
        summary.skipped += n


# --------------------------------------------------------------------------------------------- send
def _send_rows(part: pd.DataFrame, spec: Spec) -> tuple[pd.DataFrame, dict[str, int], set[str]]:
    """A partition's sendable rows, audience skips and holdout keys (computed on a worker)."""
    rows, skipped = sendable_rows(spec, part)
    return rows, skipped, held_keys(spec, part, rows)


class _SentBefore:
    """The ledger's accepted messages as they stood when the send began: what a frequency cap counts."""

    def __init__(self, ledger: Ledger, before: datetime) -> None:
        self._ledger, self._before = ledger, pd.Timestamp(before)

    def accepted_since(self, since: datetime, *, numbers: Any = None) -> pd.DataFrame:
        """Messages accepted since ``since`` and submitted before the send began."""
        recent = self._ledger.accepted_since(since, numbers=numbers)
        return recent[recent["submitted_at"] < self._before]


class _CountingClient:
    """The campaign's gateway client, also advancing the send's one progress bar."""

    def __init__(self, client: Any, bar: Any) -> None:
        self._client, self._bar = client, bar

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_many(self, requests: Any, *, before_send: Any = None, on_result: Any = None, **options: Any) -> Any:
        """Send through the client, counting each settled request's recipients."""

        async def counted(result: Any) -> None:
            if on_result is not None:
                await on_result(result)
            self._bar.update(result.request.recipients)

        return self._client.send_many(requests, before_send=before_send, on_result=counted, **options)

    def count_sent(self, n: int) -> None:
        """Count ``n`` messages settled over SMPP."""
        self._bar.update(n)
        inner = getattr(self._client, "count_sent", None)
        if inner is not None:
            inner(n)


_ADDED = ("requests", "recipients", "segments", "accepted", "rejected", "uncertain", "retry_later")


def _add(total: SendSummary, part: SendSummary) -> None:
    """Add one partition's counts, cost, duration and schedule to the send's summary."""
    for name in _ADDED:
        setattr(total, name, getattr(total, name) + getattr(part, name))
    for name in ("cost", "projected_seconds"):
        value = getattr(part, name)
        if value is not None:
            setattr(total, name, (getattr(total, name) or 0) + value)
    total.scheduled_for = part.scheduled_for or total.scheduled_for
    total.deferred_until = part.deferred_until or total.deferred_until


@dataclass
class _Send:
    """One send of a Dask frame, partition by partition (the steps of ``Campaign.send`` on each)."""

    campaign: Campaign
    summary: SendSummary
    earlier: Earlier
    survey: Survey
    now: datetime
    started: datetime
    schedule_at: datetime | timedelta | str | None
    fresh: bool
    allow_repeat: bool = False
    sender: Any = None
    bar: Any = None
    reports_noted: bool = False

    def _known(self, keys: pd.Series) -> dict[str, str]:
        """States of ``keys`` in the ledger (none when the campaign was empty as the send began)."""
        return {} if self.fresh else states_of(self.campaign.ledger, self.campaign.name, keys.tolist())

    def _exclusions(self, rows: pd.DataFrame, held: set[str]) -> dict[str, tuple[str, str]]:
        """Holdout, suppressed and capped rows, judged against the ledger as the send began."""
        c = self.campaign
        out: dict[str, tuple[str, str]] = {key: ("holdout", "A/B holdout: planned, never sent") for key in held}
        rest = rows[~rows["message_key"].isin(out)]
        out.update(suppressed(rest, c.ledger))
        if c.frequency_cap is not None:
            rest = rest[~rest["message_key"].isin(out)]
            out.update(capped(rest, _SentBefore(c.ledger, self.started), c.frequency_cap, self.now))  # type: ignore[arg-type]
        return out

    def judge(self, rows: pd.DataFrame, skipped: dict[str, int], held: set[str]) -> tuple[dict[str, str], Any]:
        """Count skips and exclusions; return the known states and the exclusions."""
        _count_skipped(self.summary, skipped)
        known = self._known(rows["message_key"])
        sent = {k for k, s in known.items() if s not in ("planned", *SKIP_STATES)}
        excluded = self._exclusions(rows[~rows["message_key"].isin(sent)], held - sent)
        self.campaign._count_exclusions(self.summary, excluded)
        return known, excluded

    def preview(self, rows: pd.DataFrame, skipped: dict[str, int], held: set[str]) -> None:
        """A dry run of one partition: what would be sent (nothing is written)."""
        c, summary = self.campaign, self.summary
        known, excluded = self.judge(rows, skipped, held)
        rows = rows[~rows["message_key"].isin(excluded)]
        tracked = self.survey.tracked(rows)
        preview = c.ledger.plan(c.name, rows, allow_repeat=self.allow_repeat, dry_run=True, earlier=self.earlier.pairs)
        if not self.allow_repeat:
            self.earlier.advance(candidates(rows, tracked, known), preview.same_as)
        done = {k for k, s in known.items() if s != "planned"}
        todo = rows[~rows["message_key"].isin(done.union(preview.same_as))]
        summary.changed += preview.changed
        summary.same_as.update(preview.same_as)
        summary.already_sent += len(rows) - len(todo) - len(preview.changed) - len(preview.same_as)
        part = type(summary)(c.name, dry_run=True)
        requests = c._build(todo, schedule_at=self.schedule_at).count() if len(todo) else 0
        _add(summary, c._totals(part, todo, requests))

    def part(self, rows: pd.DataFrame, skipped: dict[str, int], held: set[str]) -> None:
        """Plan and send one partition (under the send's lease)."""
        c, summary, ledger = self.campaign, self.summary, self.campaign.ledger
        before = len(rows)
        known, excluded = self.judge(rows, skipped, held)
        if not self.fresh:
            ledger.unskip(c.name, rows["message_key"], states=SKIP_STATES)
            known = {k: ("planned" if s in SKIP_STATES else s) for k, s in known.items()}
        tracked = self.survey.tracked(rows)
        planned = ledger.plan(c.name, rows, allow_repeat=self.allow_repeat, earlier=self.earlier.pairs)
        if not self.allow_repeat:
            self.earlier.advance(candidates(rows, tracked, known), planned.same_as)
        ledger.skip(c.name, excluded)
        rows = rows[~rows["message_key"].isin(excluded)]
        summary.changed += planned.changed
        summary.replanned += len(planned.replanned)
        summary.same_as.update(planned.same_as)
        if planned.added == len(rows) + len(excluded) and not planned.same_as:
            todo = rows
        else:
            pending = {k for k, s in states_of(ledger, c.name, rows["message_key"].tolist()).items() if s == "planned"}
            todo = rows[rows["message_key"].isin(pending.difference(planned.changed, planned.same_as))]
        summary.already_sent += len(rows) - len(todo) - len(planned.changed) - len(planned.same_as)
        self.bar.update(before - len(todo))
        if len(todo):
            self._send(todo)
        else:  # nothing to send: a cost and a duration of 0, as pandas reports them
            _add(summary, c._totals(type(summary)(c.name), todo, 0))

    def _send(self, todo: pd.DataFrame) -> None:
        """Send one partition's rows still to send (the pandas send's last steps)."""
        c, sender = self.campaign, self.sender
        clock = c._clock()
        quiet = c.quiet_hours
        if quiet is not None and c.transport == "batch" and self.schedule_at is None and quiet.contains(clock):
            self.schedule_at = quiet.opens_at(clock)  # quiet hours began during an earlier partition
        requests = c._build(todo, schedule_at=self.schedule_at)
        # one request per row but on REST batch-send, where the count is known once they are built
        part = c._totals(type(self.summary)(c.name), todo, None if c.transport == "batch" else len(todo))
        try:
            if c._quiet(part, clock, self.schedule_at) and c.transport != "batch":
                from ..campaign import _waiting

                c.ledger.note(c.name, todo["message_key"], _waiting(part.deferred_until))
                part.retry_later = len(todo)
                self.bar.update(len(todo))
                return
            if not self.reports_noted:  # collect: "not requested"
                c.ledger.update_settings(c.name, {"reports": c._reports_requested()})
                self.reports_noted = True
            if c.transport == "smpp":
                sender._send_smpp(todo, part)
            else:
                if sender._send(requests, part):
                    sender._after_quiet_began(todo, part)
                c._totals(part, todo, requests.count())
        finally:
            _add(self.summary, part)


def send(
    campaign: Campaign,
    ddf: Any,
    *,
    dry_run: bool = False,
    resend_uncertain: bool | Sequence[str] = False,
    resend_rejected: bool | Sequence[str] = False,
    schedule_at: datetime | timedelta | str | None = None,
    wait: float = 0.0,
    allow_repeat: bool = False,
) -> SendSummary:
    """``Campaign.send`` of a Dask frame: plan and send partition after partition under one lease."""
    from ..campaign import SendSummary

    c = campaign
    spec = campaign_spec(c, allow_repeat=allow_repeat)
    found = survey(ddf, spec)
    now = c._clock()
    if c.quiet_hours is not None and c.quiet_hours.contains(now) and c.transport == "batch":
        schedule_at = schedule_at or c.quiet_hours.opens_at(now)
    c._build(pd.DataFrame({"message_key": [], "msisdn": [], "content": []}), schedule_at=schedule_at)
    summary = SendSummary(c.name, dry_run=dry_run)
    run = _Send(
        c,
        summary,
        Earlier(found.repeated),
        found,
        now,
        datetime.now(UTC),
        schedule_at,
        fresh=c.ledger.summary(c.name)["total"] == 0,  # read again under the lease for a send
        allow_repeat=allow_repeat,
    )
    parts = ddf.to_delayed()
    if dry_run:
        c._quiet(summary, now, schedule_at)
        for rows, skipped, held in each_partition(parts, _send_rows, spec):
            run.preview(rows, skipped, held)
        return summary
    with c.ledger.lease(c.name, wait=wait):
        c.ledger.resume(c.name)
        for wanted, requeue in (
            (resend_uncertain, c.ledger.requeue_uncertain),
            (resend_rejected, c.ledger.requeue_rejected),
        ):
            if wanted:
                requeue(c.name, None if wanted is True else list(wanted))
        run.fresh = c.ledger.summary(c.name)["total"] == 0  # an empty campaign: no partition's keys are known
        bar = tqdm(total=found.rows, desc=f"sending {c.name}", unit="msg", disable=not c.progress)
        run.bar = bar
        run.sender = copy.copy(c)
        run.sender.progress = False
        run.sender.client = _CountingClient(c.client, bar)  # type: ignore[assignment]
        try:
            for rows, skipped, held in each_partition(parts, _send_rows, spec):
                run.part(rows, skipped, held)
        finally:
            bar.close()
    if not summary.recipients:
        logger.info("campaign %r: nothing new to send", c.name)
    logger.info("%s", summary)
    return summary


# ------------------------------------------------------------------------------------------ collect
def _collect_part(part: pd.DataFrame, spec: Spec, price: float | None) -> pd.DataFrame:
    """``collect`` of one partition, reading only the ledger rows of its keys."""
    from ..report import collect as collect_frame

    keyed = KeyedLedger(spec.url, key_index(part, spec.key).tolist())
    try:
        return collect_frame(part, (keyed, spec.name), key=spec.key, price_per_segment=price)
    finally:
        keyed.close()


def collect(ddf: Any, campaign: Any, *, key: str | None = None, price_per_segment: float | None = None) -> Any:
    """``collect`` of a Dask frame: a Dask frame whose partitions carry their rows' ledger state."""
    from ..report import _source

    ledger, name, default_key, default_price = _source(campaign)
    spec = Spec(name, ledger.url, key if key is not None else default_key)  # the URL stays out of reprs
    price = price_per_segment if price_per_segment is not None else default_price
    return ddf.map_partitions(_collect_part, spec, price, meta=_collect_part(ddf._meta, spec, price))
