"""The ledger's suppression list: numbers that replied STOP (or were added by hand) are never sent to.

One row per number ever suppressed; ``active`` is false once it opted back in (START). Each change
carries its time, and an older change never overrides a newer one, so replies applied in any order
(a STOP delivered late, after the START that followed it) end in the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ..optout import Keywords
from ._rows import as_utc
from ._schema import settings, suppressions

__all__ = ["SUPPRESSION_COLUMNS", "active_numbers", "apply_replies", "change", "keywords", "read", "save_keywords"]

SUPPRESSION_COLUMNS = ("msisdn", "since", "source", "campaign", "text")
KEYWORDS_SETTING = "opt_out_keywords"
TEXT_MAX = 200


def keywords(conn: sa.Connection) -> Keywords:
    """The ledger's opt-out/opt-in keywords (the defaults until someone sets others)."""
    stored = conn.execute(sa.select(settings.c.value).where(settings.c.key == KEYWORDS_SETTING)).scalar()
    if not stored:
        return Keywords()
    return Keywords(stop=tuple(stored["stop"]), start=tuple(stored["start"]))


def save_keywords(conn: sa.Connection, words: Keywords) -> None:
    """Store ``words`` as the ledger's keywords (replacing any before)."""
    conn.execute(settings.delete().where(settings.c.key == KEYWORDS_SETTING))
    value = {"stop": list(words.stop), "start": list(words.start)}
    conn.execute(settings.insert().values(key=KEYWORDS_SETTING, value=value))


def change(
    conn: sa.Connection,
    changes: Iterable[tuple[str, bool, datetime, str, int | None, str | None]],
) -> int:
    """Apply ``(msisdn, active, at, source, campaign_id, text)`` changes, newest wins; return rows changed.

    A number already in the wanted state keeps its original ``since`` (a second STOP does not reset it).
    """
    done = 0
    for msisdn, active, at, source, cid, text in changes:
        at = as_utc(at)
        row = conn.execute(
            sa.select(suppressions.c.active, suppressions.c.since).where(suppressions.c.msisdn == msisdn)
        ).first()
        values = {
            "active": active,
            "since": at,
            "source": source,
            "campaign_id": cid,
            "text": (text or "")[:TEXT_MAX] or None,
        }
        if row is None:
            conn.execute(suppressions.insert().values(msisdn=msisdn, **values))
        elif bool(row.active) == active or as_utc(row.since) > at:
            continue  # already so, or a newer change was applied first
        else:
            conn.execute(suppressions.update().where(suppressions.c.msisdn == msisdn).values(**values))
        done += 1
    return done


def apply_replies(conn: sa.Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Turn stored reply rows that are keywords into suppression changes; return how many applied."""
    words = keywords(conn)
    changes = []
    for row in sorted(rows, key=lambda r: r["received_at"]):
        verdict = words.match(row["text"])
        msisdn = str(row["msisdn"]).lstrip("+")
        if verdict is not None and msisdn.isdigit():
            changes.append((msisdn, verdict == "stop", row["received_at"], "reply", row["campaign_id"], row["text"]))
    return change(conn, changes) if changes else 0


def active_numbers(conn: sa.Connection) -> set[str]:
    """The numbers on the suppression list now."""
    stmt = sa.select(suppressions.c.msisdn).where(suppressions.c.active.is_(True))
    return {str(n) for n in conn.execute(stmt).scalars()}


def read(conn: sa.Connection, campaigns: sa.Table, *, active_only: bool = True) -> pd.DataFrame:
    """The suppression list as a frame (SUPPRESSION_COLUMNS, plus ``active`` when ``active_only`` is off)."""
    cols = suppressions.c
    stmt = (
        sa.select(cols.msisdn, cols.since, cols.source, campaigns.c.name, cols.text, cols.active)
        .select_from(suppressions.outerjoin(campaigns, cols.campaign_id == campaigns.c.id))
        .order_by(cols.since, cols.msisdn)
    )
    if active_only:
        stmt = stmt.where(cols.active.is_(True))
    frame = pd.DataFrame.from_records(
        [tuple(r) for r in conn.execute(stmt)], columns=[*SUPPRESSION_COLUMNS, "active"], coerce_float=False
    )
    for name in ("msisdn", "source", "campaign", "text"):
        frame[name] = frame[name].astype("string")
    frame["since"] = pd.to_datetime(frame["since"], utc=True).astype("datetime64[us, UTC]")
    frame["active"] = frame["active"].astype(bool)
    return frame if not active_only else frame.drop(columns="active")
