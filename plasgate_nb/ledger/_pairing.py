"""Inside a write transaction: tie events to message rows, store them, and re-derive the rows they touch.

A gateway message id is paired with its row (campaign + message key) in three ways: the send response
(``Ledger.settle(message_ids=...)``), a DLR whose URL carries the key, or a batch callback (batch id +
``to`` number). Events that arrive before their pairing are stored with no row and attached when the
pairing arrives, then applied.

Settling is order-free (DESIGN.md section 6): a batch errback rejects its row whether it comes before
or after the request's 200 (Jasmin answers a batch first, then refuses numbers one by one), unless the
row has a report of its own proving the gateway took it; ``Ledger.settle`` never overrides a row a
callback settled.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict, namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa

from ..errors import LedgerError
from ._events import DELIVERY_COLUMNS, Event, advance, derive
from ._frames import _in_list, _sql
from ._schema import events, messages

CHUNK = 5000
_T = TypeVar("_T")
IN_FLIGHT = ("submitting", "uncertain")


# Statements go to the driver's own cursor, in plain SQL that SQLite and PostgreSQL both understand,
# inside the caller's transaction: for the small groups a callback receiver commits, SQLAlchemy's
# compiling, caching and per-value processing of Core statements cost several times the database work,
# and even ``exec_driver_sql`` costs about 20 us a statement (a group runs a dozen).
M, E = messages.name, events.name
_BY_KEY = f"SELECT id, campaign_id, message_key, message_id FROM {M} WHERE campaign_id = ? AND {{cond}}"
_CANDIDATES = (
    f"SELECT id, campaign_id, msisdn, batch_id, queue_id, message_id, state FROM {M} "
    "WHERE campaign_id = ? AND {cond}"
)  # no ORDER BY: SQLite would then walk the whole campaign in id order rather than use the number index
_BY_ID = f"SELECT id, campaign_id, message_id FROM {M} WHERE {{cond}} ORDER BY id"
_BY_DIGEST = f"SELECT key_digest, message_key FROM {M} WHERE campaign_id = ? AND {{cond}}"
_ORPHANS = f"SELECT DISTINCT message_id FROM {E} WHERE {{cond}} AND message_row IS NULL"
# an orphan stored under one campaign (its callback's token) never attaches to another campaign's row
_ATTACH = (
    f"UPDATE {E} SET message_row = ?, campaign_id = ? "
    "WHERE message_id = ? AND message_row IS NULL AND (campaign_id IS NULL OR campaign_id = ?)"
)
_SET_IDS = f"UPDATE {M} SET message_id = ?, queue_id = COALESCE(queue_id, ?) WHERE id = ?"
_STATES = f"SELECT id, state, {', '.join(DELIVERY_COLUMNS)} FROM {M} WHERE {{cond}}"
_EVENTS_OF = (
    f"SELECT message_row, source, level, status, err, done_at, received_at, raw FROM {E} WHERE {{cond}} ORDER BY id"
)
_DELIVERY = f"UPDATE {M} SET {', '.join(f'{c} = ?' for c in DELIVERY_COLUMNS)} WHERE id = ?"
_SETTLE = f"UPDATE {M} SET state = ?, reason = ?, updated_at = ? WHERE id = ?"
_TIMES = frozenset({"done_at", "delivered_at"})
EVENT_INSERT_COLUMNS = (
    "dedupe_key",
    "campaign_id",
    "message_row",
    "message_id",
    "source",
    "level",
    "status",
    "err",
    "done_at",
    "received_at",
    "raw",
)
_INSERT = (
    f"INSERT INTO {E} ({', '.join(EVENT_INSERT_COLUMNS)}) VALUES {{values}} "
    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key"
)
INSERT_CHUNK = 1000  # rows per INSERT (11 parameters each; SQLite allows 32,766 per statement)


class StoredEvent(NamedTuple):
    """An event read back for re-derivation (``raw`` decoded)."""

    source: str
    level: int | None
    status: str
    err: str | None
    done_at: Any
    received_at: Any
    raw: dict[str, Any]


def chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    """Yield ``items`` in slices of at most ``size`` (bounded IN lists and parameter counts)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@functools.lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]) -> type:
    """A named-tuple type for rows with these column names (attribute access, and ``_mapping`` as a dict)."""
    base = namedtuple("Row", names)  # type: ignore[misc]
    return type("Row", (base,), {"__slots__": (), "_mapping": property(lambda row: dict(zip(names, row, strict=True)))})


def _execute(conn: sa.Connection, text: str, params: Any, *, many: bool = False) -> Any:
    """Run ``text`` (``?`` markers) on the driver's cursor of ``conn``'s transaction; return the cursor.

    A driver error becomes a LedgerError caused by it (a storage failure, not a refused event); the
    caller's transaction then rolls back.
    """
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(_sql(conn, text), params)
        else:
            cursor.execute(_sql(conn, text), params)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise LedgerError(f"ledger statement failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
    return cursor


def _rows(cursor: Any) -> list[Any]:
    """A cursor's remaining rows as named tuples."""
    make = _row_type(tuple(d[0] for d in cursor.description))._make
    return [make(row) for row in cursor.fetchall()]


def _select(conn: sa.Connection, template: str, column: str, values: Sequence[Any], *before: Any) -> list[Any]:
    """Rows of ``template`` (its ``{cond}`` an IN list of ``column`` over ``values``, after ``before`` params)."""
    found: list[Any] = []
    for part in chunks(values):
        cond, params = _in_list(conn, column, part)
        found.extend(_rows(_execute(conn, template.format(cond=cond), (*before, *params))))
    return found


def _many(conn: sa.Connection, text: str, rows: list[tuple[Any, ...]]) -> None:
    """Run ``text`` once per parameter tuple in ``rows`` (one driver executemany)."""
    if rows:
        _execute(conn, text, rows, many=True)


def _times(conn: sa.Connection) -> Callable[[Any], Any]:
    """A function putting datetimes in driver form (text on SQLite, as SQLAlchemy writes them); others pass.

    Times read back through the driver are already in that form and are written back as read.
    """
    process = events.c.received_at.type._cached_bind_processor(conn.dialect)
    if process is None:
        return lambda value: value
    return lambda value: process(value) if isinstance(value, datetime) else value


def attach_orphans(conn: sa.Connection, pairs: dict[str, tuple[int, int]]) -> set[int]:
    """Attach stored events of gateway ids in ``pairs`` (id -> (row, campaign)) that had no row yet."""
    if not pairs:
        return set()
    orphaned = {row[0] for row in _select(conn, _ORPHANS, "message_id", list(pairs))}
    if not orphaned:
        return set()
    _many(conn, _ATTACH, [(pairs[mid][0], pairs[mid][1], mid, pairs[mid][1]) for mid in sorted(orphaned)])
    return {pairs[mid][0] for mid in orphaned}


def keys_from_digests(
    conn: sa.Connection, evs: list[Event], digests: list[str | None], cids: dict[str, int]
) -> list[Event]:
    """Give events that name their row by key digest (callback URLs) that row's key, within their campaign.

    A digest no row of the event's campaign has leaves the event without a key (placed by message id).
    """
    wanted: dict[int, set[str]] = defaultdict(set)
    for e, digest in zip(evs, digests, strict=True):
        if digest is not None and e.campaign in cids:
            wanted[cids[e.campaign]].add(digest)
    found = {
        (cid, row.key_digest): row.message_key
        for cid, values in wanted.items()
        for row in _select(conn, _BY_DIGEST, "key_digest", sorted(values), cid)
    }
    return [
        replace(e, message_key=found.get((cids[e.campaign], digest)))
        if digest is not None and e.campaign in cids
        else e
        for e, digest in zip(evs, digests, strict=True)
    ]


def _by_key(conn: sa.Connection, evs: list[Event], cids: dict[str, int]) -> dict[tuple[int, str], Any]:
    """Rows named by (campaign, message_key) in the events."""
    wanted: dict[int, set[str]] = defaultdict(set)
    for e in evs:
        if e.message_key and e.campaign in cids:
            wanted[cids[e.campaign]].add(e.message_key)
    return {
        (cid, row.message_key): row
        for cid, keys in wanted.items()
        for row in _select(conn, _BY_KEY, "message_key", sorted(keys), cid)
    }


def _batch_candidates(conn: sa.Connection, evs: list[Event], cids: dict[str, int]) -> dict[tuple[int, str], list]:
    """Rows that batch callbacks may belong to: same campaign and number."""
    wanted: dict[int, set[str]] = defaultdict(set)
    for e in evs:
        if e.source in ("batch", "errback") and e.campaign in cids and e.msisdn:
            wanted[cids[e.campaign]].add(e.msisdn)
    found: dict[tuple[int, str], list] = defaultdict(list)
    for cid, numbers in wanted.items():
        for row in sorted(_select(conn, _CANDIDATES, "msisdn", sorted(numbers), cid), key=lambda r: r.id):
            found[(cid, row.msisdn)].append(row)
    return found


def _pick(rows: list, e: Event) -> Any:
    """Choose the row a batch callback belongs to, most specific match first."""

    def batch_match(r: Any) -> bool:
        """The callback's batch id is the row's gateway queue id or our batch key."""
        return e.batch is not None and e.batch in (r.queue_id, r.batch_id)

    tests = (
        lambda r: e.message_id is not None and r.message_id == e.message_id,
        lambda r: batch_match(r) and r.message_id is None and r.state != "rejected",  # not one an errback took
        lambda r: batch_match(r) and r.message_id is None,
        lambda r: r.queue_id is None and r.message_id is None and r.state in IN_FLIGHT,
        batch_match,
    )
    for test in tests:
        for row in rows:
            if test(row):
                return row
    return None


Placement = tuple[int | None, int | None]  # (message row id, campaign id) of an event


def locate(conn: sa.Connection, evs: list[Event], cids: dict[str, int]) -> tuple[list[Placement], set[int]]:
    """Find each event's (row, campaign id), pairing ids with rows on the way; return also rows paired."""
    keyed = _by_key(conn, evs, cids)
    candidates = _batch_candidates(conn, evs, cids)
    placed: list[Placement] = []
    pairs: dict[str, tuple[int, int]] = {}
    updates: list[tuple[Any, ...]] = []
    for e in evs:
        cid = cids.get(e.campaign or "")
        row = None
        if e.source in ("batch", "errback") and cid is not None and e.msisdn:
            row = _pick(candidates.get((cid, e.msisdn), []), e)
        elif cid is not None and e.message_key:
            row = keyed.get((cid, e.message_key))
        if row is not None and e.message_id and row.message_id is None and e.message_id not in pairs:
            pairs[e.message_id] = (row.id, row.campaign_id)
            updates.append((e.message_id, e.batch if e.source == "batch" else None, row.id))
        placed.append((row.id, row.campaign_id) if row is not None else (None, cid))
    _many(conn, _SET_IDS, updates)  # the gateway ids (and batch ids) newly learnt
    unknown = sorted(
        {
            e.message_id
            for e, (rid, _) in zip(evs, placed, strict=True)
            if rid is None and e.message_id and e.message_id not in pairs
        }
    )
    by_id: dict[str, list[Any]] = defaultdict(list)
    for row in _select(conn, _BY_ID, "message_id", unknown):
        by_id[row.message_id].append(row)
    for i, (e, (rid, cid)) in enumerate(zip(evs, placed, strict=True)):
        if rid is None and e.message_id:
            if e.message_id in pairs:
                placed[i] = pairs[e.message_id]
            elif by_id.get(e.message_id):
                # a callback authenticated for one campaign reaches only that campaign's rows
                rows = [r for r in by_id[e.message_id] if cid is None or r.campaign_id == cid]
                if rows:
                    placed[i] = (rows[0].id, rows[0].campaign_id)
    return placed, attach_orphans(conn, pairs)


def first_copies(evs: list[Event], placed: list[Placement]) -> tuple[list[Event], list[Placement]]:
    """Keep the first copy of each event (same dedupe key) and its placement, in arrival order."""
    first: dict[str, int] = {}
    for i, e in enumerate(evs):
        first.setdefault(e.dedupe_key, i)
    if len(first) == len(evs):
        return evs, placed
    return [evs[i] for i in first.values()], [placed[i] for i in first.values()]


def insert_events(conn: sa.Connection, evs: list[Event], placed: list[Placement]) -> set[str]:
    """Insert events whose dedupe key is not stored yet (ON CONFLICT DO NOTHING); return the keys inserted."""
    when = _times(conn)
    bound: dict[Any, Any] = {None: None}  # many events share a time (the group's arrival, a report's minute)
    rows = []
    for e, (rid, cid) in zip(evs, placed, strict=True):
        for value in (e.done_at, e.received_at):
            if value not in bound:
                bound[value] = when(value)
        rows.append(
            (
                e.dedupe_key,
                cid,
                rid,
                e.message_id,
                e.source,
                e.level,
                e.status,
                e.err,
                bound[e.done_at],
                bound[e.received_at],
                e.raw_json,  # JSON text: what SQLAlchemy's JSON type stores on SQLite, cast by PostgreSQL
            )
        )
    inserted: set[str] = set()
    marks = "(" + ", ".join("?" * len(EVENT_INSERT_COLUMNS)) + ")"
    for part in chunks(rows, INSERT_CHUNK):
        text = _INSERT.format(values=", ".join([marks] * len(part)))
        params = tuple(value for row in part for value in row)
        inserted.update(key for (key,) in _execute(conn, text, params).fetchall())
    return inserted


def _stored(row: Any) -> StoredEvent:
    """An event row as ``derive`` reads it (SQLite hands ``raw`` back as JSON text)."""
    raw = row.raw if isinstance(row.raw, dict) else json.loads(row.raw or "{}")
    return StoredEvent(row.source, row.level, row.status, row.err, row.done_at, row.received_at, raw)


def _derive(stored: list[StoredEvent], state: str) -> dict[str, Any]:
    """``derive`` a row's columns; an errback also settles a row its request's 200 accepted.

    The 200 of a batch says the gateway took the request; an errback says it then refused this number.
    So an ``accepted`` row is derived as if still in flight: an errback makes it ``rejected``, and a
    report of its own (batch callback, DLR) keeps it ``accepted`` as it is.
    """
    if state != "accepted":
        return derive(stored, state=state)
    out = derive(stored, state=IN_FLIGHT[0])
    if out.get("state") == "accepted":  # already so: keep the row's reason (e.g. a count mismatch noted)
        del out["state"], out["reason"]
    return out


def apply(
    conn: sa.Connection, row_ids: Iterable[int], *, now: datetime, fresh: dict[int, list[Event]] | None = None
) -> None:
    """Bring the delivery columns (and in-flight states) of rows up to date with their events.

    Rows in ``fresh`` (row id -> events just inserted, in arrival order, no older event newly attached)
    advance from their stored columns; the others (``row_ids``), and fresh rows with an errback, are
    re-derived from all their events.
    """
    fresh = fresh or {}
    full = set(row_ids)
    wanted = sorted(full | set(fresh))
    when = _times(conn)
    delivery: list[tuple[Any, ...]] = []
    settled: list[tuple[Any, ...]] = []
    for part in chunks(wanted):
        current = {row.id: row for row in _select(conn, _STATES, "id", part)}
        outs: dict[int, dict[str, Any]] = {}
        for rid, row in current.items():
            if rid in fresh and rid not in full:
                out = advance(row._mapping, fresh[rid], state=row.state)
                if out is not None:
                    outs[rid] = out
        rederive = [rid for rid in current if rid not in outs]
        grouped: dict[int, list[StoredEvent]] = defaultdict(list)
        for row in _select(conn, _EVENTS_OF, "message_row", rederive) if rederive else ():
            grouped[row.message_row].append(_stored(row))
        for rid in rederive:
            outs[rid] = _derive(grouped.get(rid, []), current[rid].state)
        for rid, out in outs.items():
            if "state" in out:
                settled.append((out.pop("state"), out.pop("reason"), when(now), rid))
            if rid in fresh and rid not in full and all(out[c] == getattr(current[rid], c) for c in DELIVERY_COLUMNS):
                continue  # nothing changed (a level-1 report after the first, a late non-final one)
            delivery.append((*(when(out[c]) if c in _TIMES else out[c] for c in DELIVERY_COLUMNS), rid))
    _many(conn, _DELIVERY, delivery)
    _many(conn, _SETTLE, settled)
