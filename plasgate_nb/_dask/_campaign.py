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
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .._keys import message_keys
from .._masking import content_digest
from .._rules import capped, suppressed
from ..batch import build_requests
from ..errors import AudienceError
from ..ledger import SKIP_STATES, Ledger
from ..ledger._frames import INT_COLUMNS, TIME_COLUMNS, _in_list, _sql
from ..ledger._schema import messages
from . import require_dask

if TYPE_CHECKING:
    from ..campaign import Campaign, SendSummary

logger = logging.getLogger("plasgate_nb")

_CHUNK = 2000  # keys per IN list of a scoped ledger read
_SHOWN = 10
_AHEAD = 2  # partitions computed ahead of the one being sent


# ------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class _Spec:
    """What a worker needs of a campaign (no gateway, no credentials, no live connection): shipped by value.

    ``key`` is the id column (None: the index), as :meth:`Campaign._rows` reads it from its campaign.
    """

    name: str
    url: str
    key: str | None
    sender: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)
    allow_repeat: bool = False


def _spec(campaign: Campaign, *, allow_repeat: bool = False) -> _Spec:
    """The spec of ``campaign``, refusing a ledger the workers cannot open."""
    path = "single" if campaign.transport == "smpp" else campaign.transport
    options = {"max_recipients": campaign.max_recipients} if path == "batch" else {}
    return _Spec(campaign.name, campaign.ledger.url, campaign.key, campaign.gateway.sender, path, options, allow_repeat)


def _rows(spec: _Spec, part: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The partition's sendable rows as ledger rows and its audience skips (as the pandas path makes them)."""
    from ..campaign import Campaign

    return Campaign._rows(spec, part)  # type: ignore[arg-type]  # _rows reads only .key


def _held(spec: _Spec, part: pd.DataFrame, rows: pd.DataFrame) -> set[str]:
    """Keys of the partition's sendable rows in the A/B holdout."""
    from ..campaign import Campaign

    return Campaign._holdout(spec, part, rows)  # type: ignore[arg-type]  # _holdout reads only .key


def _hashes(values: Any) -> np.ndarray:
    """64-bit hashes of text values (equal texts, equal hashes)."""
    return pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)


# ------------------------------------------------------------------------------------------ running
def _dask() -> Any:
    """The ``dask`` package (``delayed``, ``compute``), or ConfigError saying how to install it."""
    require_dask()
    import dask

    return dask


def _client() -> Any:
    """The distributed Client in use, or None (then partitions are computed in this process, in order)."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - [dask] installs distributed
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _each(parts: Sequence[Any], func: Any, *args: Any, ahead: int = _AHEAD) -> Iterator[Any]:
    """Yield ``func(partition, *args)`` for each partition in order, ``ahead`` computed in advance on the workers."""
    dask = _dask()
    client = _client()
    if client is None:
        for part in parts:
            yield func(part.compute(), *args)
        return
    waiting: deque[Any] = deque()
    todo = iter(parts)
    try:
        for part in todo:
            waiting.append(client.compute(dask.delayed(func, pure=False)(part, *args)))
            if len(waiting) > ahead:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
    finally:
        for future in waiting:
            future.cancel()


# ------------------------------------------------------------------------------------------- survey
@dataclass
class _Survey:
    """What the survey learnt of the whole frame: its sendable rows and the numbers that occur twice."""

    rows: int = 0
    repeated: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))

    def tracked(self, rows: pd.DataFrame) -> np.ndarray:
        """A mask of ``rows`` whose number occurs in more than one row of the frame (may repeat another row)."""
        if not len(self.repeated) or not len(rows):
            return np.zeros(len(rows), dtype=bool)
        return np.isin(_hashes(rows["msisdn"].to_numpy()), self.repeated)


def _survey_part(part: pd.DataFrame, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Check one partition as the pandas path checks a frame; return hashes of its keys and numbers."""
    from ..ledger._rows import plan_rows

    keys = message_keys(part, spec.key)  # keys unique within the partition, none missing
    rows, _ = _rows(spec, part)
    plan_rows(rows)  # numbers, texts and keys the ledger takes
    build_requests(rows[["message_key", "msisdn", "content"]], sender=spec.sender, path=spec.path, **spec.options)
    return _hashes(keys.to_numpy()), _hashes(rows["msisdn"].to_numpy())


def _keys_among(part: pd.DataFrame, spec: _Spec, hashes: np.ndarray, number: int) -> pd.DataFrame:
    """The rows of a partition whose key hash is in ``hashes``: key, row label and partition number."""
    keys = message_keys(part, spec.key)
    hit = np.isin(_hashes(keys.to_numpy()), hashes)
    return pd.DataFrame({"key": keys.to_numpy()[hit], "row": part.index[hit], "partition": number})


def survey(ddf: Any, spec: _Spec) -> _Survey:
    """Check every partition (in parallel) and find the keys and numbers that occur in more than one row.

    Raises what the pandas path raises for an invalid row, and AudienceError naming keys that occur in
    more than one partition, before anything is written.
    """
    parts = ddf.to_delayed()
    found = list(_each(parts, _survey_part, spec, ahead=len(parts)))
    out = _Survey(rows=sum(len(numbers) for _, numbers in found))
    keys, counts = np.unique(np.concatenate([k for k, _ in found] or [np.empty(0, np.uint64)]), return_counts=True)
    if (counts > 1).any():
        _refuse_repeated_keys(parts, spec, keys[counts > 1])
    numbers, counts = np.unique(np.concatenate([n for _, n in found] or [np.empty(0, np.uint64)]), return_counts=True)
    out.repeated = numbers[counts > 1]
    return out


def _refuse_repeated_keys(parts: Sequence[Any], spec: _Spec, hashes: np.ndarray) -> None:
    """Raise AudienceError naming keys that occur in more than one partition (hash collisions aside)."""
    dask = _dask()
    pieces = [dask.delayed(_keys_among)(part, spec, hashes, i) for i, part in enumerate(parts)]
    hits = pd.concat(dask.compute(*pieces), ignore_index=True)
    dup = hits[hits["key"].duplicated(keep=False)]
    if dup.empty:
        return
    where = "the frame's index" if spec.key is None else f"key column {spec.key!r}"
    shown = sorted(set(dup["key"]))[:_SHOWN]
    places = ", ".join(f"{r!r} (partition {p})" for r, p in zip(dup["row"], dup["partition"], strict=True))
    raise AudienceError(
        f"{where} has duplicate values {shown} across partitions (rows {places}); message keys must be "
        "unique (101, 101.0 and '101' are one key): pick a unique column with key= (a Dask frame read "
        "from several files numbers each file's rows from 0)"
    )


# ------------------------------------------------------------------------------------------- repeats
@dataclass
class _Earlier:
    """The first key of each (number, text digest) pair of the tracked numbers, over the partitions so far."""

    repeated: np.ndarray
    pairs: dict[tuple[str, str], str] = field(default_factory=dict)

    def advance(self, rows: pd.DataFrame, same_as: dict[str, str]) -> None:
        """Take in a planned partition's candidate rows (still to send) whose number occurs twice."""
        for key, msisdn, content in zip(rows["message_key"], rows["msisdn"], rows["content"], strict=True):
            self.pairs.setdefault((str(msisdn), content_digest(content)), same_as.get(key, key))


def _candidates(rows: pd.DataFrame, tracked: np.ndarray, known: dict[str, str]) -> pd.DataFrame:
    """The tracked rows still to send (new, or planned), the ones the repeat rule judges."""
    mask = tracked & ~rows["message_key"].map(lambda k: known.get(k, "planned") != "planned").to_numpy(dtype=bool)
    return rows[mask]


# ------------------------------------------------------------------------------------- scoped reads
def _scoped(ledger: Ledger, campaign: str, names: list[str], keys: Sequence[str], state: str | None) -> pd.DataFrame:
    """``names`` of the messages of ``campaign`` among ``keys`` (in ``state`` when given), in plan order.

    Looked up through the ledger's unique (campaign, key) index, a few thousand keys per statement.
    """
    cols = ["message_key", *[n for n in names if n != "message_key"]]
    found: list[tuple[Any, ...]] = []
    with ledger._read("read messages") as conn:
        cid = ledger._cid(conn, campaign)
        keys = list(keys) if cid is not None else []
        for start in range(0, len(keys), _CHUNK):
            cond, params = _in_list(conn, "message_key", keys[start : start + _CHUNK])
            where = f"campaign_id = ? AND {cond}" + (" AND state = ?" if state is not None else "")
            sql = _sql(conn, f"SELECT id, {', '.join(cols)} FROM {messages.name} WHERE {where}")
            extra = (state,) if state is not None else ()
            found += conn.exec_driver_sql(sql, (cid, *params, *extra)).cursor.fetchall()
    found.sort(key=lambda row: row[0])
    frame = pd.DataFrame.from_records([row[1:] for row in found], columns=cols, coerce_float=False)
    for name in cols:  # the types the ledger's own reads give
        if name in TIME_COLUMNS:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
        elif name in INT_COLUMNS:
            frame[name] = frame[name].astype("Int64")
    return frame


def _states(ledger: Ledger, campaign: str, keys: Sequence[str]) -> dict[str, str]:
    """The state of each of ``keys`` the ledger holds for ``campaign``."""
    if not len(keys):
        return {}
    frame = _scoped(ledger, campaign, ["state"], list(keys), None)
    return dict(zip(frame["message_key"], frame["state"], strict=True))


class _KeyedLedger(Ledger):
    """A ledger whose reads of a campaign's messages cover only ``keys``: one partition's ``collect``."""

    def __init__(self, url: str, keys: Sequence[str]) -> None:
        super().__init__(url)
        self._keys = list(keys)

    def messages(self, campaign: str, *, columns: Any = None) -> pd.DataFrame:
        """The messages of ``campaign`` among this ledger's keys."""
        from ..ledger._frames import MESSAGE_COLUMNS

        return _scoped(self, campaign, list(columns or MESSAGE_COLUMNS), self._keys, None)

    def read_columns(self, campaign: str, columns: Any) -> pd.DataFrame:
        """``message_key`` and ``columns`` of the messages of ``campaign`` among this ledger's keys."""
        return self.messages(campaign, columns=list(columns))

    def pending(self, campaign: str) -> pd.DataFrame:
        """The ``planned`` messages of ``campaign`` among this ledger's keys."""
        names = ["message_key", "msisdn", "content_hash", "content_report", "encoding", "segments", "attempts"]
        return _scoped(self, campaign, names, self._keys, "planned")


# --------------------------------------------------------------------------------------------- plan
@dataclass
class _Step:
    """What one partition's plan step hands on: the repeat state, and its part of the summary."""

    earlier: _Earlier
    skipped: dict[str, int] = field(default_factory=dict)
    changed: tuple[str, ...] = ()
    same_as: dict[str, str] = field(default_factory=dict)


def _plan_step(part: pd.DataFrame, spec: _Spec, before: _Step | _Earlier, survey: _Survey) -> _Step:
    """Plan one partition into the ledger (on a worker), after the previous partition's step."""
    earlier = before.earlier if isinstance(before, _Step) else before
    rows, skipped = _rows(spec, part)
    with Ledger(spec.url) as ledger:
        tracked = survey.tracked(rows)
        known = _states(ledger, spec.name, rows.loc[tracked, "message_key"].tolist()) if tracked.any() else {}
        result = ledger.plan(spec.name, rows, allow_repeat=spec.allow_repeat, earlier=earlier.pairs)
    if not spec.allow_repeat:
        earlier.advance(_candidates(rows, tracked, known), result.same_as)
    return _Step(earlier, skipped, result.changed, result.same_as)


def plan(campaign: Campaign, ddf: Any, *, allow_repeat: bool = False) -> SendSummary:
    """``Campaign.plan`` of a Dask frame: the workers write the plan, partition after partition.

    The ledger is opened on the workers from its URL (an in-memory one cannot be: the Ledger refuses it);
    one the workers cannot reach fails with the LedgerError the workers met.
    """
    from ..campaign import SendSummary

    spec = _spec(campaign, allow_repeat=allow_repeat)
    found = survey(ddf, spec)
    summary = SendSummary(campaign.name, dry_run=True)
    for step in _chain(ddf.to_delayed(), spec, found):
        _count_skipped(summary, step.skipped)
        summary.changed += step.changed
        summary.same_as.update(step.same_as)
    return summary


def _chain(parts: Sequence[Any], spec: _Spec, found: _Survey) -> Iterator[_Step]:
    """Run the plan steps in partition order on the workers (each waits for the previous one's state)."""
    dask = _dask()
    client = _client()
    before: _Step | _Earlier = _Earlier(found.repeated)
    if client is None:
        for part in parts:
            before = _plan_step(part.compute(), spec, before, found)
            yield before
        return
    waiting: deque[Any] = deque()
    ahead = max(_AHEAD, len(client.scheduler_info().get("workers", {})))
    try:
        previous: Any = before
        for part in parts:
            previous = client.compute(dask.delayed(_plan_step, pure=False)(part, spec, previous, found))
            waiting.append(previous)
            if len(waiting) > ahead:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
    finally:
        for future in waiting:
            future.cancel()


def _count_skipped(summary: SendSummary, skipped: dict[str, int]) -> None:
    """Add a partition's audience skips to the summary."""
    for reason, n in skipped.items():
        summary.skipped_reasons[reason] = summary.skipped_reasons.get(reason, 0) + n
        summary.skipped += n


# --------------------------------------------------------------------------------------------- send
def _send_rows(part: pd.DataFrame, spec: _Spec) -> tuple[pd.DataFrame, dict[str, int], set[str]]:
    """A partition's sendable rows, audience skips and holdout keys (computed on a worker)."""
    rows, skipped = _rows(spec, part)
    return rows, skipped, _held(spec, part, rows)


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

    def send_many(self, requests: Any, *, before_send: Any = None, on_result: Any = None) -> Any:
        """Send through the client, counting each settled request's recipients."""

        async def counted(result: Any) -> None:
            if on_result is not None:
                await on_result(result)
            self._bar.update(result.request.recipients)

        return self._client.send_many(requests, before_send=before_send, on_result=counted)

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
    earlier: _Earlier
    survey: _Survey
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
        return {} if self.fresh else _states(self.campaign.ledger, self.campaign.name, keys.tolist())

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
            self.earlier.advance(_candidates(rows, tracked, known), preview.same_as)
        done = {k for k, s in known.items() if s != "planned"}
        todo = rows[~rows["message_key"].isin(done.union(preview.same_as))]
        summary.changed += preview.changed
        summary.same_as.update(preview.same_as)
        summary.already_sent += len(rows) - len(todo) - len(preview.changed) - len(preview.same_as)
        part = type(summary)(c.name, dry_run=True)
        _add(summary, c._totals(part, todo, c._build(todo, schedule_at=self.schedule_at) if len(todo) else []))

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
            self.earlier.advance(_candidates(rows, tracked, known), planned.same_as)
        ledger.skip(c.name, excluded)
        rows = rows[~rows["message_key"].isin(excluded)]
        summary.changed += planned.changed
        summary.replanned += len(planned.replanned)
        summary.same_as.update(planned.same_as)
        if planned.added == len(rows) + len(excluded) and not planned.same_as:
            todo = rows
        else:
            pending = {k for k, s in _states(ledger, c.name, rows["message_key"].tolist()).items() if s == "planned"}
            todo = rows[rows["message_key"].isin(pending.difference(planned.changed, planned.same_as))]
        summary.already_sent += len(rows) - len(todo) - len(planned.changed) - len(planned.same_as)
        self.bar.update(before - len(todo))
        if len(todo):
            self._send(todo)

    def _send(self, todo: pd.DataFrame) -> None:
        """Send one partition's rows still to send (the pandas send's last steps)."""
        c, sender = self.campaign, self.sender
        clock = c._clock()
        quiet = c.quiet_hours
        if quiet is not None and c.transport == "batch" and self.schedule_at is None and quiet.contains(clock):
            self.schedule_at = quiet.opens_at(clock)  # quiet hours began during an earlier partition
        requests = c._build(todo, schedule_at=self.schedule_at)
        part = c._totals(type(self.summary)(c.name), todo, requests)
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
            elif sender._send(requests, part):
                sender._after_quiet_began(todo, part)
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
    spec = _spec(c, allow_repeat=allow_repeat)
    found = survey(ddf, spec)
    now = c._clock()
    if c.quiet_hours is not None and c.quiet_hours.contains(now) and c.transport == "batch":
        schedule_at = schedule_at or c.quiet_hours.opens_at(now)
    c._build(pd.DataFrame({"message_key": [], "msisdn": [], "content": []}), schedule_at=schedule_at)
    summary = SendSummary(c.name, dry_run=dry_run)
    run = _Send(
        c,
        summary,
        _Earlier(found.repeated),
        found,
        now,
        datetime.now(UTC),
        schedule_at,
        fresh=c.ledger.summary(c.name)["total"] == 0,
        allow_repeat=allow_repeat,
    )
    parts = ddf.to_delayed()
    if dry_run:
        c._quiet(summary, now, schedule_at)
        for rows, skipped, held in _each(parts, _send_rows, spec):
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
                run.fresh = False
        bar = tqdm(total=found.rows, desc=f"sending {c.name}", unit="msg", disable=not c.progress)
        run.bar = bar
        run.sender = copy.copy(c)
        run.sender.progress = False
        run.sender.client = _CountingClient(c.client, bar)  # type: ignore[assignment]
        try:
            for rows, skipped, held in _each(parts, _send_rows, spec):
                run.part(rows, skipped, held)
        finally:
            bar.close()
    if not summary.recipients:
        logger.info("campaign %r: nothing new to send", c.name)
    logger.info("%s", summary)
    return summary


# ------------------------------------------------------------------------------------------ collect
def _collect_part(part: pd.DataFrame, url: str, name: str, key: str | None, price: float | None) -> pd.DataFrame:
    """``collect`` of one partition, reading only the ledger rows of its keys."""
    from .._keys import key_index
    from ..report import collect as collect_frame

    keyed = _KeyedLedger(url, key_index(part, key).tolist())
    try:
        return collect_frame(part, (keyed, name), key=key, price_per_segment=price)
    finally:
        keyed.close()


def collect(ddf: Any, campaign: Any, *, key: str | None = None, price_per_segment: float | None = None) -> Any:
    """``collect`` of a Dask frame: a Dask frame whose partitions carry their rows' ledger state."""
    from ..report import _source

    ledger, name, default_key, default_price = _source(campaign)
    key = key if key is not None else default_key
    price = price_per_segment if price_per_segment is not None else default_price
    url = ledger.url
    meta = _collect_part(ddf._meta, url, name, key, price)
    return ddf.map_partitions(_collect_part, url, name, key, price, meta=meta)


__all__ = ["collect", "plan", "send", "survey"]
