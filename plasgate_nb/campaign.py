"""A campaign ties the stages together: plan rows in the ledger, send them exactly once, resume, collect.

The ledger is the only source of truth (DESIGN.md section 6). Rows are written ``planned`` before
anything is sent; each request's rows are marked ``submitting`` and committed right before it leaves;
its answer settles them ``accepted``, ``rejected``, ``uncertain`` (ambiguous: never resent unless asked)
or back to ``planned`` (certainly not sent: retried on the next ``send``). Running ``send`` again on
the same campaign sends nothing that was already submitted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import _rules
from ._dask import is_dask_frame
from ._keys import message_keys
from ._masking import MASKED_AREA, REPORT_MASK
from .batch import Batch, iter_requests
from .compose import validate_price
from .errors import AudienceError, ConfigError
from .gateway import Gateway
from .io import warn_numeric_text
from .ledger import SKIP_STATES, Ledger
from .pacing import PHNOM_PENH, FrequencyCap, QuietHours
from .segments import count_segments
from .transport import GatewayClient, SendResult

__all__ = ["Campaign", "SendSummary", "message_keys"]

logger = logging.getLogger("plasgate_nb")

TransportName = Literal["batch", "single", "http", "smpp"]
_SETTLE = {"accepted": "accepted", "rejected": "rejected", "uncertain": "uncertain", "retry": "planned"}
_SHOWN = 10


@dataclass
class SendSummary:
    """What one ``send`` did (or, for a dry run, would do)."""

    campaign: str
    dry_run: bool = False
    requests: int = 0
    recipients: int = 0
    segments: int = 0
    accepted: int = 0
    rejected: int = 0
    uncertain: int = 0
    retry_later: int = 0
    skipped: int = 0
    already_sent: int = 0
    changed: tuple[str, ...] = ()
    replanned: int = 0
    cost: float | None = None
    projected_seconds: float | None = None
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    same_as: dict[str, str] = field(default_factory=dict)
    scheduled_for: datetime | None = None
    deferred_until: datetime | None = None

    def __str__(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        lines = [
            f"campaign {self.campaign!r}: {verb} {self.recipients} message(s), {self.segments} SMS part(s) "
            f"in {self.requests} request(s)"
        ]
        if not self.dry_run:
            lines.append(
                f"  accepted {self.accepted}, rejected {self.rejected}, uncertain {self.uncertain}, "
                f"to retry {self.retry_later}"
            )
        lines.append(
            f"  already sent before (not resent) {self.already_sent}, skipped {self.skipped}"
            + (f" {self.skipped_reasons}" if self.skipped_reasons else "")
        )
        if self.changed:
            lines.append(
                f"  changed after they were sent (not resent) {len(self.changed)}: {', '.join(self.changed[:_SHOWN])}"
            )
        if self.replanned:
            lines.append(f"  not sent before and changed since planned (sent as they are now) {self.replanned}")
        if self.same_as:
            pairs = ", ".join(f"{key} (as {earlier})" for key, earlier in list(self.same_as.items())[:_SHOWN])
            more = f" and {len(self.same_as) - _SHOWN} more" if len(self.same_as) > _SHOWN else ""
            lines.append(
                f"  same number and text as another message (not sent; allow_repeat=True sends them) "
                f"{len(self.same_as)}: {pairs}{more}"
            )
        if self.scheduled_for is not None:
            when = self.scheduled_for.astimezone(PHNOM_PENH).strftime("%Y-%m-%d %H:%M")
            verb = "would be scheduled" if self.dry_run else "scheduled"
            lines.append(f"  {verb} for {when} Asia/Phnom_Penh, the end of the quiet hours")
        if self.deferred_until is not None:
            when = self.deferred_until.astimezone(PHNOM_PENH).strftime("%Y-%m-%d %H:%M")
            verb = "would wait" if self.dry_run else "left planned"
            lines.append(f"  quiet hours: {verb} until {when} Asia/Phnom_Penh; run again then")
        if self.cost is not None:
            lines.append(f"  estimated cost {self.cost:.4f}")
        if self.projected_seconds is not None:
            lines.append(f"  projected duration under the gateway's rate limits {self.projected_seconds:.0f} s")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain data (for ``--json`` output); ``same_as`` maps a key to the earlier key."""
        out = asdict(self)
        out["changed"] = list(self.changed)
        out["same_as"] = dict(self.same_as)
        return out


class _Requests:
    """The requests of one send, built one by one as they are taken, and counted.

    Iterating yields each request once (a second pass yields nothing); :meth:`count` tells how many there
    are in all, building (and dropping) those not taken yet.
    """

    def __init__(self, requests: Iterator[Batch]) -> None:
        """Wrap a lazy iterator of requests (``batch.iter_requests``)."""
        self._requests = requests
        self._taken = 0

    def __iter__(self) -> Iterator[Batch]:
        """Yield the requests not taken yet."""
        for request in self._requests:
            self._taken += 1
            yield request

    def count(self) -> int:
        """How many requests there are: those taken so far and the rest (built, counted and dropped)."""
        self._taken += sum(1 for _ in self._requests)
        return self._taken


class _QuietHoursBegan(Exception):
    """Raised from the send hook: quiet hours began, no further request may leave."""


def _waiting(until: datetime | None) -> str:
    """The reason kept on rows quiet hours left planned."""
    when = until.astimezone(PHNOM_PENH).strftime("%Y-%m-%d %H:%M") if until else "later"
    return f"quiet hours: not sent before {when} Asia/Phnom_Penh; run again then"


def _utc_now() -> datetime:
    """The current time, aware UTC (``Campaign(clock=...)`` replaces it in tests and simulations)."""
    return datetime.now(UTC)


def _without(rows: pd.DataFrame, keys: Collection[str]) -> pd.DataFrame:
    """``rows`` but those whose message key is in ``keys`` (``rows`` itself, not a copy, when none is)."""
    if not keys:
        return rows
    hit = rows["message_key"].isin(keys).to_numpy()
    return rows[~hit] if hit.any() else rows


def _only(rows: pd.DataFrame, keys: Collection[str]) -> pd.DataFrame:
    """The ``rows`` whose message key is in ``keys`` (``rows`` itself, not a copy, when all are)."""
    hit = rows["message_key"].isin(keys).to_numpy()
    return rows if hit.all() else rows[hit]


def _report_view(content: pd.Series) -> pd.Series:
    """Masked areas shown as ``******`` (used when the frame has no ``content_report`` column)."""
    return content.str.replace(MASKED_AREA, REPORT_MASK, regex=True)


class _SmppProgress:
    """Advance the campaign's progress bar and, when given, a counter of sent messages."""

    def __init__(self, bar: Any, count: Any) -> None:
        """Wrap ``bar`` (anything with ``update(n)``) and ``count`` (a callable taking n, or None)."""
        self.bar, self.count = bar, count

    def update(self, n: int) -> None:
        """Count ``n`` settled messages."""
        self.bar.update(n)
        if self.count is not None:
            self.count(n)


class Campaign:
    """One named campaign: plan a rendered frame, send it exactly once, resume, report.

    ``gateway`` is a :class:`Gateway` (default: from ``PLASGATE_*`` environment variables);
    ``ledger`` a :class:`Ledger` or its URL/path (default ``plasgate_nb.db``); ``transport`` the send
    path: ``"batch"`` (REST batch-send, default), ``"single"`` (REST send) or ``"http"`` (HTTP API).
    ``key`` names a unique id column (default: the frame's index). ``receiver`` (a running
    :class:`~plasgate_nb.callbacks.CallbackServer` or its public URL) turns on delivery reports.

    Rules across campaigns, applied on every send: numbers on the ledger's suppression list (they replied
    STOP, or were added with ``Ledger.suppress``) are left out (state ``suppressed``); ``frequency_cap=(2,
    "7D")`` leaves out numbers that already had that many accepted messages from any campaign of the ledger
    within the window (state ``capped``); ``quiet_hours=("21:00", "08:00")`` (Asia/Phnom_Penh; off by
    default) sends nothing inside the window: REST batch-send schedules the messages for its end, the other
    transports leave them planned until a send after it, and a send running into the window stops the
    same way. Rows of an A/B holdout (a ``variant`` column holding ``"holdout"``, see
    :func:`~plasgate_nb.assign_variants`) are planned but never sent (state ``holdout``).
    """

    def __init__(
        self,
        name: str,
        *,
        gateway: Gateway | None = None,
        ledger: Ledger | str | Path | None = None,
        transport: TransportName = "batch",
        key: str | None = None,
        receiver: Any = None,
        dlr_level: int = 3,
        dlr_method: str = "POST",
        max_recipients: int = 1000,
        price_per_segment: float | None = None,
        progress: bool = True,
        client: GatewayClient | None = None,
        smpp: Any = None,
        receipt_timeout: float = 0.0,
        quiet_hours: QuietHours | tuple[str, str] | str | None = None,
        frequency_cap: FrequencyCap | tuple[int, str] | str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if transport not in ("batch", "single", "http", "smpp"):
            raise ConfigError(f"transport must be 'batch', 'single', 'http' or 'smpp', not {transport!r}")
        if transport == "smpp" and smpp is None:
            raise ConfigError("transport='smpp' needs smpp=SmppConfig(...)")
        self.smpp = smpp
        self.receipt_timeout = receipt_timeout
        self.quiet_hours = QuietHours.parse(quiet_hours)
        self.frequency_cap = FrequencyCap.parse(frequency_cap)
        self._clock = clock or _utc_now
        self.name = name
        self.gateway = gateway if gateway is not None else (client.gateway if client else Gateway.from_env())
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        self.transport: TransportName = transport
        self.key = key
        self.receiver = receiver
        self.dlr_level = dlr_level
        self.dlr_method = dlr_method
        self.max_recipients = max_recipients
        self.price_per_segment = None if price_per_segment is None else validate_price(price_per_segment)
        self.progress = progress
        self.client = client or GatewayClient(self.gateway)
        self.info = self.ledger.open_campaign(
            name, settings={"transport": transport, "id_column": key, "sender": self.gateway.sender}
        )

    def __repr__(self) -> str:
        return f"<Campaign {self.name!r} via {self.transport} to {self.gateway.base_url} ledger={self.ledger!r}>"

    # ---------------------------------------------------------------------------------------- planning
    def _rows(self, df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
        """Return the sendable rows as ledger rows, and counts of rows skipped by the audience stage."""
        if "content" not in df.columns or "msisdn" not in df.columns:
            raise AudienceError(
                "the frame needs 'msisdn' (from prepare_audience) and 'content' (from "
                f"render_messages) columns; it has {list(df.columns)}"
            )
        if self.key is not None:  # a key read as a number lost its zeros: another read would give other keys
            warn_numeric_text(df, [self.key], role="key", stacklevel=4)
        keys = message_keys(df, self.key)
        skipped: dict[str, int] = {}
        keep: np.ndarray | None = None  # None: every row (no copy of the caller's columns is made)
        if "audience_status" in df.columns:
            ok = df["audience_status"].eq("ok")
            skipped = {str(k): int(v) for k, v in df.loc[~ok, "audience_status"].value_counts().items()}
            if not ok.all():
                keep = ok.to_numpy(dtype=bool)
        wanted = [c for c in ("msisdn", "content", "content_report", "encoding", "segments") if c in df.columns]
        frame = df[wanted] if keep is None else df.loc[keep, wanted]
        # texts stay in their (pyarrow) string arrays: a million Python strings per column would cost
        # hundreds of megabytes (see benchmarks/send.py)
        content = frame["content"].astype("string").fillna("")
        rows = pd.DataFrame(
            {
                "message_key": keys.to_numpy() if keep is None else keys.to_numpy()[keep],
                "msisdn": frame["msisdn"].astype("string").array,
                "content": content.array,
            }
        )
        if "content_report" in frame.columns:
            rows["content_report"] = frame["content_report"].astype("string").array
        else:
            rows["content_report"] = _report_view(content).array
        if {"encoding", "segments"} <= set(frame.columns):
            rows["encoding"] = frame["encoding"].array
            rows["segments"] = frame["segments"].array
        else:
            counts = [count_segments(text) for text in rows["content"]]
            rows["encoding"] = [c.encoding for c in counts]
            rows["segments"] = [c.segments for c in counts]
        return rows, skipped

    def plan(self, df: pd.DataFrame, *, allow_repeat: bool = False) -> SendSummary:
        """Record the frame's sendable rows as ``planned`` (idempotent) and validate them; send nothing.

        Rows repeating the number and text of another message are reported in ``same_as`` (see :meth:`send`).
        A Dask DataFrame is planned partition by partition by the workers (plasgate_nb._dask._campaign).
        """
        if is_dask_frame(df):
            from ._dask._campaign import plan

            return plan(self, df, allow_repeat=allow_repeat)
        rows, skipped = self._rows(df)
        self._build(rows)  # validates numbers, content and sender before anything is stored
        result = self.ledger.plan(self.name, rows, allow_repeat=allow_repeat)
        return SendSummary(
            self.name,
            dry_run=True,
            skipped=sum(skipped.values()),
            skipped_reasons=skipped,
            changed=result.changed,
            same_as=result.same_as,
        )

    # ---------------------------------------------------------------------------------------- sending
    def _options(self) -> dict[str, Any]:
        """Delivery-report and callback URLs for this campaign's requests."""
        if self.receiver is None:
            return {}
        from .callbacks import callback_urls

        public = self.receiver if isinstance(self.receiver, str) else self.receiver.public_url
        urls = callback_urls(public, self.info.id, self.info.token)
        options: dict[str, Any] = {
            "dlr": True,
            "dlr_url": urls["dlr_url"],
            "dlr_level": self.dlr_level,
            "dlr_method": self.dlr_method,
            "campaign": self.name,
        }
        if self.transport == "batch":
            options.update(
                callback_url=urls["callback_url"], errback_url=urls["errback_url"], max_recipients=self.max_recipients
            )
        return options

    def _build(self, rows: pd.DataFrame, *, schedule_at: datetime | timedelta | str | None = None) -> _Requests:
        """Validate ``rows`` now and return this campaign's requests for them, built as they are sent."""
        options = self._options()
        options.setdefault("campaign", self.name)
        if self.transport == "batch":
            options.setdefault("max_recipients", self.max_recipients)
            if schedule_at is not None:
                options["schedule_at"] = schedule_at
        elif schedule_at is not None:
            raise ConfigError("schedule_at is only supported with transport='batch'")
        path = "single" if self.transport == "smpp" else self.transport  # smpp: validate as single sends
        return _Requests(
            iter_requests(rows[["message_key", "msisdn", "content"]], sender=self.gateway.sender, path=path, **options)
        )

    def send(
        self,
        df: pd.DataFrame,
        *,
        dry_run: bool = False,
        resend_uncertain: bool | Sequence[str] = False,
        resend_rejected: bool | Sequence[str] = False,
        schedule_at: datetime | timedelta | str | None = None,
        wait: float = 0.0,
        allow_repeat: bool = False,
    ) -> SendSummary:
        """Plan ``df`` and send every row not yet submitted; return a summary.

        Rows already sent (in any state but ``planned``) are never sent again; rows whose number or
        content changed after they were sent are reported, not resent (rows not yet sent go out as they
        are now). Message keys are canonical (``101``, ``101.0`` and ``"101"`` are one key), and a row
        whose number and text (as the ledger digests it: masked areas as ``******``) another message of
        this campaign already carries (submitted, accepted or uncertain, or an earlier row of ``df``) is
        not sent under its new key: it is reported in ``same_as`` (key -> the other message's key),
        unless ``allow_repeat=True``. ``uncertain`` rows are resent only with ``resend_uncertain=True``
        (or a list of their keys); ``rejected`` rows (bad credentials, balance, an unapproved sender: fix
        the cause first) only with ``resend_rejected``. ``dry_run=True`` plans nothing and sends nothing:
        it reports what would be sent, its cost and how long the gateway's rate limits make it take.

        One sender per campaign: the send holds the campaign's lease in the ledger (renewed in the
        background, released at the end). If another live sender holds it, nothing is done and
        :class:`~plasgate_nb.errors.CampaignBusy` names it (host, pid, since when), unless it finishes
        within ``wait`` seconds; the lease of a sender that died is taken over once it expires
        (``Ledger(lease_ttl=...)``), and its rows left ``submitting`` become ``uncertain``.
        A Dask DataFrame is planned and sent partition by partition, in bounded memory, with the same result.
        """
        if is_dask_frame(df):
            from ._dask._campaign import send

            return send(
                self,
                df,
                dry_run=dry_run,
                resend_uncertain=resend_uncertain,
                resend_rejected=resend_rejected,
                schedule_at=schedule_at,
                wait=wait,
                allow_repeat=allow_repeat,
            )
        rows, skipped = self._rows(df)
        held = self._holdout(df, rows)
        now = self._clock()
        known = self.ledger.messages(self.name, columns=["state"])  # rows sent before are never left out
        sent = set(known.loc[~known["state"].isin(["planned", *SKIP_STATES]), "message_key"])
        excluded = self._exclusions(_without(rows, sent), held - sent, now)
        sendable = _without(rows, excluded)
        if self.quiet_hours is not None and self.quiet_hours.contains(now) and self.transport == "batch":
            schedule_at = schedule_at or self.quiet_hours.opens_at(now)
        requests = self._build(sendable, schedule_at=schedule_at)  # validate before anything is stored
        summary = SendSummary(self.name, dry_run=dry_run, skipped=sum(skipped.values()), skipped_reasons=skipped)
        self._count_exclusions(summary, excluded)
        if dry_run:
            self._quiet(summary, now, schedule_at)
            rows = sendable
            preview = self.ledger.plan(self.name, rows, allow_repeat=allow_repeat, dry_run=True)
            done = set(known.loc[known["state"] != "planned", "message_key"])
            todo = _without(rows, done.union(preview.same_as))
            if len(todo) < len(rows):  # the requests built above already cover every row otherwise
                requests = self._build(todo, schedule_at=schedule_at) if len(todo) else _Requests(iter(()))
            summary.changed, summary.same_as = preview.changed, preview.same_as
            summary.already_sent = len(rows) - len(todo) - len(preview.changed) - len(preview.same_as)
            return self._totals(summary, todo, requests.count())
        with self.ledger.lease(self.name, wait=wait):
            return self._send_leased(
                rows,
                excluded,
                requests,
                summary,
                resend_uncertain=resend_uncertain,
                resend_rejected=resend_rejected,
                schedule_at=schedule_at,
                allow_repeat=allow_repeat,
            )

    def _send_leased(
        self,
        rows: pd.DataFrame,
        excluded: dict[str, tuple[str, str]],
        requests: _Requests,
        summary: SendSummary,
        *,
        resend_uncertain: bool | Sequence[str],
        resend_rejected: bool | Sequence[str],
        schedule_at: datetime | timedelta | str | None,
        allow_repeat: bool,
    ) -> SendSummary:
        """The part of :meth:`send` that runs under the campaign's lease: resume, requeue, plan, send."""
        self.ledger.resume(self.name)
        for wanted, requeue in (
            (resend_uncertain, self.ledger.requeue_uncertain),
            (resend_rejected, self.ledger.requeue_rejected),
        ):
            if wanted:
                requeue(self.name, None if wanted is True else list(wanted))
        # rows left out last time are re-evaluated: planned again, then left out again if the rule still holds
        self.ledger.unskip(self.name, rows["message_key"], states=SKIP_STATES)
        planned = self.ledger.plan(self.name, rows, allow_repeat=allow_repeat)
        self.ledger.skip(self.name, excluded)
        rows = _without(rows, excluded)
        summary.changed = planned.changed
        summary.replanned = len(planned.replanned)
        summary.same_as = planned.same_as
        if planned.added == len(rows) + len(excluded) and not planned.same_as:  # all new: no need to read back
            todo = rows
        else:
            pending = set(self.ledger.pending(self.name)["message_key"]).difference(planned.changed, planned.same_as)
            todo = _only(rows, pending)
        summary.already_sent = len(rows) - len(todo) - len(planned.changed) - len(planned.same_as)
        if len(todo) == 0:
            logger.info("campaign %r: nothing new to send", self.name)
            return self._totals(summary, todo, 0)
        requests = requests if len(todo) == len(rows) else self._build(todo, schedule_at=schedule_at)
        # one request per row but on REST batch-send, where the count is known once they are built
        self._totals(summary, todo, None if self.transport == "batch" else len(todo))
        if self._quiet(summary, self._clock(), schedule_at) and self.transport != "batch":
            self.ledger.note(self.name, todo["message_key"], _waiting(summary.deferred_until))
            summary.retry_later = len(todo)
            logger.warning("campaign %r: quiet hours; %d message(s) left planned", self.name, len(todo))
            return summary
        self.ledger.update_settings(self.name, {"reports": self._reports_requested()})  # collect: "not requested"
        if self.transport == "smpp":  # quiet hours are checked when the session starts
            self._send_smpp(todo, summary)
            return summary
        if self._send(requests, summary):
            self._after_quiet_began(todo, summary)
        self._totals(summary, todo, requests.count())
        logger.info("%s", summary)
        return summary

    # ---------------------------------------------------------------------------------------- rules
    def _holdout(self, df: pd.DataFrame, rows: pd.DataFrame) -> set[str]:
        """Keys of the sendable rows in the A/B holdout."""
        if "variant" not in df.columns:  # no A/B test: no second pass over the keys
            return set()
        keys = message_keys(df, self.key)
        keep = df["audience_status"].eq("ok").to_numpy() if "audience_status" in df.columns else slice(None)
        held = _rules.holdout_keys(df.loc[keep], keys[keep])
        return held & set(rows["message_key"])

    def _exclusions(self, rows: pd.DataFrame, held: set[str], now: datetime) -> dict[str, tuple[str, str]]:
        """``{key: (state, reason)}`` for the rows this send leaves out: holdout, suppressed, capped."""
        out: dict[str, tuple[str, str]] = {key: ("holdout", "A/B holdout: planned, never sent") for key in held}
        rest = _without(rows, out)
        out.update(_rules.suppressed(rest, self.ledger))
        if self.frequency_cap is not None:
            out.update(_rules.capped(_without(rest, out), self.ledger, self.frequency_cap, now))
        return out

    @staticmethod
    def _count_exclusions(summary: SendSummary, excluded: dict[str, tuple[str, str]]) -> None:
        """Add the rows left out by the rules to the summary's skipped counts."""
        for state, _ in excluded.values():
            summary.skipped_reasons[state] = summary.skipped_reasons.get(state, 0) + 1
            summary.skipped += 1

    def _quiet(self, summary: SendSummary, now: datetime, schedule_at: Any) -> bool:
        """Note in ``summary`` what quiet hours do to a send at ``now``; True when inside them."""
        if self.quiet_hours is None or not self.quiet_hours.contains(now):
            return False
        opens = self.quiet_hours.opens_at(now)
        if self.transport == "batch":
            summary.scheduled_for = schedule_at if isinstance(schedule_at, datetime) else opens
        else:
            summary.deferred_until = opens
        return True

    def _reports_requested(self) -> bool:
        """Whether this campaign's sends ask for delivery reports (a receiver; over SMPP, registered_delivery)."""
        if self.transport == "smpp":
            return bool(self.smpp.registered_delivery & 0x03)
        return self.receiver is not None

    def _totals(self, summary: SendSummary, rows: pd.DataFrame, requests: int | None) -> SendSummary:
        """Fill in the counts, cost and projected duration of what is about to be sent.

        ``requests`` is how many requests carry ``rows``; None while not known yet (REST batch-send
        before its requests are built): request count and projected duration are then left for later.
        """
        summary.requests = requests or 0
        summary.recipients = len(rows)
        summary.segments = int(pd.to_numeric(rows["segments"]).sum()) if len(rows) else 0
        if self.price_per_segment is not None:
            summary.cost = summary.segments * self.price_per_segment
        if self.transport == "smpp":  # paced by SmppConfig.rate; unpaced: as fast as the window allows
            summary.projected_seconds = len(rows) / self.smpp.rate if self.smpp.rate else None
        elif requests is not None:
            summary.projected_seconds = self.client.projected_seconds(requests, self.transport)
        return summary

    def _send(self, requests: Iterable[Batch], summary: SendSummary) -> bool:
        """Send the requests, marking each batch ``submitting`` before it leaves and settling it after.

        Returns True when quiet hours began before every request left (the rest stay ``planned``).
        """
        bar = tqdm(total=summary.recipients, desc=f"sending {self.name}", unit="msg", disable=not self.progress)
        quiet = self.quiet_hours if summary.scheduled_for is None else None  # scheduled requests may all go
        closes = quiet.closes_at(self._clock()) if quiet is not None else None

        # The ledger writes run in a worker thread: while one commit waits for the disk, the event loop
        # keeps reading the answers of the other requests in flight. The transport still awaits each
        # hook (one at a time), so a batch is committed ``submitting`` before its request leaves.
        async def before_send(request: Batch) -> None:
            if closes is not None and self._clock() >= closes:
                raise _QuietHoursBegan
            await asyncio.to_thread(self.ledger.mark_submitting, self.name, request.keys, batch_id=request.batch_id)

        async def on_result(result: SendResult) -> None:
            request: Batch = result.request
            state = _SETTLE[result.outcome]
            ids = {request.keys[0]: result.gateway_id} if request.path != "batch" and result.gateway_id else None
            await asyncio.to_thread(
                self.ledger.settle,
                self.name,
                request.keys,
                state=state,
                queue_id=result.queue_id,
                message_ids=ids,
                status=result.status,
                body=result.body,
                reason=result.reason,
            )
            counted = {
                "accepted": "accepted",
                "rejected": "rejected",
                "uncertain": "uncertain",
                "planned": "retry_later",
            }[state]
            setattr(summary, counted, getattr(summary, counted) + request.recipients)
            bar.update(request.recipients)

        try:  # requests are built as they leave; neither they nor their results are kept
            self.client.send_many(requests, before_send=before_send, on_result=on_result, keep_results=False)
        except _QuietHoursBegan:
            return True
        finally:
            bar.close()
        return False

    def _after_quiet_began(self, todo: pd.DataFrame, summary: SendSummary) -> None:
        """Quiet hours began mid-send: schedule what is left (REST batch-send) or leave it planned."""
        if self.quiet_hours is None:
            return
        opens = self.quiet_hours.opens_at(self._clock())
        pending = set(self.ledger.pending(self.name)["message_key"])
        left = _only(todo, pending)
        logger.warning("campaign %r: quiet hours began; %d message(s) not sent yet", self.name, len(left))
        if self.transport == "batch":
            summary.scheduled_for = opens
            self._send(self._build(left, schedule_at=opens), summary)
        else:
            summary.deferred_until = opens
            summary.retry_later += len(left)
            self.ledger.note(self.name, left["message_key"], _waiting(opens))

    def _send_smpp(self, rows: pd.DataFrame, summary: SendSummary) -> None:
        """Send ``rows`` over one SMPP session with the same ledger protocol (plasgate_nb.smpp.campaign)."""
        from .smpp.campaign import send_smpp

        masked = int(rows["content"].str.contains("#ma#", regex=False).sum())
        if masked:
            logger.warning(
                "campaign %r: %d message(s) have masked areas; SMPP carries the handset text, so the "
                "gateway's transaction report will show those values (use a REST or HTTP transport "
                "to keep them masked)",
                self.name,
                masked,
            )
        bar = tqdm(total=len(rows), desc=f"sending {self.name}", unit="msg", disable=not self.progress)
        # a client that counts progress (the send form's) hears SMPP progress too: no request goes through it
        try:
            counts = send_smpp(
                self.ledger,
                self.name,
                rows[["message_key", "msisdn", "content"]],
                config=self.smpp,
                sender=self.gateway.sender,
                progress_bar=_SmppProgress(bar, getattr(self.client, "count_sent", None)),
                receipt_timeout=self.receipt_timeout,
            )
        finally:
            bar.close()
        summary.accepted += counts["accepted"]
        summary.rejected += counts["rejected"]
        summary.uncertain += counts["uncertain"]
        summary.retry_later += counts["planned"]
        logger.info("%s", summary)

    # ---------------------------------------------------------------------------------------- state
    def resume(self, *, wait: float = 0.0) -> int:
        """Turn rows an interrupted run left ``submitting`` into ``uncertain``; return how many.

        Under the campaign's lease, like :meth:`send`: CampaignBusy while another live sender holds it
        (after waiting up to ``wait`` seconds).
        """
        with self.ledger.lease(self.name, wait=wait):
            return self.ledger.resume(self.name)

    def requeue_uncertain(self, keys: Sequence[str] | None = None) -> int:
        """Move ``uncertain`` rows (all, or ``keys``) back to ``planned``: the next send resends them."""
        return self.ledger.requeue_uncertain(self.name, keys)

    def status(self) -> dict[str, int]:
        """Counts of messages per state."""
        return self.ledger.summary(self.name)

    def replies(self) -> pd.DataFrame:
        """Replies from handsets (SMPP mobile-originated messages) received while this campaign was sending.

        One row per reply in arrival order: ``campaign, msisdn, destination, text, data_coding,
        received_at``. Replies reach us only over a bound SMPP session (``transport="smpp"``, kept bound
        ``receipt_timeout`` seconds after the last answer); a reply is filed under the campaign whose
        session received it.
        """
        return self.ledger.replies(self.name)

    def to_frame(self) -> pd.DataFrame:
        """The ledger's view of this campaign, one row per message."""
        return self.ledger.messages(self.name)

    def collect(self, df: pd.DataFrame) -> pd.DataFrame:
        """Return ``df`` (not mutated) with this campaign's send and delivery results joined on.

        A Dask DataFrame gives a Dask DataFrame, each partition reading the ledger rows of its own keys.
        """
        from .report import collect  # report imports campaign: keep this import local

        return collect(df, self)
