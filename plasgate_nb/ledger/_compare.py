"""Compare rows to plan with a campaign's stored rows, a chunk of rows at a time.

``Ledger.plan`` sorts the rows it is given into fresh (new keys), to replan (still ``planned``, number
or text changed), changed (already submitted, number or text changed) and repeats (the number and text
of another message, under another key). Here the stored rows are looked up by key for one chunk of
rows at a time (through the unique key index), the messages a repeat could repeat by number (through
the number index), and the repeat reasons to clear by state: a second send of a million-row frame
never holds the campaign's million stored rows at once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from . import _frames, _rows
from ._frames import MESSAGES, _in_list, _sql
from ._rows import REPEAT_REASON, TAKEN_STATES, PlanRows, repeat_reason, repeats
from ._schema import messages

Sorted = tuple[Sequence[int], list[int], list[int], dict[str, str]]


def has_rows(conn: sa.Connection, cid: int) -> bool:
    """Whether campaign ``cid`` has any stored row."""
    return conn.execute(sa.select(messages.c.id).where(messages.c.campaign_id == cid).limit(1)).first() is not None


def _select(conn: sa.Connection, cid: int, column: str, values: Sequence[Any], *, extra: str = "") -> list[Any]:
    """Stored ``message_key, msisdn, content_hash, state, reason`` of the rows whose ``column`` is in ``values``."""
    out: list[Any] = []
    size = _frames.CHUNK
    for start in range(0, len(values), size):
        cond, params = _in_list(conn, column, values[start : start + size])
        sql = _sql(
            conn,
            f"SELECT message_key, msisdn, content_hash, state, reason FROM {MESSAGES} "
            f"WHERE campaign_id = ? AND {cond}{extra}",
        )
        out.extend(conn.exec_driver_sql(sql, (cid, *params)).cursor.fetchall())
    return out


def _as_taken(earlier: Mapping[tuple[str, str], str] | None) -> dict[str, tuple[str, str, str]]:
    """Earlier parts' first ``(msisdn, digest) -> key`` as stored rows that count as sent (a repeat names them)."""
    return {key: (msisdn, digest, "submitting") for (msisdn, digest), key in (earlier or {}).items()}


def sort_rows(
    conn: sa.Connection,
    cid: int | None,
    new: PlanRows,
    *,
    allow_repeat: bool,
    earlier: Mapping[tuple[str, str], str] | None = None,
) -> Sorted:
    """Sort ``new`` against campaign ``cid``'s stored rows: (fresh, replan, changed positions, same_as).

    ``same_as`` maps the key of each row still to send (new, or stored ``planned``) whose number and
    text digest a message submitted, accepted or uncertain under another key already carries, or an
    earlier such row of ``new``, or a pair of ``earlier`` (the parts planned before this one), to that
    message's key (empty when ``allow_repeat``).
    """
    fresh: list[int] = []
    replan: list[int] = []
    changed: list[int] = []
    if cid is None or not has_rows(conn, cid):  # a new campaign: a repeat only within these rows
        every = range(len(new))
        if allow_repeat or (not earlier and new.numbers_unique()):
            return every, replan, changed, {}
        return every, replan, changed, repeats(new.keys, new.msisdns, new.digests, every, _as_taken(earlier))
    keys: list[str] = []  # the rows still to send, with their numbers and digests
    numbers: list[str] = []
    digests: list[str] = []
    for start in range(0, len(new), _rows.PLAN_CHUNK):
        part = slice(start, start + _rows.PLAN_CHUNK)
        part_keys, part_numbers, part_digests = new.keys[part], new.numbers(part), new.hashes(part)
        stored = {row[0]: row[1:4] for row in _select(conn, cid, "message_key", part_keys)}
        for offset, (key, msisdn, digest) in enumerate(zip(part_keys, part_numbers, part_digests, strict=True)):
            seen = stored.get(key)
            if seen is None:
                fresh.append(start + offset)
            elif (seen[0], seen[1]) != (msisdn, digest):
                (replan if seen[2] == "planned" else changed).append(start + offset)
            if seen is None or seen[2] == "planned":
                keys.append(key)
                numbers.append(msisdn)
                digests.append(digest)
    if allow_repeat or not keys:
        return fresh, replan, changed, {}
    taken: dict[str, tuple[Any, ...]] = _as_taken(earlier)  # earlier parts first: they came first
    for row in _taken(conn, cid, set(numbers)):
        taken.setdefault(row[0], row[1:4])
    return fresh, replan, changed, repeats(keys, numbers, digests, range(len(keys)), taken)


def _taken(conn: sa.Connection, cid: int, numbers: Collection[str]) -> list[Any]:
    """Stored rows submitted, accepted or uncertain to any of ``numbers`` (what a repeat can repeat)."""
    states = ", ".join(f"'{state}'" for state in sorted(TAKEN_STATES))
    return _select(conn, cid, "msisdn", sorted(numbers), extra=f" AND state IN ({states})")


def repeat_updates(
    conn: sa.Connection, cid: int, same_as: dict[str, str], *, scope: Sequence[str] | None = None
) -> Iterable[tuple[str, str | None]]:
    """``(key, reason)`` for the stored ``planned`` rows (of ``scope``'s keys, if given) whose repeat reason changes.

    A row in ``same_as`` takes the reason naming its earlier message; a planned row holding a repeat
    reason it no longer deserves has it cleared (None).
    """
    current: dict[str, str | None] = {}
    if scope is None:
        marked = conn.execute(
            sa.select(messages.c.message_key, messages.c.reason).where(
                messages.c.campaign_id == cid,
                messages.c.state == "planned",
                messages.c.reason.startswith(REPEAT_REASON),
            )
        )
        current.update((key, reason) for key, reason in marked)
    else:  # one part of a frame planned in parts: only its own rows
        for row in _select(conn, cid, "message_key", list(scope)):
            if row[3] == "planned" and (row[4] or "").startswith(REPEAT_REASON):
                current[row[0]] = row[4]
    for row in _select(conn, cid, "message_key", sorted(same_as)):
        if row[3] == "planned":
            current[row[0]] = row[4]
    for key, reason in current.items():
        wanted = repeat_reason(same_as[key]) if key in same_as else None
        if wanted != reason:
            yield key, wanted
