"""Inside a write transaction: tie events to message rows, store them, and re-derive the rows they touch.

A gateway message id is paired with its row (campaign + message key) in three ways: the send response
(``Ledger.settle(message_ids=...)``), a DLR whose URL carries the key, or a batch callback (batch id +
``to`` number). Events that arrive before their pairing are stored with no row and attached when the
pairing arrives, then applied.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ._events import DELIVERY_COLUMNS, Event, advance, derive
from ._schema import events, messages

CHUNK = 5000
_T = TypeVar("_T")
IN_FLIGHT = ("submitting", "uncertain")


# statements built once (IN lists as expanding parameters): building and cache-keying them per call
# cost about a fifth of a small group's write
_IDS = sa.bindparam("b_ids", expanding=True)
_ORPHANS = sa.select(events.c.message_id).where(events.c.message_id.in_(_IDS), events.c.message_row.is_(None))
_ATTACH = (
    events.update()
    .where(events.c.message_id == sa.bindparam("b_mid"), events.c.message_row.is_(None))
    .values(message_row=sa.bindparam("b_row"), campaign_id=sa.bindparam("b_cid"))
)
_SET_IDS = (
    messages.update()
    .where(messages.c.id == sa.bindparam("b_row"))
    .values(message_id=sa.bindparam("b_mid"), queue_id=sa.func.coalesce(messages.c.queue_id, sa.bindparam("b_queue")))
)
_BY_KEY = sa.select(messages.c.id, messages.c.campaign_id, messages.c.message_key, messages.c.message_id).where(
    messages.c.campaign_id == sa.bindparam("b_cid"), messages.c.message_key.in_(_IDS)
)
_CANDIDATES = (
    sa.select(
        messages.c.id,
        messages.c.campaign_id,
        messages.c.msisdn,
        messages.c.batch_id,
        messages.c.queue_id,
        messages.c.message_id,
        messages.c.state,
    )
    .where(messages.c.campaign_id == sa.bindparam("b_cid"), messages.c.msisdn.in_(_IDS))
    .order_by(messages.c.id)
)
_BY_ID = (
    sa.select(messages.c.id, messages.c.campaign_id, messages.c.message_id)
    .where(messages.c.message_id.in_(_IDS))
    .order_by(messages.c.id)
)
_STATES = sa.select(messages.c.id, messages.c.state, *(messages.c[c] for c in DELIVERY_COLUMNS)).where(
    messages.c.id.in_(_IDS)
)
_EVENTS_OF = (
    sa.select(
        events.c.message_row,
        events.c.source,
        events.c.level,
        events.c.status,
        events.c.err,
        events.c.done_at,
        events.c.received_at,
        events.c.raw,
    )
    .where(events.c.message_row.in_(_IDS))
    .order_by(events.c.id)
)
_DELIVERY = (
    messages.update()
    .where(messages.c.id == sa.bindparam("b_row"))
    .values({c: sa.bindparam(f"b_{c}") for c in DELIVERY_COLUMNS})
)
_SETTLE = (
    messages.update()
    .where(messages.c.id == sa.bindparam("b_row"))
    .values(state=sa.bindparam("b_state"), reason=sa.bindparam("b_reason"), updated_at=sa.bindparam("b_now"))
)
_INSERT = {
    name: insert(events).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(events.c.dedupe_key)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    """Yield ``items`` in slices of at most ``size`` (bounded IN lists and parameter counts)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def attach_orphans(conn: sa.Connection, pairs: dict[str, tuple[int, int]]) -> set[int]:
    """Attach stored events of gateway ids in ``pairs`` (id -> (row, campaign)) that had no row yet."""
    if not pairs:
        return set()
    ids = list(pairs)
    orphaned: set[str] = set()
    for part in chunks(ids):
        orphaned.update(conn.execute(_ORPHANS, {"b_ids": list(part)}).scalars())
    if not orphaned:
        return set()
    conn.execute(_ATTACH, [{"b_mid": mid, "b_row": pairs[mid][0], "b_cid": pairs[mid][1]} for mid in orphaned])
    return {pairs[mid][0] for mid in orphaned}


def _set_ids(conn: sa.Connection, updates: list[dict[str, Any]]) -> None:
    """Write newly learnt gateway message ids (and batch ids) onto their rows."""
    if updates:
        conn.execute(_SET_IDS, updates)


def _by_key(conn: sa.Connection, evs: list[Event], cids: dict[str, int]) -> dict[tuple[int, str], Any]:
    """Rows named by (campaign, message_key) in the events."""
    wanted: dict[int, set[str]] = defaultdict(set)
    for e in evs:
        if e.message_key and e.campaign in cids:
            wanted[cids[e.campaign]].add(e.message_key)
    found: dict[tuple[int, str], Any] = {}
    for cid, keys in wanted.items():
        for part in chunks(sorted(keys)):
            for row in conn.execute(_BY_KEY, {"b_cid": cid, "b_ids": list(part)}):
                found[(cid, row.message_key)] = row
    return found


def _batch_candidates(conn: sa.Connection, evs: list[Event], cids: dict[str, int]) -> dict[tuple[int, str], list]:
    """Rows that batch callbacks may belong to: same campaign and number."""
    wanted: dict[int, set[str]] = defaultdict(set)
    for e in evs:
        if e.source in ("batch", "errback") and e.campaign in cids and e.msisdn:
            wanted[cids[e.campaign]].add(e.msisdn)
    found: dict[tuple[int, str], list] = defaultdict(list)
    for cid, numbers in wanted.items():
        for part in chunks(sorted(numbers)):
            for row in conn.execute(_CANDIDATES, {"b_cid": cid, "b_ids": list(part)}):
                found[(cid, row.msisdn)].append(row)
    return found


def _pick(rows: list, e: Event) -> Any:
    """Choose the row a batch callback belongs to, most specific match first."""

    def batch_match(r: Any) -> bool:
        """The callback's batch id is the row's gateway queue id or our batch key."""
        return e.batch is not None and e.batch in (r.queue_id, r.batch_id)

    tests = (
        lambda r: e.message_id is not None and r.message_id == e.message_id,
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
    updates: list[dict[str, Any]] = []
    for e in evs:
        cid = cids.get(e.campaign or "")
        row = None
        if e.source in ("batch", "errback") and cid is not None and e.msisdn:
            row = _pick(candidates.get((cid, e.msisdn), []), e)
        elif cid is not None and e.message_key:
            row = keyed.get((cid, e.message_key))
        if row is not None and e.message_id and row.message_id is None and e.message_id not in pairs:
            pairs[e.message_id] = (row.id, row.campaign_id)
            updates.append(
                {"b_row": row.id, "b_mid": e.message_id, "b_queue": e.batch if e.source == "batch" else None}
            )
        placed.append((row.id, row.campaign_id) if row is not None else (None, cid))
    _set_ids(conn, updates)
    unknown = sorted(
        {
            e.message_id
            for e, (rid, _) in zip(evs, placed, strict=True)
            if rid is None and e.message_id and e.message_id not in pairs
        }
    )
    by_id: dict[str, list[Any]] = defaultdict(list)
    for part in chunks(unknown):
        for row in conn.execute(_BY_ID, {"b_ids": list(part)}):
            by_id[row.message_id].append(row)
    for i, (e, (rid, cid)) in enumerate(zip(evs, placed, strict=True)):
        if rid is None and e.message_id:
            if e.message_id in pairs:
                placed[i] = pairs[e.message_id]
            elif by_id.get(e.message_id):
                rows = by_id[e.message_id]
                row = next((r for r in rows if r.campaign_id == cid), rows[0])
                placed[i] = (row.id, row.campaign_id)
    return placed, attach_orphans(conn, pairs)


def insert_events(conn: sa.Connection, evs: list[Event], placed: list[Placement]) -> set[str]:
    """Insert events whose dedupe key is not stored yet (ON CONFLICT DO NOTHING); return the keys inserted."""
    stmt = _INSERT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    params = [
        {
            "dedupe_key": e.dedupe_key,
            "campaign_id": cid,
            "message_row": rid,
            "message_id": e.message_id,
            "source": e.source,
            "level": e.level,
            "status": e.status,
            "err": e.err,
            "done_at": e.done_at,
            "received_at": e.received_at,
            "raw": e.raw,
        }
        for e, (rid, cid) in zip(evs, placed, strict=True)
    ]
    return set(conn.execute(stmt, params).scalars())


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
    delivery: list[dict[str, Any]] = []
    settled: list[dict[str, Any]] = []
    for part in chunks(wanted):
        current = {row.id: row for row in conn.execute(_STATES, {"b_ids": list(part)})}
        outs: dict[int, dict[str, Any]] = {}
        for rid, row in current.items():
            if rid in fresh and rid not in full:
                out = advance(row._mapping, fresh[rid], state=row.state)
                if out is not None:
                    outs[rid] = out
        rederive = [rid for rid in current if rid not in outs]
        grouped: dict[int, list[Any]] = defaultdict(list)
        if rederive:
            for row in conn.execute(_EVENTS_OF, {"b_ids": rederive}):
                grouped[row.message_row].append(row)
        for rid in rederive:
            outs[rid] = derive(grouped.get(rid, []), state=current[rid].state)
        for rid, out in outs.items():
            if "state" in out:
                settled.append({"b_row": rid, "b_state": out.pop("state"), "b_reason": out.pop("reason"), "b_now": now})
            if rid in fresh and rid not in full and all(out[c] == current[rid]._mapping[c] for c in DELIVERY_COLUMNS):
                continue  # nothing changed (a level-1 report after the first, a late non-final one)
            delivery.append({"b_row": rid, **{f"b_{k}": v for k, v in out.items()}})
    if delivery:
        conn.execute(_DELIVERY, delivery)
    if settled:
        conn.execute(_SETTLE, settled)
