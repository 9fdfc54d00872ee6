"""The Ledger: the durable record of every campaign, message and delivery event (SQLAlchemy Core)."""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from .._keys import DIGEST_LENGTH
from ..errors import LedgerError, OptionError
from ..optout import Keywords
from . import _arrow, _columns, _compare, _copy, _lease, _pairing, _suppress
from ._events import normalize
from ._frames import (
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    _sql,
    bind_value,
    bulk_insert,
    read_frame,
    rows_by_key,
    update_rows,
)
from ._replies import reply_frame, reply_rows
from ._rows import (
    PLAN_COLUMNS,
    PlanRows,
    as_utc,
    describe,
    keys_of,
    plan_rows,
    repeat_reason,
    scrub,
)
from ._schema import (
    REPLY_TEXT_MAX,
    WRITE_OPTION,
    campaigns,
    create_schema,
    events,
    lock_writers,
    make_engine,
    messages,
    meta,
    redacted,
    resolve_url,
)
from ._schema import replies as reply_table
from ._wal import WalFile, deferred_sync

logger = logging.getLogger("plasgate_nb")

STATES = ("planned", "submitting", "accepted", "rejected", "uncertain", "holdout", "suppressed", "capped")
# never sent, by decision: the A/B holdout, numbers on the suppression list, numbers over the frequency cap
SKIP_STATES = ("holdout", "suppressed", "capped")
SETTLE_STATES = frozenset({"accepted", "rejected", "uncertain", "planned"})
MAX_BODY = 4000
INTERRUPTED = "interrupted: request may have reached the gateway"
HEX_DIGITS = "0123456789abcdef"
REPLY_TOKEN_KEY = "reply_token"


def _now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def _digest_of(item: Any) -> str | None:
    """An event's ``key_digest`` (32 hex characters) or None; LedgerError when malformed."""
    digest = item.get("key_digest") if isinstance(item, Mapping) else None
    if digest is None:
        return None
    if not isinstance(digest, str) or len(digest) != DIGEST_LENGTH or digest.strip(HEX_DIGITS):
        raise LedgerError("event field 'key_digest' must be 32 hexadecimal characters")
    return digest


@dataclass(frozen=True)
class PlanResult:
    """What ``Ledger.plan`` did: rows added, kept unchanged, replanned, and keys already sent that changed.

    ``replanned`` keys were still ``planned`` (never sent) and now carry the new number and text;
    ``changed`` keys were already submitted with another number or text: left as they are, not resent.
    ``same_as`` maps each key still to send whose number and text another message of the campaign
    already carries (submitted, accepted or uncertain, or earlier in these rows) to that message's key:
    those rows are planned but must not be sent unless repeats are allowed.
    """

    campaign: str
    added: int
    kept: int
    changed: tuple[str, ...] = field(default=())
    replanned: tuple[str, ...] = field(default=())
    same_as: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignInfo:
    """A campaign's stored record; the callback token is kept out of the repr.

    ``id`` is the ledger's number for the campaign: callback URLs carry it (never the name).
    """

    name: str
    created_at: datetime
    settings: dict[str, Any]
    token: str = field(repr=False)
    id: int = 0


class Ledger:
    """A durable campaign ledger in an SQLite file (default ``plasgate_nb.db``) or PostgreSQL.

    ``Ledger()`` opens ``./plasgate_nb.db``; ``Ledger("path/to/file.db")`` another file;
    ``Ledger("postgresql://user@host/db")`` a PostgreSQL database (psycopg 3). The schema is created on
    first use. Several processes may share one ledger (writers take turns); create one ``Ledger`` per
    process (it pickles as its URL). One sender per campaign: a sender holds the campaign's
    :meth:`lease`, which lapses ``lease_ttl`` seconds after its holder stops renewing it (it died).
    """

    def __init__(self, url: str | Path | None = None, *, lease_ttl: float = _lease.DEFAULT_TTL) -> None:
        if not isinstance(lease_ttl, int | float) or not math.isfinite(lease_ttl) or lease_ttl <= 0:
            raise OptionError(f"lease_ttl must be a positive number of seconds, not {lease_ttl!r}")
        self._url = resolve_url(url)
        self.lease_ttl = float(lease_ttl)
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()
        self._cids: dict[str, int] = {}
        self._held: dict[int, str] = {}  # campaign id -> owner of the lease this ledger holds on it
        self._wal = WalFile(self._url.database or "") if self._url.get_backend_name() == "sqlite" else None

    @property
    def url(self) -> str:
        """The full database URL (with any password: pass it to child processes, never print it)."""
        return self._url.render_as_string(hide_password=False)

    def __repr__(self) -> str:
        return f"Ledger({redacted(self._url)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "lease_ttl": self.lease_ttl}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], lease_ttl=state.get("lease_ttl", _lease.DEFAULT_TTL))  # type: ignore[misc]

    def close(self) -> None:
        """Close the ledger's database connections (it reopens on next use)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
            if self._wal is not None:
                self._wal.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections -------------------------------------------------------------------------------

    def _ready(self) -> sa.Engine:
        """Return the engine, creating it and the schema on first use."""
        with self._lock:
            if self._engine is None:
                engine = make_engine(self._url)
                try:
                    with engine.connect() as conn:
                        conn.execution_options(**{WRITE_OPTION: True})
                        with conn.begin():
                            lock_writers(conn)
                            create_schema(conn)
                except sa.exc.SQLAlchemyError as exc:
                    engine.dispose()
                    raise LedgerError(f"cannot open the ledger {redacted(self._url)}: {describe(exc)}") from exc
                except LedgerError:
                    engine.dispose()
                    raise
                self._engine = engine
            return self._engine

    @contextlib.contextmanager
    def _write(self, what: str, *, defer_sync: bool = False) -> Iterator[sa.Connection]:
        """A write transaction: committed on success, rolled back on any error.

        ``defer_sync`` (SQLite): commit without waiting for the disk (see :meth:`sync_events`), taking
        turns with the other writers that do so (callback receivers) without SQLite's sleeping retries.
        """
        engine = self._ready()
        turn = self._wal.turn() if defer_sync and self._wal is not None else contextlib.nullcontext()
        try:
            with turn, engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: True})
                with deferred_sync(conn, enabled=defer_sync), conn.begin():
                    lock_writers(conn)
                    yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerError(f"ledger {what} failed: {describe(exc)}") from exc

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[sa.Connection]:
        """A read-only transaction (a consistent snapshot)."""
        engine = self._ready()
        try:
            with engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerError(f"ledger {what} failed: {describe(exc)}") from exc

    def _cid(
        self, conn: sa.Connection, name: str, *, create: bool = False, settings: Mapping[str, Any] | None = None
    ) -> int | None:
        """The id of campaign ``name``; created when ``create`` (else None when unknown)."""
        if name in self._cids:
            return self._cids[name]
        cid = conn.execute(sa.select(campaigns.c.id).where(campaigns.c.name == name)).scalar()
        if cid is None and create:
            cid = conn.execute(
                campaigns.insert().values(
                    name=name,
                    created_at=_now(),
                    settings=scrub(settings or {}),
                    callback_token=secrets.token_urlsafe(18),
                )
            ).inserted_primary_key[0]
        if cid is not None:
            self._cids[name] = cid
        return cid

    def _need(self, conn: sa.Connection, name: str) -> int:
        """The id of an existing campaign, or LedgerError."""
        cid = self._cid(conn, name)
        if cid is None:
            raise LedgerError(f"unknown campaign {name!r}")
        return cid

    # -- campaigns ---------------------------------------------------------------------------------

    def open_campaign(self, name: str, *, settings: Mapping[str, Any] | None = None) -> CampaignInfo:
        """Create campaign ``name`` if new (settings stored without credentials) and return its record."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise LedgerError("a campaign name must be a non-empty string of at most 200 characters")
        with self._write("open campaign") as conn:
            cid = self._cid(conn, name, create=True, settings=settings)
            row = conn.execute(sa.select(campaigns).where(campaigns.c.id == cid)).one()
        return CampaignInfo(
            name=row.name,
            created_at=as_utc(row.created_at),
            settings=dict(row.settings),
            token=row.callback_token,
            id=int(row.id),
        )

    def campaign_settings(self, name: str) -> dict[str, Any] | None:
        """The stored settings of campaign ``name``, or None for an unknown campaign (creates nothing)."""
        with self._read("campaign settings") as conn:
            stored = conn.execute(sa.select(campaigns.c.settings).where(campaigns.c.name == name)).scalar()
        return None if stored is None else dict(stored)

    def update_settings(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into the stored settings of campaign ``name`` (credentials dropped); return them."""
        with self._write("update settings") as conn:
            cid = self._need(conn, name)
            stored = conn.execute(sa.select(campaigns.c.settings).where(campaigns.c.id == cid)).scalar()
            merged = {**dict(stored or {}), **scrub(changes)}
            conn.execute(campaigns.update().where(campaigns.c.id == cid).values(settings=merged))
        return merged

    def campaign_token(self, name: str) -> str | None:
        """The secret token callbacks for campaign ``name`` must carry, or None for an unknown campaign."""
        with self._read("token lookup") as conn:
            return conn.execute(sa.select(campaigns.c.callback_token).where(campaigns.c.name == name)).scalar()

    def campaign_route(self, campaign_id: int) -> tuple[str, str] | None:
        """The name and callback token of the campaign with ledger id ``campaign_id`` (None when unknown)."""
        if isinstance(campaign_id, bool) or not isinstance(campaign_id, int):
            return None
        with self._read("campaign lookup") as conn:
            row = conn.execute(
                sa.select(campaigns.c.name, campaigns.c.callback_token).where(campaigns.c.id == campaign_id)
            ).first()
        return None if row is None else (row.name, row.callback_token)

    # -- one sender per campaign -------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, campaign: str, *, wait: float = 0.0) -> Iterator[_lease.Lease]:
        """Hold ``campaign``'s lease for a ``with`` block: one sender per campaign, across processes and hosts.

        Raises :class:`~plasgate_nb.errors.CampaignBusy` (naming the holder's host, pid and since when)
        when another live sender holds it, after waiting up to ``wait`` seconds for it to finish. A
        background thread renews the lease every ``lease_ttl / 6`` seconds; it is released when the block
        ends, normally or by any exception (KeyboardInterrupt too). The lease of a sender that died is
        taken over once ``lease_ttl`` seconds passed without a heartbeat, or at once on the same machine
        when its process is gone. While held, :meth:`mark_submitting`, :meth:`resume` and the requeues of
        other senders of the campaign are refused; this ledger's own go ahead only while it still holds it.
        """
        if not isinstance(wait, int | float) or not math.isfinite(wait) or wait < 0:
            raise OptionError(f"wait must be a number of seconds >= 0, not {wait!r}")
        with self._read("lease") as conn:
            cid = self._need(conn, campaign)
        held = _lease.acquire(self._write, campaign, cid, ttl=self.lease_ttl, wait=float(wait))
        self._held[cid] = held.owner
        try:
            yield held
        finally:
            if self._held.get(cid) == held.owner:
                del self._held[cid]
            held.release()

    def lease_holder(self, campaign: str) -> _lease.LeaseHolder | None:
        """Who holds ``campaign``'s lease (host, pid, since, heartbeat, expiry, ``live``), or None."""
        with self._read("lease holder") as conn:
            cid = self._cid(conn, campaign)
            return None if cid is None else _lease.holder(conn, cid, campaign)

    def _guard(self, conn: sa.Connection, cid: int, campaign: str) -> None:
        """Refuse (CampaignBusy) a write to ``campaign``'s rows that another live sender's lease forbids."""
        _lease.guard(conn, cid, campaign, self._held.get(cid))

    # -- planning and sending ----------------------------------------------------------------------

    def plan(
        self,
        campaign: str,
        rows: pd.DataFrame,
        *,
        allow_repeat: bool = False,
        dry_run: bool = False,
        earlier: Mapping[tuple[str, str], str] | None = None,
    ) -> PlanResult:
        """Record ``rows`` as ``planned`` (idempotent): new keys are added, known keys kept or replanned.

        ``rows`` has ``message_key, msisdn, content`` and optionally ``content_report, encoding,
        segments``; ``content`` is only digested (:func:`~plasgate_nb._masking.content_digest`), never
        stored. Keys are canonical (``101``, ``101.0`` and ``"101"`` are one key). A known key whose
        number or text differs is replanned with the new values while it is still ``planned`` (it
        never reached the gateway); once submitted it is reported in ``changed`` and neither
        overwritten nor resent. A row still to send whose number and text digest another message of
        the campaign already carries (submitted, accepted or uncertain, or an earlier row here) is
        reported in ``same_as`` with that message's key, and planned with that reason: the sender
        must not send it, unless ``allow_repeat``. ``dry_run`` computes the result and writes nothing.
        Keys, numbers or texts holding control characters raise LedgerError before anything is written.

        ``earlier`` plans ``rows`` as one part of a larger frame planned part by part in order (Dask
        partitions): it maps the ``(msisdn, content digest)`` pairs of earlier parts that later parts
        may repeat to the key that first carries each; repeat reasons are then set or cleared only on
        ``rows``' own keys (an earlier part's verdicts stand).
        """
        new = plan_rows(rows)
        if dry_run:
            with self._read("plan (dry run)") as conn:
                cid = self._cid(conn, campaign)
                fresh, replan, changed, same_as = _compare.sort_rows(
                    conn, cid, new, allow_repeat=allow_repeat, earlier=earlier
                )
            return self._result(campaign, new, fresh, replan, changed, same_as, log=False)
        with self._write("plan") as conn:
            cid = self._cid(conn, campaign, create=True)
            fresh, replan, changed, same_as = _compare.sort_rows(
                conn, cid, new, allow_repeat=allow_repeat, earlier=earlier
            )
            now = bind_value(conn, messages.c.created_at, _now())
            for columns in new.parts(replan):
                self._replan(conn, cid, columns, now)
            names = (*PLAN_COLUMNS, "campaign_id", "state", "attempts", "created_at", "updated_at")
            if same_as:  # repeats are planned with their reason (collect shows it)
                names = (*names, "reason")
            for columns in new.parts(fresh):  # a chunk of rows at a time: bounded memory for any plan
                count = len(columns[0])
                constants = [repeat(value, count) for value in (cid, "planned", 0, now, now)]
                if same_as:
                    constants.append([repeat_reason(same_as[k]) if k in same_as else None for k in columns[0]])
                bulk_insert(conn, messages, names, list(zip(*columns, *constants, strict=True)))
            self._mark_repeats(conn, cid, same_as, now, scope=None if earlier is None else new.keys)
        return self._result(campaign, new, fresh, replan, changed, same_as, log=True)

    @staticmethod
    def _mark_repeats(
        conn: sa.Connection, cid: int, same_as: dict[str, str], now: Any, *, scope: Sequence[str] | None = None
    ) -> None:
        """Store (or clear) the repeat reason on planned rows (of ``scope``'s keys, if given) whose verdict changed."""
        changes = _compare.repeat_updates(conn, cid, same_as, scope=scope)
        updates = [(reason, now, cid, key) for key, reason in changes]
        if updates:
            sql = _sql(
                conn,
                f"UPDATE {messages.name} SET reason = ?, updated_at = ? "
                "WHERE campaign_id = ? AND message_key = ? AND state = 'planned'",
            )
            conn.exec_driver_sql(sql, updates)

    @staticmethod
    def _result(
        campaign: str,
        new: PlanRows,
        fresh: Sequence[int],
        replan: list[int],
        changed: list[int],
        same_as: dict[str, str],
        *,
        log: bool,
    ) -> PlanResult:
        """The PlanResult of a plan (logging what changed when ``log``)."""
        keys = new.keys
        changed_keys = tuple(keys[i] for i in changed)
        replanned = tuple(keys[i] for i in replan)
        if log and replanned:
            logger.info("campaign %r: %d rows not yet sent were replanned with new values", campaign, len(replanned))
        if log and changed_keys:
            logger.warning("campaign %r: %d rows changed after they were sent; not resent", campaign, len(changed_keys))
        if log and same_as:
            logger.warning(
                "campaign %r: %d rows repeat the number and text of another message; not sent (allow_repeat=True)",
                campaign,
                len(same_as),
            )
        return PlanResult(
            campaign,
            added=len(fresh),
            kept=len(keys) - len(fresh) - len(changed) - len(replan),
            changed=changed_keys,
            replanned=replanned,
            same_as=same_as,
        )

    @staticmethod
    def _replan(conn: sa.Connection, cid: int, columns: list[list[Any]], now: Any) -> None:
        """Overwrite still-``planned`` rows (``columns`` ordered as PLAN_COLUMNS) with their new values."""
        if not columns or not columns[0]:
            return
        names = PLAN_COLUMNS[1:]
        assign = ", ".join(f"{name} = ?" for name in names)
        sql = _sql(
            conn,
            f"UPDATE {messages.name} SET {assign}, updated_at = ? "
            "WHERE campaign_id = ? AND message_key = ? AND state = 'planned'",
        )
        params = [(*values[1:], now, cid, values[0]) for values in zip(*columns, strict=True)]
        conn.exec_driver_sql(sql, params)

    def mark_submitting(self, campaign: str, keys: Iterable[Any], *, batch_id: str) -> int:
        """Mark ``planned`` rows ``submitting`` under ``batch_id`` (commit this before the request leaves).

        All keys must be ``planned``: otherwise nothing changes and LedgerError names them (another
        sender got there first, or the rows were already sent). CampaignBusy when another live sender
        holds the campaign's :meth:`lease`, or when this ledger held it and lost it.
        """
        wanted = keys_of(keys)
        with self._write("mark submitting") as conn:
            cid = self._need(conn, campaign)
            self._guard(conn, cid, campaign)
            current = rows_by_key(conn, cid, wanted)
            ids = [current[k][0] for k in wanted if k in current and current[k][1] == "planned"]
            done = 0
            if len(ids) == len(wanted):
                now = bind_value(conn, messages.c.updated_at, _now())
                done = update_rows(
                    conn,
                    ids,
                    "state = 'submitting', batch_id = ?, attempts = attempts + 1, "
                    "submitted_at = ?, updated_at = ?, reason = NULL",
                    (batch_id, now, now),
                    states=("planned",),
                )
            if done != len(wanted):
                raise LedgerError(
                    f"campaign {campaign!r}: {len(wanted) - len(ids)} of these rows are not "
                    f"planned: {self._not_in(current, wanted, 'planned')}"
                )
        return done

    def settle(
        self,
        campaign: str,
        keys: Iterable[Any],
        *,
        state: str,
        queue_id: str | None = None,
        message_ids: Mapping[Any, str] | None = None,
        status: int | None = None,
        body: str | None = None,
        reason: str | None = None,
        part_ids: Mapping[Any, Iterable[str]] | None = None,
        error_code: str | None = None,
    ) -> int:
        """Record the outcome of a request for ``keys`` and return how many rows took ``state``.

        ``state`` is ``accepted``, ``rejected``, ``uncertain`` or ``planned`` (a definite failure to
        retry). Rows a callback already settled keep their state (the gateway's word wins) but get the
        response recorded; ``message_ids`` maps keys to gateway message ids; ``part_ids`` maps keys of
        long SMPP messages to the message ids of their parts, in order; ``body`` is truncated;
        ``error_code`` is the gateway's code for a refusal of these very messages (an SMPP submit_sm_resp
        status name), which makes them final failures (:mod:`plasgate_nb._states`).
        """
        if state not in SETTLE_STATES:
            raise LedgerError(f"cannot settle rows as {state!r}")
        wanted = keys_of(keys)
        ids = {str(k): str(v) for k, v in (message_ids or {}).items()}
        now = _now()
        response = {"updated_at": now}
        response.update(
            {
                k: v
                for k, v in (("queue_id", queue_id), ("response_status", status), ("error_code", error_code))
                if v is not None
            }
        )
        if body is not None:
            response["response_body"] = str(body)[:MAX_BODY]
        with self._write("settle") as conn:
            cid = self._need(conn, campaign)
            current = rows_by_key(conn, cid, wanted)
            if len(current) != len(wanted) or any(s == "planned" for _, s in current.values()):
                bad = self._not_in(current, wanted, "submitting", "uncertain", "accepted", "rejected")
                raise LedgerError(f"campaign {campaign!r}: can only settle rows being submitted: {bad}")
            moving = [k for k in wanted if current[k][1] in _pairing.IN_FLIGHT or current[k][1] == state]
            moved = set(moving)
            staying = [k for k in wanted if k not in moved]
            if staying:
                logger.info(
                    "campaign %r: %d rows already settled by callbacks keep their state", campaign, len(staying)
                )
            names = list(response)
            values = [bind_value(conn, messages.c[name], response[name]) for name in names]
            assign = ", ".join(f"{name} = ?" for name in names)
            update_rows(
                conn, [current[k][0] for k in moving], f"{assign}, state = ?, reason = ?", (*values, state, reason)
            )
            update_rows(conn, [current[k][0] for k in staying], assign, values)
            self._pair(conn, cid, {k: v for k, v in ids.items() if k in current}, current, now)
            parts = [
                {"b_row": current[str(k)][0], "b_p": ",".join(map(str, v))}
                for k, v in (part_ids or {}).items()
                if str(k) in current
            ]
            if parts:
                conn.execute(
                    messages.update()
                    .where(messages.c.id == sa.bindparam("b_row"))
                    .values(part_ids=sa.bindparam("b_p")),
                    parts,
                )
        return len(moving)

    def _pair(
        self, conn: sa.Connection, cid: int, ids: dict[str, str], current: dict[str, tuple[int, str]], now: datetime
    ) -> None:
        """Store gateway message ids for keys and apply events that arrived before them."""
        if not ids:
            return
        conn.execute(
            messages.update().where(messages.c.id == sa.bindparam("b_row")).values(message_id=sa.bindparam("b_mid")),
            [{"b_row": current[k][0], "b_mid": mid} for k, mid in ids.items()],
        )
        touched = _pairing.attach_orphans(conn, {mid: (current[k][0], cid) for k, mid in ids.items()})
        _pairing.apply(conn, touched, now=now)

    @staticmethod
    def _not_in(current: Mapping[str, tuple[int, str]], keys: list[str], *states: str) -> str:
        """Describe (at most 10) keys that are missing from ``current`` or not in ``states``."""
        bad = [
            f"{k} ({current[k][1] if k in current else 'unknown'})"
            for k in keys
            if k not in current or current[k][1] not in states
        ]
        return ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")

    def resume(self, campaign: str) -> int:
        """Turn rows left ``submitting`` by an interrupted run into ``uncertain``; return how many.

        Only once no live sender holds the campaign (they are its rows in flight): CampaignBusy names
        the holder otherwise. An expired lease (its sender died) is broken.
        """
        with self._write("resume") as conn:
            cid = self._need(conn, campaign)
            self._guard(conn, cid, campaign)
            count = conn.execute(
                messages.update()
                .where(messages.c.campaign_id == cid, messages.c.state == "submitting")
                .values(state="uncertain", reason=INTERRUPTED, updated_at=_now())
            ).rowcount
        if count:
            logger.warning("campaign %r: %d rows were interrupted while submitting; now uncertain", campaign, count)
        return count

    def skip(self, campaign: str, reasons: Mapping[Any, tuple[str, str]]) -> int:
        """Set rows not yet sent (``planned`` or skipped) to a skip state with its reason; return how many.

        ``reasons`` maps keys to ``(state, reason)``, ``state`` one of SKIP_STATES: ``holdout`` (the A/B
        holdout: planned, never sent), ``suppressed`` (on the suppression list) or ``capped`` (over the
        frequency cap). Rows already submitted keep their state: what was sent stays sent.
        """
        bad = sorted({state for state, _ in reasons.values()} - set(SKIP_STATES))
        if bad:
            raise LedgerError(f"cannot skip rows as {bad}; skip states are {list(SKIP_STATES)}")
        if not reasons:
            return 0
        by_key = {str(k): v for k, v in reasons.items()}
        with self._write("skip") as conn:
            cid = self._need(conn, campaign)
            current = rows_by_key(conn, cid, list(by_key))
            now = bind_value(conn, messages.c.updated_at, _now())
            groups: dict[tuple[str, str], list[int]] = {}
            for key, (rid, state) in current.items():
                if state == "planned" or state in SKIP_STATES:
                    groups.setdefault(by_key[key], []).append(rid)
            return sum(
                update_rows(
                    conn,
                    ids,
                    "state = ?, reason = ?, updated_at = ?",
                    (state, reason, now),
                    states=("planned", *SKIP_STATES),
                )
                for (state, reason), ids in groups.items()
            )

    def unskip(self, campaign: str, keys: Iterable[Any], *, states: Iterable[str] = ("suppressed", "capped")) -> int:
        """Move rows of ``keys`` that are in ``states`` (skip states) back to ``planned``; return how many.

        For a number taken off the suppression list, or back under the cap: the next send sends it.
        """
        wanted = set(keys_of(keys))
        chosen = [s for s in states if s in SKIP_STATES]
        if not wanted or not chosen:
            return 0
        with self._write("unskip") as conn:
            cid = self._need(conn, campaign)
            # the campaign's rows in those states (through the state index): a send passes every key of
            # its frame, and looking a million keys up one by one would hold them all as rows here
            skipped = conn.execute(
                sa.select(messages.c.message_key, messages.c.id).where(
                    messages.c.campaign_id == cid, messages.c.state.in_(chosen)
                )
            )
            ids = [rid for key, rid in skipped if key in wanted]
            now = bind_value(conn, messages.c.updated_at, _now())
            return update_rows(conn, ids, "state = 'planned', reason = NULL, updated_at = ?", (now,), states=chosen)

    def note(self, campaign: str, keys: Iterable[Any], reason: str) -> int:
        """Set the reason of ``planned`` rows of ``keys`` (why they wait, e.g. quiet hours); return how many."""
        wanted = keys_of(keys)
        if not wanted:
            return 0
        with self._write("note") as conn:
            cid = self._need(conn, campaign)
            ids = [rid for rid, state in rows_by_key(conn, cid, wanted).values() if state == "planned"]
            now = bind_value(conn, messages.c.updated_at, _now())
            return update_rows(conn, ids, "reason = ?, updated_at = ?", (reason, now), states=("planned",))

    def requeue_uncertain(self, campaign: str, keys: Iterable[Any] | None = None) -> int:
        """Move ``uncertain`` rows (all, or only ``keys``) back to ``planned`` so they are sent again."""
        return self._requeue(campaign, "uncertain", keys, "requeued after uncertain outcome")

    def requeue_rejected(self, campaign: str, keys: Iterable[Any] | None = None) -> int:
        """Move ``rejected`` rows (all, or only ``keys``) back to ``planned``: after fixing their cause
        (credentials, balance, sender approval), the next send sends them again."""
        return self._requeue(campaign, "rejected", keys, "requeued after rejection")

    def _requeue(self, campaign: str, state: str, keys: Iterable[Any] | None, reason: str) -> int:
        """Move rows in ``state`` (all, or only ``keys``) back to ``planned``; return how many moved.

        Refused (CampaignBusy) while another live sender holds the campaign.
        """
        with self._write("requeue") as conn:
            cid = self._need(conn, campaign)
            self._guard(conn, cid, campaign)
            base = messages.update().values(state="planned", reason=reason, error_code=None, updated_at=_now())
            where = (messages.c.campaign_id == cid, messages.c.state == state)
            if keys is None:
                return conn.execute(base.where(*where)).rowcount
            return sum(
                conn.execute(base.where(*where, messages.c.message_key.in_(part))).rowcount
                for part in _pairing.chunks(keys_of(keys))
            )

    # -- events ------------------------------------------------------------------------------------

    def record_events(self, items: Iterable[Mapping[str, Any]], *, sync: bool = True) -> int:
        """Store delivery events in one transaction and apply them; return how many were new.

        Duplicates (same message id, level and status) are recorded once; events for a message id not
        yet paired with a row are kept and applied when the pairing arrives. An event names its row by
        ``campaign`` and ``message_key``, or ``campaign`` and ``key_digest`` (what callback URLs carry:
        :func:`plasgate_nb._keys.key_digest` of the key); a campaign's events only reach its own rows.

        ``sync=False`` commits without waiting for the disk on SQLite (PostgreSQL commits as always):
        the events are durable once :meth:`sync_events` has returned, and not before.
        """
        now = _now()
        items = list(items)
        digests = [_digest_of(item) for item in items]
        evs = [normalize(item, now=now) for item in items]
        if not evs:
            return 0
        with self._write("record events", defer_sync=not sync) as conn:
            cids = {n: c for n in {e.campaign for e in evs if e.campaign} if (c := self._cid(conn, n)) is not None}
            if any(digests):
                evs = _pairing.keys_from_digests(conn, evs, digests, cids)
            placed, attached = _pairing.locate(conn, evs, cids)  # every copy pairs: a duplicate may carry the key
            evs, placed = _pairing.first_copies(evs, placed)
            inserted = _pairing.insert_events(conn, evs, placed)
            fresh: dict[int, list[Any]] = {}
            for e, (rid, _) in zip(evs, placed, strict=True):
                if rid is not None and e.dedupe_key in inserted:
                    fresh.setdefault(rid, []).append(e)
            _pairing.apply(conn, attached, now=now, fresh=fresh)
        return len(inserted)

    def sync_events(self) -> None:
        """Make every transaction this process committed with ``record_events(sync=False)`` durable.

        SQLite: one ``fdatasync`` of the ledger's write-ahead log covers all of them (group commit);
        PostgreSQL: nothing to do. Raises LedgerError when the disk reports a failure.
        """
        if self._wal is None:
            return
        try:
            self._wal.sync()
        except OSError as exc:
            raise LedgerError(f"ledger sync failed: {exc.strerror or type(exc).__name__}") from exc

    # -- replies -----------------------------------------------------------------------------------

    def record_replies(self, campaign: str | None, items: Iterable[Mapping[str, Any]]) -> int:
        """Store mobile-originated messages (replies) in one transaction; return how many were stored.

        Each item has ``msisdn`` (the handset), ``to`` (the address it replied to), ``text`` (kept up to
        1600 characters) and optionally ``data_coding`` and ``received_at`` (default: now) -- the reply
        dicts ``send_smpp`` hands to ``on_event``, an SMPP receiver or the receiver's MO route store.
        ``campaign`` names an existing campaign they are filed under, or None (the receiver's replies:
        a reply names no campaign). Nothing is deduplicated: a reply carries no id, and the same text
        twice is two replies.
        """
        items = list(items)
        if not items:
            return 0
        with self._write("record replies") as conn:
            cid = None if campaign is None else self._need(conn, campaign)
            rows = reply_rows(items, campaign_id=cid, now=_now(), text_max=REPLY_TEXT_MAX)
            conn.execute(reply_table.insert(), rows)
            changed = _suppress.apply_replies(conn, rows)
        if changed:
            logger.info("%d opt-out/opt-in replies changed the suppression list", changed)
        return len(rows)

    def reply_token(self) -> str:
        """The secret token of this ledger's reply (MO) URL, created on first use and kept.

        The gateway's MO connector is configured once per account, so the token outlives campaigns and
        receiver restarts; ``CallbackServer.reply_url`` shows the whole URL.
        """
        with self._read("reply token") as conn:
            token = conn.execute(sa.select(meta.c.value).where(meta.c.key == REPLY_TOKEN_KEY)).scalar()
        if token is not None:
            return token
        with self._write("reply token") as conn:  # writers take turns: the first one creates it
            token = conn.execute(sa.select(meta.c.value).where(meta.c.key == REPLY_TOKEN_KEY)).scalar()
            if token is None:
                token = secrets.token_urlsafe(18)
                conn.execute(meta.insert().values(key=REPLY_TOKEN_KEY, value=token))
        return token

    # -- suppression list --------------------------------------------------------------------------

    def suppressions(self, *, history: bool = False) -> pd.DataFrame:
        """Numbers on the suppression list: ``msisdn, since, source, campaign, text``, oldest first.

        ``source`` is ``reply`` (the number replied an opt-out keyword: ``text`` is the reply,
        ``campaign`` the campaign it was filed under) or ``manual`` (:meth:`suppress`: ``text`` is the
        reason). ``history=True`` also lists numbers that opted back in (``active`` false).
        """
        with self._read("read suppressions") as conn:
            return _suppress.read(conn, campaigns, active_only=not history)

    def suppressed_numbers(self) -> set[str]:
        """The numbers on the suppression list (Plasgate form), for filtering an audience."""
        with self._read("read suppressions") as conn:
            return _suppress.active_numbers(conn)

    def suppress(self, numbers: Iterable[Any], *, reason: str = "added by hand") -> int:
        """Put ``numbers`` (any spelling) on the suppression list; return how many were not on it yet."""
        return self._manual(numbers, active=True, reason=reason)

    def unsuppress(self, numbers: Iterable[Any], *, reason: str = "removed by hand") -> int:
        """Take ``numbers`` (any spelling) off the suppression list; return how many were on it."""
        return self._manual(numbers, active=False, reason=reason)

    def _manual(self, numbers: Iterable[Any], *, active: bool, reason: str) -> int:
        """Suppress or unsuppress numbers by hand, now; LedgerError names entries that are not numbers."""
        from ..audience import normalize_msisdn  # numbers arrive in any spelling; the audience stage reads them

        if isinstance(numbers, str | bytes):
            numbers = [numbers]
        values = list(numbers)
        normal = [normalize_msisdn(v) for v in values]
        bad = [v for v, n in zip(values, normal, strict=True) if n is None]
        if bad:
            raise LedgerError(f"{len(bad)} of {len(values)} entries are not phone numbers: {bad[:10]}")
        now = _now()
        changes = [(n, active, now, "manual", None, reason) for n in dict.fromkeys(normal) if n]
        with self._write("suppress") as conn:
            return _suppress.change(conn, changes)

    def accepted_since(self, since: datetime, *, numbers: Iterable[str] | None = None) -> pd.DataFrame:
        """Messages accepted by the gateway since ``since`` (aware), from every campaign of this ledger.

        Columns ``msisdn, campaign, submitted_at`` (UTC), oldest first; ``numbers`` limits it to those
        numbers (Plasgate form). What a frequency cap counts.
        """
        cols = messages.c
        stmt = (
            sa.select(cols.msisdn, campaigns.c.name, cols.submitted_at)
            .select_from(messages.join(campaigns, cols.campaign_id == campaigns.c.id))
            .where(cols.state == "accepted", cols.submitted_at >= as_utc(since))
            .order_by(cols.submitted_at)
        )
        wanted = None if numbers is None else set(map(str, numbers))
        with self._read("read accepted messages") as conn:
            rows = [tuple(r) for r in conn.execute(stmt) if wanted is None or r[0] in wanted]
        frame = pd.DataFrame.from_records(rows, columns=["msisdn", "campaign", "submitted_at"], coerce_float=False)
        frame["msisdn"] = frame["msisdn"].astype("string")
        frame["campaign"] = frame["campaign"].astype("string")
        frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True).astype("datetime64[us, UTC]")
        return frame

    def opt_out_keywords(self) -> Keywords:
        """The keywords replies are matched against (STOP, ឈប់, ... and START, UNSTOP, ... by default)."""
        with self._read("read keywords") as conn:
            return _suppress.keywords(conn)

    def set_opt_out_keywords(self, keywords: Keywords) -> None:
        """Store the opt-out/opt-in keywords for every process sharing this ledger (the receiver included)."""
        if not isinstance(keywords, Keywords):
            raise LedgerError("set_opt_out_keywords() takes a plasgate_nb.optout.Keywords")
        with self._write("set keywords") as conn:
            _suppress.save_keywords(conn, keywords)

    def replies(self, campaign: str | None = None) -> pd.DataFrame:
        """Replies filed under ``campaign`` (every reply when None) in arrival order.

        Columns: ``campaign, msisdn, destination, text, data_coding, received_at`` (UTC).
        """
        with self._read("read replies") as conn:
            cols = reply_table.c
            stmt = (
                sa.select(
                    campaigns.c.name, cols.msisdn, cols.destination, cols.text, cols.data_coding, cols.received_at
                )
                .select_from(reply_table.outerjoin(campaigns, cols.campaign_id == campaigns.c.id))
                .order_by(cols.id)
            )
            if campaign is not None:
                cid = self._cid(conn, campaign)
                stmt = stmt.where(cols.campaign_id == (cid if cid is not None else -1))
            return reply_frame([tuple(r) for r in conn.execute(stmt)])

    # -- reading -----------------------------------------------------------------------------------

    def messages(self, campaign: str, *, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per message of ``campaign`` with its current state, in plan order.

        ``columns`` picks a subset (``message_key`` always comes first); reading fewer is faster.
        """
        names = ["message_key", *[c for c in (columns or MESSAGE_COLUMNS) if c != "message_key"]]
        unknown = [c for c in names if c not in MESSAGE_COLUMNS]
        if unknown:
            raise LedgerError(f"unknown message columns: {unknown}")
        with self._read("read messages") as conn:
            cid = self._cid(conn, campaign)
            stmt = (
                sa.select(*(messages.c[c] for c in names))
                .where(messages.c.campaign_id == (cid if cid is not None else -1))
                .order_by(messages.c.id)
            )
            return read_frame(conn, stmt, names)

    def read_columns(self, campaign: str, columns: Iterable[str]) -> pd.DataFrame:
        """``message_key`` and ``columns`` of every message of ``campaign``: the fastest read of many rows.

        Same values as :meth:`messages`, the same on SQLite and PostgreSQL: texts as pandas' ``string``
        dtype (pyarrow storage), counts as ``Int64``, times as ``datetime64[us, UTC]``. Read through
        :meth:`read_arrow`.
        """
        return _arrow.to_frame(self.read_arrow(campaign, columns))

    def read_arrow(self, campaign: str, columns: Iterable[str], *, state: str | None = None) -> pa.Table:
        """``message_key`` and ``columns`` of the messages of ``campaign`` in plan order, as a pyarrow Table.

        ``state`` keeps only the messages in that state. Texts are Arrow strings, counts int64, times
        timestamp[us, UTC], on both backends. Columnar all the way (see ``benchmarks/collect.py``): on
        SQLite each column of a range of rows comes as one byte string cut up by NumPy (a large campaign
        in pieces of its id range, read on two connections at once, each piece one snapshot); on
        PostgreSQL ``COPY ... TO STDOUT`` is parsed by Arrow's CSV reader. Values the SQLite encoding
        cannot carry are read by the general reader (:meth:`messages`).
        """
        names = ["message_key", *(c for c in dict.fromkeys(columns) if c != "message_key")]
        unknown = [c for c in names if c not in MESSAGE_COLUMNS]
        if unknown:
            raise LedgerError(f"unknown message columns: {unknown}")
        if state is not None and state not in STATES:
            raise LedgerError(f"unknown message state {state!r}: one of {list(STATES)}")
        with self._read("read columns") as conn:
            cid = self._cid(conn, campaign)
            if cid is None:
                return _arrow.schema(names).empty_table()
            if conn.dialect.name == "postgresql":
                return _copy.read(conn, cid, names, state=state)
            where = "campaign_id = ?" + ("" if state is None else " AND state = ?")
            bounds = conn.exec_driver_sql(
                f"SELECT min(id), max(id), count(*) FROM plasgate_messages WHERE {where}",
                (cid,) if state is None else (cid, state),
            ).fetchone()
            if not bounds[2]:
                return _arrow.schema(names).empty_table()
            fast = _columns.read(
                lambda sql, params: conn.exec_driver_sql(sql, params).fetchone(),
                self._first_row,
                cid,
                tuple(bounds),
                names[1:],
                state=state,
            )
        if fast is not None:
            return fast
        frame = self.messages(campaign, columns=[*names[1:], "state"] if "state" not in names else names[1:])
        if state is not None:  # rare: values the fast encoding cannot carry
            frame = frame[frame["state"].eq(state).to_numpy()]
        return _arrow.from_frame(frame, names)

    def _first_row(self, sql: str, params: tuple[Any, ...]) -> Any:
        """The first row of ``sql`` with ``params``, read on a connection of its own (any thread)."""
        with self._read("read columns") as conn:
            return conn.exec_driver_sql(sql, params).fetchone()

    def pending(self, campaign: str) -> pd.DataFrame:
        """The ``planned`` rows still to send, in plan order."""
        names = ["message_key", "msisdn", "content_hash", "content_report", "encoding", "segments", "attempts"]
        with self._read("read pending") as conn:
            cid = self._cid(conn, campaign)
            stmt = (
                sa.select(*(messages.c[c] for c in names))
                .where(messages.c.campaign_id == (cid if cid is not None else -1), messages.c.state == "planned")
                .order_by(messages.c.id)
            )
            return read_frame(conn, stmt, names)

    def summary(self, campaign: str) -> dict[str, int]:
        """Counts of messages per state (every state present, zero included) and ``total``."""
        with self._read("summary") as conn:
            cid = self._cid(conn, campaign)
            stmt = (
                sa.select(messages.c.state, sa.func.count())
                .where(messages.c.campaign_id == (cid if cid is not None else -1))
                .group_by(messages.c.state)
            )
            counts = {state: n for state, n in conn.execute(stmt)}
        out = {state: int(counts.get(state, 0)) for state in STATES}
        out["total"] = sum(out.values())
        return out

    def status_counts(self, campaign: str) -> pd.DataFrame:
        """How many messages of ``campaign`` share each (``state``, ``delivery_status``, ``error_code``).

        A few rows however large the campaign: columns ``state``, ``delivery_status``, ``error_code``
        (missing as None) and ``messages``. PostgreSQL counts with ``GROUP BY``; on SQLite, whose
        ``GROUP BY`` sorts every row (1.1-1.2 s for 1,000,000), the three columns are read columnar
        (:meth:`read_arrow`) and counted by Arrow (0.4-0.5 s); reading the rows took 2.2 s.
        """
        names = ["state", "delivery_status", "error_code"]
        if self._ready().dialect.name != "postgresql":
            table = self.read_arrow(campaign, names).select(names)
            counted = table.group_by(names, use_threads=False).aggregate([([], "count_all")])
            out = pd.DataFrame({name: counted.column(name).to_pylist() for name in names}, dtype=object)
            out["messages"] = counted.column("count_all").to_numpy().astype("int64")
            return out
        with self._read("count messages") as conn:
            cid = self._cid(conn, campaign)
            stmt = (
                sa.select(*(messages.c[c] for c in names), sa.func.count().label("messages"))
                .where(messages.c.campaign_id == (cid if cid is not None else -1))
                .group_by(*(messages.c[c] for c in names))
            )
            rows = [tuple(row) for row in conn.execute(stmt)]
        return pd.DataFrame(rows, columns=[*names, "messages"], dtype=object).astype({"messages": "int64"})

    def events(self, campaign: str) -> pd.DataFrame:
        """Every stored event of ``campaign`` in arrival order (``message_key`` empty until paired)."""
        with self._read("read events") as conn:
            cid = self._cid(conn, campaign)
            cid = cid if cid is not None else -1
            cols = [messages.c.message_key, *(events.c[c] for c in EVENT_COLUMNS[1:])]
            stmt = (
                sa.select(*cols)
                .select_from(events.outerjoin(messages, events.c.message_row == messages.c.id))
                .where(sa.or_(events.c.campaign_id == cid, messages.c.campaign_id == cid))
                .order_by(events.c.id)
            )
            return read_frame(conn, stmt, list(EVENT_COLUMNS))
